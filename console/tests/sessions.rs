//! The console's server side against a real campaignex (PostgreSQL and etcd of the local
//! stack): sign-in, the cookie, CSRF and origin checks, writes made as the signed-in person
//! with their If-Match, viewers refused, sign-out and the idle expiry.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cezbek_console::session::Expiry;
use cezbek_console::{Config, run};
use cezbek_platform::CancellationToken;
use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::config::HttpConfig;
use cezbek_testkit::{TestContext, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

const ADMIN: &str = "console-admin-token";
const VIEWER: &str = "console-viewer-token";

fn tokens() -> AdminTokens {
    AdminTokens::default().with_token("alice", Role::Admin, ADMIN).with_token(
        "victor",
        Role::Viewer,
        VIEWER,
    )
}

fn listen() -> (HttpConfig, u16) {
    let (port, ops) = (free_port(), free_port());
    let http = HttpConfig::api(
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("127.0.0.1:{ops}").parse().unwrap(),
    );
    (http, port)
}

async fn wait_for(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{url} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Console {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Campaignex and the console in front of it, the console's sessions going idle after `idle`.
async fn start(context: &TestContext, idle: Duration) -> Console {
    let shutdown = CancellationToken::new();
    let (http, campaignex_port) = listen();
    let campaignex = cezbek_campaignex::Config {
        http,
        etcd: context.etcd_config(),
        postgres: context.postgres_config().await,
        tokens: tokens(),
        reconcile_interval: Duration::from_millis(200),
        key_grace: Duration::from_secs(3600),
        ledger: cezbek_ledger::LedgerChoice::Postgres,
        backtest_pace: 0,
    };
    tokio::spawn(cezbek_campaignex::run(campaignex, shutdown.clone()));
    let (http, port) = listen();
    let campaignex_url = Url::parse(&format!("http://127.0.0.1:{campaignex_port}")).unwrap();
    let nowhere = Url::parse("http://127.0.0.1:9").unwrap();
    let config = Config {
        http,
        tokens: tokens(),
        upstreams: cezbek_console::proxy::Upstreams {
            campaignex: campaignex_url,
            informer: nowhere.clone(),
            ingestor: nowhere.clone(),
            payouts: nowhere,
        },
        ops: Vec::new(),
        expiry: Expiry { idle, absolute: Duration::from_secs(3600) },
        public_url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        upload_origins: vec!["http://127.0.0.1:9000".into()],
    };
    tokio::spawn(run(config, shutdown.clone()));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&http, &format!("{base}/healthz")).await;
    wait_for(&http, &format!("http://127.0.0.1:{campaignex_port}/healthz")).await;
    Console { base, http, shutdown }
}

/// A signed-in browser: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Console {
    async fn sign_in(&self, token: &str, forwarded_https: bool) -> (StatusCode, String, Value) {
        let mut request =
            self.http.post(format!("{}/session", self.base)).json(&json!({"token": token}));
        if forwarded_https {
            request = request.header("X-Forwarded-Proto", "https");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, cookie, response.json().await.unwrap())
    }

    async fn session(&self, token: &str) -> Session {
        let (status, cookie, body) = self.sign_in(token, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cookie = cookie.split(';').next().unwrap().to_owned();
        Session { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
    }

    async fn call(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Cookie", &session.cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        (status, etag, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn the_console_writes_as_the_signed_in_admin_only_with_its_csrf_token_and_if_match() {
    let context = TestContext::new("consolewrites");
    let console = start(&context, Duration::from_secs(600)).await;

    // A wrong token: 401, no cookie. Not JSON: 400.
    let (status, cookie, body) = console.sign_in("wrong", false).await;
    assert_eq!((status, cookie.as_str()), (StatusCode::UNAUTHORIZED, ""), "{body}");
    let form = console
        .http
        .post(format!("{}/session", console.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);

    // The cookie: HttpOnly, SameSite=Strict, Secure behind a TLS-terminating proxy.
    let (_, plain, _) = console.sign_in(ADMIN, false).await;
    assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"), "{plain}");
    assert!(!plain.contains("Secure"), "{plain}");
    let (_, tls, _) = console.sign_in(ADMIN, true).await;
    assert!(tls.ends_with("; Secure"), "{tls}");

    let admin = console.session(ADMIN).await;
    let partner = json!({"code": "CONSOLE", "currency": "IDR", "time_zone": "Asia/Jakarta"});
    let path = "/api/campaignex/v1/partners";
    // No CSRF token, a wrong one, another site's origin: refused before campaignex.
    for headers in [
        vec![],
        vec![("X-CSRF-Token", "0000")],
        vec![("X-CSRF-Token", admin.csrf.as_str()), ("Origin", "https://evil.example")],
        vec![("X-CSRF-Token", admin.csrf.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ] {
        let (status, _, body) =
            console.call(&admin, Method::POST, path, &headers, Some(partner.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {body}");
    }
    let csrf = [("X-CSRF-Token", admin.csrf.as_str())];
    let (status, _, created) =
        console.call(&admin, Method::POST, path, &csrf, Some(partner.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // Campaignex's validation answers as it is, fields named.
    let (status, _, invalid) = console
        .call(&admin, Method::POST, path, &csrf, Some(json!({"code": "x", "currency": "IDR"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    assert!(invalid["errors"].as_array().is_some_and(|errors| !errors.is_empty()), "{invalid}");

    // A stale If-Match reaches campaignex and is refused there; the current one is accepted.
    let (status, etag, _) =
        console.call(&admin, Method::GET, "/api/campaignex/v1/partners/CONSOLE", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let etag = etag.unwrap();
    let renamed = json!({"currency": "IDR", "time_zone": "Asia/Jakarta", "name": "Console Co"});
    let one = "/api/campaignex/v1/partners/CONSOLE";
    let stale = [("X-CSRF-Token", admin.csrf.as_str()), ("If-Match", "\"999\"")];
    let (status, _, _) =
        console.call(&admin, Method::PUT, one, &stale, Some(renamed.clone())).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let current = [("X-CSRF-Token", admin.csrf.as_str()), ("If-Match", etag.as_str())];
    let (status, _, _) = console.call(&admin, Method::PUT, one, &current, Some(renamed)).await;
    assert_eq!(status, StatusCode::OK);
    // The audit trail names the person signed in, as for curl.
    let (_, _, audit) =
        console.call(&admin, Method::GET, "/api/campaignex/v1/audit?limit=5", &[], None).await;
    let actors: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert!(!actors.is_empty() && actors.iter().all(|actor| *actor == "alice"), "{audit}");

    // A viewer reads, and may dry-run, but the console refuses their writes itself.
    let viewer = console.session(VIEWER).await;
    let (status, _, _) = console.call(&viewer, Method::GET, one, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = [("X-CSRF-Token", viewer.csrf.as_str())];
    let suspend = "/api/campaignex/v1/partners/CONSOLE/suspend";
    let (status, _, body) = console.call(&viewer, Method::POST, suspend, &csrf, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let sample = json!({"msisdn": "081234567890", "amount": 100000});
    let evaluate = "/api/campaignex/v1/partners/CONSOLE/evaluate";
    let (status, _, body) =
        console.call(&viewer, Method::POST, evaluate, &csrf, Some(sample)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Signing out needs the token too, and ends the session on the server.
    let out = format!("{}/session", console.base);
    let refused = console.http.delete(&out).header("Cookie", &admin.cookie).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let signed_out = console
        .http
        .delete(&out)
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = console.call(&admin, Method::GET, one, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_idle_session_ends_and_paths_outside_the_apis_are_refused() {
    let context = TestContext::new("consoleidle");
    let console = start(&context, Duration::from_millis(600)).await;
    let admin = console.session(ADMIN).await;
    for path in ["/api/campaignex/openapi.json", "/api/rewarder/v1/x", "/api/campaignex/v1/../x"] {
        let (status, _, body) = console.call(&admin, Method::GET, path, &[], None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    // Used within the idle time, it lives on; left alone longer, it is over.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _, _) = console.call(&admin, Method::GET, "/session", &[], None).await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, _, body) = console.call(&admin, Method::GET, "/session", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The page and its assets are public and say where scripts may come from.
    let page = console.http.get(format!("{}/", console.base)).send().await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("http://127.0.0.1:9000"));
    assert!(page.text().await.unwrap().contains("/assets/app.js"));
}
