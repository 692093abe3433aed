//! Cezbek's console (`cezbek console`): the web app for the people who run Cezbek — partner
//! managers, marketing, finance, support — in a browser instead of curl.
//!
//! - `session`: server-side sessions behind an HttpOnly, SameSite=Strict cookie, with idle
//!   and absolute expiry and a CSRF token for every write.
//! - `proxy`: the app calls the services' own APIs with the signed-in person's token, so
//!   validation, If-Match and the audit trail are the same as for curl.
//! - `health`: the pipeline's health for the overview, from the services' ops listeners.
//! - `assets`: the app itself (plain ES modules, built into the binary).

pub mod api;
pub mod assets;
pub mod health;
pub mod openapi;
pub mod proxy;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use cezbek_platform::auth::AdminTokens;
use cezbek_platform::config::HttpConfig;
use cezbek_platform::http::HttpError;
use cezbek_platform::{CancellationToken, Env, Readiness, http};
use url::Url;

use crate::health::OpsEndpoint;
use crate::proxy::Upstreams;
use crate::session::{Expiry, Sessions};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    /// `CEZBEK_ADMIN_TOKENS`: who may sign in, as admin or viewer.
    pub tokens: AdminTokens,
    /// `CEZBEK_CONSOLE_{CAMPAIGNEX,INFORMER,INGESTOR,PAYOUTS}_URL`: the services' APIs.
    pub upstreams: Upstreams,
    /// `CEZBEK_CONSOLE_OPS_URLS`: `service=url,…`, each service's ops listener.
    pub ops: Vec<OpsEndpoint>,
    /// `CEZBEK_CONSOLE_SESSION_IDLE` (default 30m) and `CEZBEK_CONSOLE_SESSION_MAX` (12h).
    pub expiry: Expiry,
    /// `CEZBEK_CONSOLE_PUBLIC_URL`: where people open the console; https makes every cookie
    /// `Secure` (behind a TLS-terminating proxy, `X-Forwarded-Proto: https` does per request).
    pub public_url: Url,
    /// `CEZBEK_CONSOLE_UPLOAD_ORIGINS`: the S3 origins browsers PUT uploads to (the
    /// Content-Security-Policy allows connections there and nowhere else).
    pub upload_origins: Vec<String>,
}

const DEFAULT_OPS_URLS: &str = "ingestor=http://127.0.0.1:9081,campaignex=http://127.0.0.1:9082,\
    informer=http://127.0.0.1:9083,rewarder=http://127.0.0.1:8091,notifier=http://127.0.0.1:8092,\
    payouts=http://127.0.0.1:9086";

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        let url = |env: &mut Env, variable: &str, default: &str| {
            let raw = env.string(variable, default);
            Url::parse(&raw).unwrap_or_else(|error| {
                env.problem(variable, format!("{raw:?} is not a URL: {error}"));
                Url::parse(default).expect("the default is a URL")
            })
        };
        let upstreams = Upstreams {
            campaignex: url(env, "CEZBEK_CONSOLE_CAMPAIGNEX_URL", "http://127.0.0.1:8082"),
            informer: url(env, "CEZBEK_CONSOLE_INFORMER_URL", "http://127.0.0.1:8083"),
            ingestor: url(env, "CEZBEK_CONSOLE_INGESTOR_URL", "http://127.0.0.1:8081"),
            payouts: url(env, "CEZBEK_CONSOLE_PAYOUTS_URL", "http://127.0.0.1:8086"),
        };
        let public_url = url(env, "CEZBEK_CONSOLE_PUBLIC_URL", "http://127.0.0.1:8087");
        let mut ops = Vec::new();
        for entry in env.list("CEZBEK_CONSOLE_OPS_URLS", DEFAULT_OPS_URLS) {
            let parsed = entry
                .split_once('=')
                .and_then(|(service, raw)| Some((service, Url::parse(raw).ok()?)));
            match parsed {
                Some((service, url)) => ops.push(OpsEndpoint { service: service.to_owned(), url }),
                None => {
                    env.problem("CEZBEK_CONSOLE_OPS_URLS", format!("{entry:?} is not service=url"))
                }
            }
        }
        // The stack's S3 server by default, where the services find it too.
        let s3 = env
            .optional("AWS_ENDPOINT_URL_S3")
            .or_else(|| env.optional("AWS_ENDPOINT_URL"))
            .or_else(|| env.optional("CEZBEK_S3_ENDPOINT"))
            .unwrap_or_else(|| "https://*.amazonaws.com".to_owned());
        let upload_origins = env.list("CEZBEK_CONSOLE_UPLOAD_ORIGINS", &s3);
        for origin in &upload_origins {
            env.check(
                !origin.contains([';', ' ', '\'', ',']),
                "CEZBEK_CONSOLE_UPLOAD_ORIGINS",
                format!("{origin:?} is not an origin"),
            );
        }
        let expiry = Expiry {
            idle: env.duration("CEZBEK_CONSOLE_SESSION_IDLE", Duration::from_secs(30 * 60)),
            absolute: env.duration("CEZBEK_CONSOLE_SESSION_MAX", Duration::from_secs(12 * 3600)),
        };
        env.check(!expiry.idle.is_zero(), "CEZBEK_CONSOLE_SESSION_IDLE", "must be positive");
        env.check(!expiry.absolute.is_zero(), "CEZBEK_CONSOLE_SESSION_MAX", "must be positive");
        Self {
            http: HttpConfig::api_from_env(
                env,
                "CEZBEK_CONSOLE_LISTEN",
                "127.0.0.1:8087",
                "CEZBEK_CONSOLE_OPS_LISTEN",
                "127.0.0.1:9087",
            ),
            tokens: AdminTokens::from_env(env),
            upstreams,
            ops,
            expiry,
            public_url,
            upload_origins,
        }
    }

    fn content_security_policy(&self) -> String {
        let uploads = self.upload_origins.join(" ");
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {uploads}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the Content-Security-Policy is not a header value: {0}")]
    Policy(#[from] axum::http::header::InvalidHeaderValue),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// How often expired sessions are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    if config.tokens.is_empty() {
        tracing::warn!("CEZBEK_ADMIN_TOKENS is empty: nobody can sign in to the console");
    }
    let sessions = Arc::new(Sessions::new(config.expiry));
    let sweeper = sessions.clone();
    let sweeping = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = sweeping.cancelled() => return,
                _ = every.tick() => {
                    let forgotten = sweeper.sweep();
                    if forgotten > 0 {
                        tracing::debug!(forgotten, "expired console sessions forgotten");
                    }
                }
            }
        }
    });
    let registry = prometheus::Registry::new();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let state = api::ApiState {
        tokens: config.tokens.clone(),
        sessions,
        upstreams: config.upstreams.clone(),
        ops: config.ops.clone(),
        client,
        always_secure: config.public_url.scheme() == "https",
        content_security_policy: HeaderValue::from_str(&config.content_security_policy())?,
    };
    // The console needs nothing to be ready: a service that is down shows on its pages.
    let readiness = Readiness::new(&[]);
    tracing::info!(listen = %config.http.listen, public_url = %config.public_url, "console serving");
    http::serve_with_ops(&config.http, api::router(state), registry, readiness, shutdown).await?;
    Ok(())
}
