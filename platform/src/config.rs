//! Configuration from environment variables. Every service reads one typed struct; defaults
//! match the local stack (`dev/stack`), so a developer sets nothing. The reader itself,
//! [`Env`], is the `cezbek-env` crate, shared with the crates below this one (the ledger).

use std::net::SocketAddr;
use std::time::Duration;

pub use cezbek_env::{ConfigError, Env, parse_duration};

/// Logging: `CEZBEK_LOG_FORMAT` (`pretty` | `json`) and `CEZBEK_LOG` (a tracing filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub json: bool,
    pub filter: String,
}

impl LogConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let format = env.string("CEZBEK_LOG_FORMAT", "pretty");
        let json = match format.as_str() {
            "json" => true,
            "pretty" => false,
            other => {
                env.problem("CEZBEK_LOG_FORMAT", format!("{other:?} is neither pretty nor json"));
                false
            }
        };
        Self { json, filter: env.string("CEZBEK_LOG", "info") }
    }
}

/// The Kafka-API broker. `CEZBEK_KAFKA_PROPERTIES` passes extra librdkafka settings
/// (`security.protocol=SSL,sasl.mechanism=…`) for managed brokers such as MSK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub client_id: String,
    pub properties: Vec<(String, String)>,
    /// Topic names; tests point a service at their own topics.
    pub transactions_topic: String,
    pub rewards_topic: String,
    pub dead_letter_topic: String,
    pub payouts_topic: String,
}

impl KafkaConfig {
    pub fn from_env(env: &mut Env, client_id: &str) -> Self {
        let mut properties = Vec::new();
        for item in env.list("CEZBEK_KAFKA_PROPERTIES", "") {
            match item.split_once('=') {
                Some((key, value)) => {
                    properties.push((key.trim().to_owned(), value.trim().to_owned()))
                }
                None => {
                    env.problem("CEZBEK_KAFKA_PROPERTIES", format!("{item:?} is not key=value"))
                }
            }
        }
        Self {
            brokers: env.string("CEZBEK_KAFKA_BROKERS", "127.0.0.1:9092"),
            client_id: env.string("CEZBEK_KAFKA_CLIENT_ID", client_id),
            properties,
            transactions_topic: env.string("CEZBEK_TRANSACTIONS_TOPIC", "cezbek.transactions.v1"),
            rewards_topic: env.string("CEZBEK_REWARDS_TOPIC", "cezbek.rewards.v1"),
            dead_letter_topic: env
                .string("CEZBEK_TRANSACTIONS_DLQ_TOPIC", "cezbek.transactions.dlq.v1"),
            payouts_topic: env.string("CEZBEK_PAYOUTS_TOPIC", "cezbek.payouts.v1"),
        }
    }
}

/// etcd, where the live rules and partners are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Key prefix of the live rules, `/cezbek/v1/` in production; tests use their own.
    pub prefix: String,
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let endpoints = env.list("CEZBEK_ETCD_ENDPOINTS", "http://127.0.0.1:2379");
        env.check(!endpoints.is_empty(), "CEZBEK_ETCD_ENDPOINTS", "needs at least one endpoint");
        let prefix = env.string("CEZBEK_ETCD_PREFIX", "/cezbek/v1/");
        env.check(
            prefix.starts_with('/') && prefix.ends_with('/'),
            "CEZBEK_ETCD_PREFIX",
            format!("{prefix:?} must start and end with /"),
        );
        Self {
            endpoints,
            prefix,
            connect_timeout: env.duration("CEZBEK_ETCD_CONNECT_TIMEOUT", Duration::from_secs(5)),
        }
    }
}

/// PostgreSQL: campaignex's source of truth and the single-node ledger.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: String,
    pub max_connections: u32,
    /// A schema to use instead of `public` (set as the connection's `search_path`).
    pub schema: Option<String>,
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every connection of the pool; zero leaves it off.
    pub statement_timeout: Duration,
}

/// The URL without its password.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("schema", &self.schema)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// A connection URL with any password replaced (an unparseable one is hidden whole).
fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable, redacted>".into(),
    }
}

impl PostgresConfig {
    /// The settings with no statement timeout unless `CEZBEK_POSTGRES_STATEMENT_TIMEOUT` sets one.
    pub fn from_env(env: &mut Env) -> Self {
        Self::from_env_with_statement_timeout(env, Duration::ZERO)
    }

