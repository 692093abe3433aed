//! Campaignex against the real PostgreSQL and etcd of the local stack.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cezbek_campaignex::{Config, run};
use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::config::{EtcdConfig, HttpConfig};
use cezbek_platform::{CancellationToken, etcd};
use cezbek_testkit::{PrivateEtcd, TestContext, free_port};
use etcd_client::{GetOptions, WatchOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token";
const VIEWER: &str = "viewer-token";

struct Service {
    base: String,
    /// The ops listener (`/readyz`, `/metrics`).
    ops: String,
    http: reqwest::Client,
    etcd: EtcdConfig,
    shutdown: CancellationToken,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(context: &TestContext, etcd: Option<EtcdConfig>) -> Service {
    let etcd = etcd.unwrap_or_else(|| context.etcd_config());
    let (port, ops_port) = (free_port(), free_port());
    let config = Config {
        http: HttpConfig::api(
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("127.0.0.1:{ops_port}").parse().unwrap(),
        ),
        etcd: etcd.clone(),
        postgres: context.postgres_config().await,
        tokens: AdminTokens::default().with_token("alice", Role::Admin, ADMIN).with_token(
            "victor",
            Role::Viewer,
            VIEWER,
        ),
        reconcile_interval: Duration::from_millis(200),
        key_grace: Duration::from_secs(3600),
        ledger: cezbek_ledger::LedgerChoice::Postgres,
        backtest_pace: 0,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(run(config, shutdown.clone()));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "campaignex did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Service { base, ops: format!("http://127.0.0.1:{ops_port}"), http, etcd, shutdown }
}

impl Service {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(version) = if_match {
            request = request.header("If-Match", version);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        (status, etag, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        self.call(method, path, Some(ADMIN), body, if_match).await
    }

    /// The value etcd holds for `key` once `ready` accepts it. Publishing follows the commit
    /// (as the rewarders see it): wait up to a second, the promise the design makes.
    async fn live(&self, key: &str, ready: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
        let mut client = etcd::connect(&self.etcd).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let response = client.get(format!("{}{key}", self.etcd.prefix), None).await.unwrap();
            let value: Option<Value> =
                response.kvs().first().map(|kv| serde_json::from_slice(kv.value()).unwrap());
            if ready(value.as_ref()) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {key} is still {value:?} a second after the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn partner_body(code: &str) -> Value {
    json!({"code": code, "name": "Toko Maju", "currency": "IDR", "time_zone": "Asia/Jakarta"})
}

fn campaign_body(id: &str) -> Value {
    json!({
        "id": id, "name": "Weekdays", "kind": "BASE", "status": "ACTIVE",
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
        "conditions": {"currency": "IDR", "mccs": [5814]},
        "reward": {"percent_bp": 150}, "max_per_transaction": 20000
    })
}

fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn partners_are_created_with_a_key_shown_once_rotated_suspended_and_deleted() {
    let context = TestContext::new("cxpartners");
    let service = start(&context, None).await;
    let (status, etag, created) =
        service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let secret = created["signing_key"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(base64_len(&secret), 32);
    assert_eq!(created["status"], "ACTIVE");
    assert!(created["keys"][0].get("secret").is_none(), "the representation never carries secrets");

    // etcd has the full record, secret included, for the ingestor.
    let live = service.live("partners/TOKO", |v| v.is_some()).await.unwrap();
    assert_eq!(live["keys"][0]["secret"], secret);

    let (status, _, read) =
        service.call(Method::GET, "/v1/partners/TOKO", Some(VIEWER), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(read["keys"][0].get("secret").is_none());
    assert!(read.get("signing_key").is_none(), "the secret is shown once");

    let (status, _, rotated) = service
        .admin(
            Method::POST,
            "/v1/partners/TOKO/keys",
            Some(json!({"retire_after_seconds": 60})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    assert!(rotated["keys"][0]["not_after"].is_string(), "the old key retires: {rotated}");
    assert!(rotated["keys"][1]["not_after"].is_null());
    assert_ne!(rotated["signing_key"]["secret"], secret);
    // A grace no clock can reach is a field error, not a dropped connection.
    for huge in [u64::MAX, 1_000_000_000_000_000, 365 * 24 * 3600 + 1] {
        let (status, _, body) = service
            .admin(
                Method::POST,
                "/v1/partners/TOKO/keys",
                Some(json!({"retire_after_seconds": huge})),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_fields(&body), vec!["retire_after_seconds"], "{body}");
    }

    let (status, _, suspended) =
        service.admin(Method::POST, "/v1/partners/TOKO/suspend", None, None).await;
    assert_eq!((status, suspended["status"].as_str()), (StatusCode::OK, Some("SUSPENDED")));
    service.live("partners/TOKO", |v| v.is_some_and(|v| v["status"] == "SUSPENDED")).await;
    let (_, _, active) =
        service.admin(Method::POST, "/v1/partners/TOKO/reactivate", None, None).await;
    assert_eq!(active["status"], "ACTIVE");

    let (status, _, body) =
        service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = service
        .admin(
            Method::POST,
            "/v1/partners",
            Some(json!({"code": "x", "currency": "RUPIAH", "time_zone": "Mars/Base"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&body), vec!["code", "currency"], "{body}");
    let (status, _, body) = service
        .admin(
            Method::POST,
            "/v1/partners",
            Some(json!({"code": "TOKO2", "currency": "IDR", "time_zone": "Mars/Base"})),
            None,
        )
        .await;
    assert_eq!(
        (status, error_fields(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["time_zone".to_owned()])
    );

    // A replacement that leaves the status out keeps it (suspend and reactivate own it).
    let (_, _, suspended) =
        service.admin(Method::POST, "/v1/partners/TOKO/suspend", None, None).await;
    let mut renamed = partner_body("TOKO");
    renamed.as_object_mut().unwrap().remove("status");
    renamed["name"] = json!("Toko Baru");
    let version = suspended["version"].to_string();
    let (status, _, replaced) =
        service.admin(Method::PUT, "/v1/partners/TOKO", Some(renamed), Some(&version)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(
        (replaced["name"].as_str(), replaced["status"].as_str()),
        (Some("Toko Baru"), Some("SUSPENDED"))
    );

    let version = replaced["version"].to_string();
    let (status, _, _) =
        service.admin(Method::DELETE, "/v1/partners/TOKO", None, Some(&version)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    service.live("partners/TOKO", |v| v.is_none()).await;
    // Its backtests went with it (found by schemathesis' stateful phase).
    let (status, _, _) =
        service.admin(Method::GET, "/v1/partners/TOKO/backtests", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn base64_len(text: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap().len()
}

#[tokio::test]
async fn campaigns_validate_every_field_and_use_versions() {
    let context = TestContext::new("cxcampaigns");
    let service = start(&context, None).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;

    let (status, _, body) = service
        .admin(Method::POST, "/v1/partners/NOPE/campaigns", Some(campaign_body("c1")), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let mut bad = campaign_body("bad id");
    bad["kind"] = json!("MEGA");
    bad["conditions"]["mccs"] = json!([0]);
    bad["reward"] = json!({"percent_bp": 0});
    bad["ends_at"] = json!("yesterday");
    bad.as_object_mut().unwrap().remove("status");
    let (status, _, body) =
        service.admin(Method::POST, "/v1/partners/TOKO/campaigns", Some(bad), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, vec!["conditions.mccs[0]", "ends_at", "kind", "status"], "{body}");

    // Type-correct but semantically wrong: every rule is reported.
    let mut semantic = campaign_body("bad id");
    semantic["reward"] = json!({"percent_bp": 20000});
    semantic["ends_at"] = json!("2020-01-01T00:00:00Z");
    let (_, _, body) =
        service.admin(Method::POST, "/v1/partners/TOKO/campaigns", Some(semantic), None).await;
    assert_eq!(error_fields(&body), vec!["id", "ends_at", "reward.percent_bp"], "{body}");
    assert_eq!(body["status"], 422);

    let (status, etag, created) = service
        .admin(
            Method::POST,
            "/v1/partners/TOKO/campaigns",
            Some(campaign_body("weekday-1.5")),
            None,
        )
        .await;
    assert_eq!((status, etag.as_deref()), (StatusCode::CREATED, Some("\"1\"")), "{created}");
    assert_eq!(created["partner"], "TOKO");
    service
        .live("campaigns/TOKO/weekday-1.5", |v| v.is_some_and(|v| v["reward"]["percent_bp"] == 150))
        .await;
    let (status, _, _) = service
        .admin(
            Method::POST,
            "/v1/partners/TOKO/campaigns",
            Some(campaign_body("weekday-1.5")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let path = "/v1/partners/TOKO/campaigns/weekday-1.5";
    let mut changed = campaign_body("weekday-1.5");
    changed["reward"] = json!({"percent_bp": 200});
    let (status, _, _) = service.admin(Method::PUT, path, Some(changed.clone()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, etag, updated) =
        service.admin(Method::PUT, path, Some(changed.clone()), Some("\"1\"")).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")), "{updated}");
    // Someone else still holding version 1 loses.
    let (status, _, body) =
        service.admin(Method::PUT, path, Some(changed.clone()), Some("\"1\"")).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let mut other_id = changed.clone();
    other_id["id"] = json!("something-else");
    let (status, _, body) = service.admin(Method::PUT, path, Some(other_id), Some("\"2\"")).await;
    assert_eq!(
        (status, error_fields(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["id".to_owned()])
    );
    service
        .live("campaigns/TOKO/weekday-1.5", |v| v.is_some_and(|v| v["reward"]["percent_bp"] == 200))
        .await;

    let (_, _, listed) =
        service.call(Method::GET, "/v1/partners/TOKO/campaigns", Some(VIEWER), None, None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let (status, _, body) =
        service.admin(Method::DELETE, "/v1/partners/TOKO", None, Some("1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "a partner with campaigns stays: {body}");
    let (status, _, _) = service.admin(Method::DELETE, path, None, Some("\"2\"")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = service.call(Method::GET, path, Some(VIEWER), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    service.live("campaigns/TOKO/weekday-1.5", |v| v.is_none()).await;
}

#[tokio::test]
async fn exclusions_and_tier_programs() {
    let context = TestContext::new("cxexcl");
    let service = start(&context, None).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    let exclusion = json!({"id": "no-gambling", "mcc": 7995, "valid_from": "2026-01-01T00:00:00Z", "reason": "policy"});
    let (status, _, created) =
        service.admin(Method::POST, "/v1/partners/TOKO/exclusions", Some(exclusion), None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    service.live("exclusions/TOKO/no-gambling", |v| v.is_some_and(|v| v["mcc"] == 7995)).await;
    let bad = json!({"id": "x", "msisdn": "call-me", "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2025-01-01T00:00:00Z"});
    let (status, _, body) =
        service.admin(Method::POST, "/v1/partners/TOKO/exclusions", Some(bad), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_fields(&body), vec!["msisdn"], "{body}");

    let program = json!({"window_days": 30, "tiers": [
        {"name": "SILVER", "min_purchases": 3, "multiplier_bp": 11000},
        {"name": "GOLD", "min_spend": 5000000, "multiplier_bp": 12000, "fixed_bonus": 1000}
    ]});
    let (status, etag, _) =
        service.admin(Method::PUT, "/v1/partners/TOKO/tiers", Some(program.clone()), None).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::CREATED, Some("\"1\"")));
    let (status, _, _) =
        service.admin(Method::PUT, "/v1/partners/TOKO/tiers", Some(program.clone()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "replacing needs If-Match");
    let (status, etag, _) =
        service.admin(Method::PUT, "/v1/partners/TOKO/tiers", Some(program), Some("1")).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    service.live("tiers/TOKO", |v| v.is_some_and(|v| v["tiers"][1]["name"] == "GOLD")).await;
    let bad = json!({"window_days": 0, "tiers": [{"name": "gold"}]});
    let (_, _, body) =
        service.admin(Method::PUT, "/v1/partners/TOKO/tiers", Some(bad), Some("2")).await;
    assert_eq!(
        error_fields(&body),
        vec!["window_days", "tiers[0].name", "tiers[0].min_purchases"],
        "{body}"
    );
    let (status, _, _) =
        service.admin(Method::DELETE, "/v1/partners/TOKO/tiers", None, Some("2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_audit_trail_records_actor_before_and_after_without_secrets() {
    let context = TestContext::new("cxaudit");
    let service = start(&context, None).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    service
        .admin(Method::POST, "/v1/partners/TOKO/campaigns", Some(campaign_body("c1")), None)
        .await;
    let mut changed = campaign_body("c1");
    changed["status"] = json!("PAUSED");
    service.admin(Method::PUT, "/v1/partners/TOKO/campaigns/c1", Some(changed), Some("1")).await;

    let (status, _, audit) = service
        .call(Method::GET, "/v1/audit?entity=campaign&id=TOKO/c1", Some(VIEWER), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["action"].as_str(), items[0]["actor"].as_str()),
        (Some("update"), Some("alice"))
    );
    assert_eq!(items[0]["before"]["status"], "ACTIVE");
    assert_eq!(items[0]["after"]["status"], "PAUSED");
    assert_eq!(items[1]["action"], "create");
    assert!(items[1]["before"].is_null());

    let (_, _, partner_audit) =
        service.call(Method::GET, "/v1/audit?entity=partner", Some(VIEWER), None, None).await;
    let text = partner_audit.to_string();
    assert!(text.contains("key_id") && !text.contains("secret"), "{text}");

    // Filters that cannot match anything are named, not silently widened or clamped.
    let (status, _, problem) = service
        .call(Method::GET, "/v1/audit?entity=campaigns&limit=1001", Some(VIEWER), None, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(error_fields(&problem), vec!["entity", "limit"], "{problem}");
    let (status, _, limited) =
        service.call(Method::GET, "/v1/audit?limit=1", Some(VIEWER), None, None).await;
    assert_eq!((status, limited["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    // An id PostgreSQL could not even compare matches nothing rather than failing.
    let (status, _, none) =
        service.call(Method::GET, "/v1/audit?id=TOKO%00", Some(VIEWER), None, None).await;
    assert_eq!((status, none["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (status, _, _) = service
        .call(Method::GET, "/v1/partners/TOKO/campaigns/c1%00", Some(VIEWER), None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a rule id with a NUL names no rule");
}

#[tokio::test]
async fn auth_boundaries() {
    let context = TestContext::new("cxauth");
    let service = start(&context, None).await;
    let (status, _, body) = service.call(Method::GET, "/v1/partners", None, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["status"], 401);
    let (status, _, _) =
        service.call(Method::GET, "/v1/partners", Some("not-a-token"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = service.call(Method::GET, "/v1/partners", Some(VIEWER), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = service
        .call(Method::POST, "/v1/partners", Some(VIEWER), Some(partner_body("TOKO")), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = service.call(Method::GET, "/openapi.json", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "the API description is public, as the other services'");
    let (status, _, _) = service.call(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "/healthz needs no token");
    // Readiness and metrics name partners and dependencies: only on the ops listener.
    for ops in ["/readyz", "/metrics"] {
        let (status, _, _) = service.call(Method::GET, ops, None, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{ops} is not public");
        let answer = service.http.get(format!("{}{ops}", service.ops)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{ops} on the ops listener needs no token");
    }
}

#[tokio::test]
async fn a_watcher_sees_each_change_within_a_second() {
    let context = TestContext::new("cxwatch");
    let service = start(&context, None).await;
    let mut client = etcd::connect(&service.etcd).await.unwrap();
    let mut stream = client
        .watch(service.etcd.prefix.as_str(), Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();

    let mut next_event = async |what: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let response = tokio::time::timeout_at(deadline, stream.message()).await;
            let response = response
                .unwrap_or_else(|_| panic!("{what}: no etcd event within a second"))
                .unwrap()
                .unwrap();
            // Progress notifications carry no events; a change does.
            if !response.events().is_empty() {
                return response.events().len();
            }
        }
    };
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    next_event("partner created").await;
    service
        .admin(Method::POST, "/v1/partners/TOKO/campaigns", Some(campaign_body("c1")), None)
        .await;
    next_event("campaign created").await;
    let mut changed = campaign_body("c1");
    changed["reward"] = json!({"fixed": 500});
    service.admin(Method::PUT, "/v1/partners/TOKO/campaigns/c1", Some(changed), Some("1")).await;
    next_event("campaign updated").await;
    service.admin(Method::DELETE, "/v1/partners/TOKO/campaigns/c1", None, Some("2")).await;
    next_event("campaign deleted").await;
}

#[tokio::test]
async fn the_reconciler_restores_deleted_keys_and_removes_orphans() {
    let context = TestContext::new("cxreconcile");
    let service = start(&context, None).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    service
        .admin(Method::POST, "/v1/partners/TOKO/campaigns", Some(campaign_body("c1")), None)
        .await;
    let mut client = etcd::connect(&service.etcd).await.unwrap();
    let key = format!("{}campaigns/TOKO/c1", service.etcd.prefix);
    let orphan = format!("{}campaigns/TOKO/ghost", service.etcd.prefix);
    client.delete(key.as_str(), None).await.unwrap();
    client.put(orphan.as_str(), "{}", None).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let restored = client.get(key.as_str(), None).await.unwrap().count() == 1;
        let removed = client.get(orphan.as_str(), None).await.unwrap().count() == 0;
        if restored && removed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reconciler did not repair: restored={restored} removed={removed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = service.http.get(format!("{}/metrics", service.ops)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("cezbek_campaignex_etcd_repairs_total{action=\"put\"}"), "{metrics}");
}

#[tokio::test]
async fn a_change_made_while_etcd_is_down_is_published_when_it_returns() {
    let context = TestContext::new("cxoutage");
    let mut private = PrivateEtcd::start("cxoutage");
    let etcd_config = EtcdConfig {
        endpoints: vec![private.endpoint.clone()],
        connect_timeout: Duration::from_millis(500),
        ..context.etcd_config()
    };
    let service = start(&context, Some(etcd_config.clone())).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;

    private.stop();
    let (status, _, body) = service
        .admin(
            Method::POST,
            "/v1/partners/TOKO/campaigns",
            Some(campaign_body("during-outage")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "PostgreSQL is the truth; the write succeeds: {body}");

    private.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut client) = etcd::connect(&etcd_config).await {
            let key = format!("{}campaigns/TOKO/during-outage", etcd_config.prefix);
            if client.get(key.as_str(), None).await.is_ok_and(|r| r.count() == 1) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the campaign never reached etcd after the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn evaluate_uses_the_live_rules_without_side_effects() {
    let context = TestContext::new("cxevaluate");
    let service = start(&context, None).await;
    service.admin(Method::POST, "/v1/partners", Some(partner_body("TOKO")), None).await;
    service
        .admin(
            Method::POST,
            "/v1/partners/TOKO/campaigns",
            Some(campaign_body("weekday-1.5")),
            None,
        )
        .await;
    service.live("campaigns/TOKO/weekday-1.5", |v| v.is_some()).await;
    let mut client = etcd::connect(&service.etcd).await.unwrap();
    let before = client
        .get(service.etcd.prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let revision = before.header().unwrap().revision();
    let (_, _, audit_before) =
        service.call(Method::GET, "/v1/audit", Some(VIEWER), None, None).await;

    let sample = json!({"msisdn": "0812-3456-7890", "amount": 200000, "mcc": 5814, "occurred_at": "2026-06-01T10:00:00Z"});
    let (status, _, body) = service
        .call(Method::POST, "/v1/partners/TOKO/evaluate", Some(VIEWER), Some(sample), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let decision = &body["decision"];
    assert_eq!(decision["cashback"], 3000);
    assert_eq!(decision["outcome"], "REWARDED");
    assert_eq!(decision["rules_revision"], revision);
    assert_eq!(decision["explanation"], "BASE weekday-1.5 150 bp of 200000 = 3000");

    let (status, _, body) = service
        .call(
            Method::POST,
            "/v1/partners/TOKO/evaluate",
            Some(VIEWER),
            Some(json!({"msisdn": "abc", "amount": -1, "mcc": 0})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&body), vec!["msisdn", "mcc"], "{body}");

    let after = client
        .get(service.etcd.prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(after.header().unwrap().revision(), revision, "evaluate wrote nothing to etcd");
    let (_, _, audit_after) =
        service.call(Method::GET, "/v1/audit", Some(VIEWER), None, None).await;
    assert_eq!(audit_before, audit_after, "evaluate wrote nothing to the store");
}

fn provider_body(name: &str) -> Value {
    json!({
        "name": name,
        "adapter": "iris",
        "base_url": "https://app.midtrans.com/iris",
        "credentials": {"creator_key": "IRIS_CREATOR_KEY", "approver_key": "IRIS_APPROVER_KEY",
                        "merchant_key": "IRIS_MERCHANT_KEY"},
        "channels": {"GOPAY": {"fee": {"fixed": 200000, "vat_basis_points": 1100},
                               "min_amount": 1000000, "max_amount": 1000000000}},
        "hours": {"open": "06:00", "close": "22:00", "time_zone": "Asia/Jakarta"},
    })
}

/// Payment providers: validated field by field (credentials only by variable name), live in
/// etcd within a second, versioned, audited, and deleted.
#[tokio::test]
async fn payment_providers_are_validated_published_audited_and_deleted() {
    let context = TestContext::new("cxproviders");
    let service = start(&context, None).await;
    let (status, etag, created) =
        service.admin(Method::POST, "/v1/providers", Some(provider_body("iris")), None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((etag.as_deref(), created["enabled"].as_bool()), (Some("\"1\""), Some(true)));
    let live = service.live("providers/iris", |value| value.is_some()).await.unwrap();
    assert_eq!(live["credentials"]["merchant_key"], "IRIS_MERCHANT_KEY");
    assert_eq!(live["timeout_ms"], 10_000);
    let (status, _, _) =
        service.admin(Method::POST, "/v1/providers", Some(provider_body("iris")), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Every problem named by its field; a secret pasted where its variable's name belongs is
    // refused.
    let mut bad = provider_body("snap");
    bad["adapter"] = json!("snap");
    bad["credentials"] = json!({"client_key": "SNAP_CLIENT", "client_secret": "s3cr3t-value"});
    bad["channels"] = json!({"PAYPAL": {"fee": {"fixed": -1}, "min_amount": 5, "max_amount": 1}});
    bad["base_url"] = json!("ftp://bank");
    let (status, _, problem) = service.admin(Method::POST, "/v1/providers", Some(bad), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        error_fields(&problem),
        [
            "base_url",
            "credentials.client_secret",
            "credentials.private_key",
            "channels.PAYPAL",
            "channels.PAYPAL.fee.fixed",
            "channels.PAYPAL.max_amount",
        ],
        "{problem}"
    );
    let (status, _, _) = service
        .call(Method::POST, "/v1/providers", Some(VIEWER), Some(provider_body("v")), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer may not add providers");

    // Disabled with If-Match: live, and in the audit trail with the actor and the change.
    let mut disabled = provider_body("iris");
    disabled["enabled"] = json!(false);
    let (status, _, _) =
        service.admin(Method::PUT, "/v1/providers/iris", Some(disabled.clone()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, etag, _) =
        service.admin(Method::PUT, "/v1/providers/iris", Some(disabled), Some("1")).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    service.live("providers/iris", |value| value.is_some_and(|v| v["enabled"] == false)).await;
    let (_, _, listed) = service.call(Method::GET, "/v1/providers", Some(VIEWER), None, None).await;
    assert_eq!(listed["items"][0]["version"], 2);
    let (_, _, audit) = service
        .call(Method::GET, "/v1/audit?entity=provider&id=iris", Some(VIEWER), None, None)
        .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(
        (items[0]["action"].as_str(), items[0]["actor"].as_str()),
        (Some("update"), Some("alice"))
    );
    assert_eq!(
        (items[0]["before"]["enabled"].as_bool(), items[0]["after"]["enabled"].as_bool()),
        (Some(true), Some(false))
    );

    let (status, _, _) = service.admin(Method::DELETE, "/v1/providers/iris", None, Some("2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    service.live("providers/iris", |value| value.is_none()).await;
    let (status, _, _) =
        service.call(Method::GET, "/v1/providers/iris", Some(VIEWER), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let context = TestContext::new("cxopenapi");
    let service = start(&context, None).await;
    let (status, _, document) =
        service.call(Method::GET, "/openapi.json", Some(VIEWER), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 13);
    // Generated from the models: the constraints the server enforces are stated.
    let schemas = &document["components"]["schemas"];
    let zones = schemas["Partner"]["properties"]["time_zone"]["enum"].as_array().unwrap();
    assert!(zones.contains(&json!("Asia/Jakarta")) && !zones.contains(&json!("Mars/Base")));
    assert_eq!(
        schemas["Partner"]["properties"]["keys"]["readOnly"], true,
        "{}",
        schemas["Partner"]
    );
    assert_eq!(schemas["Campaign"]["properties"]["id"]["pattern"], "^[A-Za-z0-9._-]{1,64}$");
    let replace = &paths["/v1/partners/{partner}/campaigns/{id}"]["put"];
    let if_match =
        replace["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "If-Match");
    assert_eq!(
        if_match.map(|p| (&p["in"], &p["required"])),
        Some((&json!("header"), &json!(true)))
    );
    for status in ["412", "422", "428"] {
        assert!(
            replace["responses"][status]["content"]["application/problem+json"].is_object(),
            "{status}: {}",
            replace["responses"]
        );
    }
    for (path, operations) in paths {
        let concrete =
            path.replace("{partner}", "NOPE").replace("{id}", "x").replace("{name}", "x");
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = service
                .http
                .request(method.clone(), format!("{}{concrete}", service.base))
                .bearer_auth(VIEWER)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let is_problem = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap().contains("problem+json"));
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            assert!(
                status != StatusCode::NOT_FOUND || is_problem,
                "{method} {path} is documented but not routed"
            );
        }
    }
}

/// Each partner's customer-token keys: an HMAC secret shorter than the algorithm's output, a
/// PEM that is not a key and a JWK Set over plain HTTP are refused naming the field; a secret
/// is never shown, and a partner read and written back keeps the secret it had.
#[tokio::test]
async fn customer_token_keys_are_validated_kept_and_never_shown() {
    let context = TestContext::new("cxtokens");
    let service = start(&context, None).await;
    let with_tokens = |tokens: Value| {
        let mut body = partner_body("TOKO");
        body["customer_tokens"] = tokens;
        body
    };
    // 16 bytes for HS256; a PEM that is none; a JWK Set over plain http to another host.
    let short = json!({"algorithm": "HS256", "keys": [{"secret": "MDEyMzQ1Njc4OWFiY2RlZg=="}]});
    let not_pem = json!({"algorithm": "RS256", "keys": [{"pem": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}]});
    let plain = json!({"algorithm": "RS256", "jwks_url": "http://idp.toko.example/jwks"});
    for (tokens, field) in [
        (short, "customer_tokens.keys[0].secret"),
        (not_pem, "customer_tokens.keys[0].pem"),
        (plain, "customer_tokens.jwks_url"),
    ] {
        let (status, _, body) =
            service.admin(Method::POST, "/v1/partners", Some(with_tokens(tokens)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_fields(&body), vec![field], "{body}");
    }

    let secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let tokens = json!({"algorithm": "HS256", "issuer": "https://id.toko.example",
                        "keys": [{"kid": "2026", "secret": secret}]});
    let (status, etag, created) =
        service.admin(Method::POST, "/v1/partners", Some(with_tokens(tokens)), None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["customer_tokens"]["keys"][0].get("secret").is_none(), "{created}");
    let live = service.live("partners/TOKO", |v| v.is_some()).await.unwrap();
    assert_eq!(live["customer_tokens"]["keys"][0]["secret"], secret, "the informer needs it");

    // Read, edited and written back without the secret: the stored one stays.
    let (_, _, mut read) = service.admin(Method::GET, "/v1/partners/TOKO", None, None).await;
    read["name"] = json!("Toko Maju Jaya");
    read.as_object_mut().unwrap().remove("keys"); // signing keys are managed apart
    let (status, _, updated) =
        service.admin(Method::PUT, "/v1/partners/TOKO", Some(read), etag.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let live = service
        .live("partners/TOKO", |v| v.is_some_and(|v| v["name"] == "Toko Maju Jaya"))
        .await
        .unwrap();
    assert_eq!(live["customer_tokens"]["keys"][0]["secret"], secret);

    // A secret given as null is not "left out": refused, the stored one untouched.
    let (_, etag, mut read) = service.admin(Method::GET, "/v1/partners/TOKO", None, None).await;
    read.as_object_mut().unwrap().remove("keys");
    read["customer_tokens"]["keys"][0]["secret"] = Value::Null;
    let (status, _, refused) =
        service.admin(Method::PUT, "/v1/partners/TOKO", Some(read), etag.as_deref()).await;
    assert!(status.is_client_error(), "{status} {refused}");
    assert!(refused.to_string().contains("customer_tokens.keys[0]"), "{refused}");
    let (_, _, audit) =
        service.admin(Method::GET, "/v1/audit?entity=partner&id=TOKO", None, None).await;
    assert!(!audit.to_string().contains(secret), "the audit trail holds no secret: {audit}");
}