    /// The settings, with `statement_timeout` the default for the timeout: a service whose
    /// every statement is short gives one, so that a statement that never ends (a plan gone
    /// wrong, a lock never released) fails and is retried instead of stalling it.
    pub fn from_env_with_statement_timeout(env: &mut Env, statement_timeout: Duration) -> Self {
        let url =
            env.string("CEZBEK_POSTGRES_URL", "postgres://cezbek:cezbek@127.0.0.1:5544/cezbek");
        env.check(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "CEZBEK_POSTGRES_URL",
            "must be a postgres:// URL",
        );
        let max_connections = env.parse("CEZBEK_POSTGRES_MAX_CONNECTIONS", 8u32);
        env.check(max_connections > 0, "CEZBEK_POSTGRES_MAX_CONNECTIONS", "must be at least 1");
        let schema = env.optional("CEZBEK_POSTGRES_SCHEMA");
        if let Some(schema) = &schema {
            env.check(
                schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "CEZBEK_POSTGRES_SCHEMA",
                format!("{schema:?} may only hold a-z, 0-9 and _"),
            );
        }
        Self {
            url,
            max_connections,
            schema,
            acquire_timeout: env
                .duration("CEZBEK_POSTGRES_ACQUIRE_TIMEOUT", Duration::from_secs(5)),
            statement_timeout: env.duration("CEZBEK_POSTGRES_STATEMENT_TIMEOUT", statement_timeout),
        }
    }
}

/// The S3 bucket CSV files are dropped in. Region, credentials and endpoints come from the AWS
/// SDK's standard chains (`AWS_REGION`, `AWS_ACCESS_KEY_ID`…, profiles, IRSA, Pod Identity,
/// ECS, IMDS, `AWS_ENDPOINT_URL`); the `CEZBEK_S3_…` names are documented aliases that take
/// precedence. `CEZBEK_S3_ENDPOINT` points S3 at MinIO or the local stack, whose path-style
/// addressing is the default here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `CEZBEK_S3_REGION`; unset, the SDK's region chain (falling back to `us-east-1`).
    pub region: Option<String>,
    /// `CEZBEK_S3_ENDPOINT`; unset, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// `CEZBEK_S3_ACCESS_KEY` + `CEZBEK_S3_SECRET_KEY`; unset, the SDK's credential chain.
    pub static_keys: Option<StaticKeys>,
    pub path_style: bool,
}

/// An access key pair given in the configuration. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StaticKeys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl S3Config {
    pub fn from_env(env: &mut Env) -> Self {
        let endpoint = env.optional("CEZBEK_S3_ENDPOINT");
        if let Some(endpoint) = &endpoint {
            env.check(
                url::Url::parse(endpoint).is_ok(),
                "CEZBEK_S3_ENDPOINT",
                format!("{endpoint:?} is not a URL"),
            );
        }
        // The web identity's STS endpoint is the SDK's own setting now; a value left in a
        // deployment would silently stop applying, so it is named instead.
        if env.optional("CEZBEK_STS_ENDPOINT").is_some() {
            env.problem("CEZBEK_STS_ENDPOINT", "is no longer read: set AWS_ENDPOINT_URL_STS");
        }
        let access_key = env.optional("CEZBEK_S3_ACCESS_KEY");
        let secret_key = env.optional("CEZBEK_S3_SECRET_KEY");
        let static_keys = match (access_key, secret_key) {
            (Some(access_key), Some(secret_key)) => Some(StaticKeys { access_key, secret_key }),
            (None, None) => None,
            // One of the pair alone is a mistake, not a reason to fall back to the chain.
            (Some(_), None) => {
                env.problem("CEZBEK_S3_SECRET_KEY", "is required with CEZBEK_S3_ACCESS_KEY");
                None
            }
            (None, Some(_)) => {
                env.problem("CEZBEK_S3_ACCESS_KEY", "is required with CEZBEK_S3_SECRET_KEY");
                None
            }
        };
        Self {
            bucket: env.string("CEZBEK_S3_BUCKET", "cezbek"),
            region: env.optional("CEZBEK_S3_REGION"),
            endpoint,
            static_keys,
            path_style: env.bool("CEZBEK_S3_PATH_STYLE", true),
        }
    }
}

/// Where a service listens for HTTP (its API, if any, and the ops endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// The service's API (and `/healthz`, for load balancers); for a service without an API,
    /// its ops endpoints.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served apart from a public API: they name
    /// partners and dependencies, which the API's callers have no business seeing.
    pub ops_listen: Option<SocketAddr>,
    /// An API request still unanswered after this is answered 503 (the handler is dropped).
    pub request_timeout: Duration,
    /// API requests handled at once; more are answered 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// The largest request body; a larger one is answered 413 before the handler reads it.
    pub max_body_bytes: usize,
}

/// The API limits unless configured.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
/// A rule set or a batch of 1,000 transactions fits with room to spare.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl HttpConfig {
    /// A service without an API, serving its ops endpoints on `listen`.
    pub fn ops_only(listen: SocketAddr) -> Self {
        Self {
            listen,
            ops_listen: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// A service with an API on `listen` and its ops endpoints on `ops_listen`, with the
    /// default limits.
    pub fn api(listen: SocketAddr, ops_listen: SocketAddr) -> Self {
        Self { ops_listen: Some(ops_listen), ..Self::ops_only(listen) }
    }

    /// A service without an API: only ops endpoints, on `variable` (`CEZBEK_REWARDER_LISTEN`, …).
    pub fn from_env(env: &mut Env, variable: &str, default: &str) -> Self {
        Self::ops_only(env.socket_addr(variable, default))
    }

    /// A service with a public API on `variable` and its ops endpoints on `ops_variable`.
    pub fn api_from_env(
        env: &mut Env,
        variable: &str,
        default: &str,
        ops_variable: &str,
        ops_default: &str,
    ) -> Self {
        let listen = env.socket_addr(variable, default);
        let ops_listen = env.socket_addr(ops_variable, ops_default);
        env.check(ops_listen != listen, ops_variable, format!("must differ from {variable}"));
        // CEZBEK_INGESTOR_LISTEN → CEZBEK_INGESTOR_REQUEST_TIMEOUT, …_MAX_CONCURRENT_REQUESTS,
        // …_MAX_BODY_BYTES.
        let service = variable.trim_end_matches("_LISTEN");
        let timeout_variable = format!("{service}_REQUEST_TIMEOUT");
        let request_timeout = env.duration(&timeout_variable, DEFAULT_REQUEST_TIMEOUT);
        env.check(!request_timeout.is_zero(), &timeout_variable, "must be more than 0");
        let concurrency_variable = format!("{service}_MAX_CONCURRENT_REQUESTS");
        let max_concurrent_requests =
            env.parse(&concurrency_variable, DEFAULT_MAX_CONCURRENT_REQUESTS);
        env.check(max_concurrent_requests >= 1, &concurrency_variable, "must be at least 1");
        let body_variable = format!("{service}_MAX_BODY_BYTES");
        let max_body_bytes = env.parse(&body_variable, DEFAULT_MAX_BODY_BYTES);
        env.check(max_body_bytes >= 1024, &body_variable, "must be at least 1024");
        Self {
            listen,
            ops_listen: Some(ops_listen),
            request_timeout,
            max_concurrent_requests,
            max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_local_stack() {
        let mut env = Env::from_pairs([("CEZBEK_S3_ENDPOINT", "http://127.0.0.1:4566")]);
        let kafka = KafkaConfig::from_env(&mut env, "test");
        let postgres = PostgresConfig::from_env(&mut env);
        let etcd = EtcdConfig::from_env(&mut env);
        let s3 = S3Config::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!(kafka.brokers, "127.0.0.1:9092");
        assert_eq!(postgres.url, "postgres://cezbek:cezbek@127.0.0.1:5544/cezbek");
        assert_eq!(etcd.prefix, "/cezbek/v1/");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!((s3.region, s3.static_keys), (None, None), "the SDK's chains decide");
    }

    #[test]
    fn a_statement_timeout_is_off_unless_a_service_or_the_environment_sets_one() {
        let mut env = Env::from_pairs::<&str, &str>([]);
        assert_eq!(PostgresConfig::from_env(&mut env).statement_timeout, Duration::ZERO);
        let service_default =
            PostgresConfig::from_env_with_statement_timeout(&mut env, Duration::from_secs(30));
        assert_eq!(service_default.statement_timeout, Duration::from_secs(30));
        let mut env = Env::from_pairs([("CEZBEK_POSTGRES_STATEMENT_TIMEOUT", "0s")]);
        let switched_off =
            PostgresConfig::from_env_with_statement_timeout(&mut env, Duration::from_secs(30));
        assert_eq!(switched_off.statement_timeout, Duration::ZERO);
        let mut env = Env::from_pairs([("CEZBEK_POSTGRES_STATEMENT_TIMEOUT", "soon")]);
        PostgresConfig::from_env(&mut env);
        let problems = env.finish(()).unwrap_err().to_string();
        assert!(problems.contains("CEZBEK_POSTGRES_STATEMENT_TIMEOUT"), "{problems}");
    }

    /// Configurations are printed (at start, in errors): no secret may show.
    #[test]
    fn debug_output_holds_no_secret() {
        let mut env = Env::from_pairs([
            ("CEZBEK_S3_ACCESS_KEY", "AKIDPUBLIC"),
            ("CEZBEK_S3_SECRET_KEY", "s3-secret-value"),
            ("CEZBEK_POSTGRES_URL", "postgres://app:pg-secret-value@db:5432/cezbek"),
        ]);
        let s3 = S3Config::from_env(&mut env);
        let postgres = PostgresConfig::from_env(&mut env);
        let printed = format!("{s3:?} {postgres:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        assert!(printed.contains("AKIDPUBLIC") && printed.contains("db:5432"), "{printed}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut env = Env::from_pairs([
            ("CEZBEK_POSTGRES_MAX_CONNECTIONS", "many"),
            ("CEZBEK_ETCD_PREFIX", "cezbek"),
            ("CEZBEK_LOG_FORMAT", "xml"),
            ("CEZBEK_ETCD_CONNECT_TIMEOUT", "5"),
            ("CEZBEK_KAFKA_PROPERTIES", "security.protocol=SSL,oops"),
        ]);
        PostgresConfig::from_env(&mut env);
        EtcdConfig::from_env(&mut env);
        LogConfig::from_env(&mut env);
        KafkaConfig::from_env(&mut env, "test");
        S3Config::from_env(&mut env);
        let error = env.finish(()).unwrap_err();
        let text = error.to_string();
        for expected in [
            "CEZBEK_POSTGRES_MAX_CONNECTIONS: \"many\" is not valid",
            "CEZBEK_ETCD_PREFIX: \"cezbek\" must start and end with /",
            "CEZBEK_LOG_FORMAT: \"xml\" is neither pretty nor json",
            "CEZBEK_ETCD_CONNECT_TIMEOUT: \"5\" needs a unit",
            "CEZBEK_KAFKA_PROPERTIES: \"oops\" is not key=value",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(error.problems.len(), 5, "{text}");
        assert!(text.starts_with("invalid configuration (5 problems):"), "{text}");
    }

    #[test]
    fn s3_aliases_win_and_half_a_key_pair_is_an_error() {
        let mut env = Env::from_pairs([
            ("CEZBEK_S3_REGION", "ap-southeast-3"),
            ("CEZBEK_S3_ACCESS_KEY", "a"),
            ("CEZBEK_S3_SECRET_KEY", "b"),
        ]);
        let s3 = S3Config::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!(s3.region.as_deref(), Some("ap-southeast-3"));
        assert_eq!(
            s3.static_keys,
            Some(StaticKeys { access_key: "a".into(), secret_key: "b".into() })
        );

        let mut env = Env::from_pairs([
            ("CEZBEK_S3_ACCESS_KEY", "a"),
            ("CEZBEK_STS_ENDPOINT", "https://sts.example/"),
        ]);
        S3Config::from_env(&mut env);
        let error = env.finish(()).unwrap_err().to_string();
        assert!(error.contains("CEZBEK_S3_SECRET_KEY: is required with"), "{error}");
        assert!(error.contains("CEZBEK_STS_ENDPOINT: is no longer read"), "{error}");
    }

    #[test]
    fn kafka_properties_pass_through() {
        let mut env = Env::from_pairs([(
            "CEZBEK_KAFKA_PROPERTIES",
            "security.protocol=SSL, sasl.mechanism=AWS_MSK_IAM",
        )]);
        let kafka = KafkaConfig::from_env(&mut env, "x");
        assert_eq!(
            kafka.properties,
            vec![
                ("security.protocol".to_owned(), "SSL".to_owned()),
                ("sasl.mechanism".to_owned(), "AWS_MSK_IAM".to_owned())
            ]
        );
    }
}
