//! The informer against the real stack: a PostgreSQL ledger seeded with decisions, partners and
//! tiers in etcd, the service on a port of its own. Each test proves one promise of the API,
//! including every boundary between partners, customers and admins.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use cezbek_informer::{Config, run};
use cezbek_ledger::{
    CustomerBatch, Ledger, LedgerChoice, PostgresLedger, RewardRecord, StateWrite,
};
use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::config::{EtcdConfig, HttpConfig};
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_platform::{CancellationToken, etcd, partner_auth};
use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome,
    TransactionId, TransactionKind,
};
use cezbek_testkit::{TestContext, free_port};

const ADMIN: &str = "informer-admin";
const PARTNER_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const JWT_SECRET: &[u8] = b"the partner identity provider's key";
const ISSUER: &str = "https://id.toko.example";
const UNSUBSCRIBE_SECRET: &[u8] = b"unsubscribe-secret-unsubscribe-secret";
const ALICE: &str = "+6281200000001";
const BOB: &str = "+6281200000002";
const CAROL: &str = "+6281200000003";

struct Harness {
    _context: TestContext,
    base: String,
    /// The ops listener: `/readyz` and `/metrics` are not on the public one.
    ops: String,
    etcd: EtcdConfig,
    http: reqwest::Client,
    ledger: PostgresLedger,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(name: &str) -> Harness {
    let context = TestContext::new(name);
    let etcd = context.etcd_config();
    let postgres = context.postgres_config().await;
    let pool = cezbek_platform::postgres::connect(&postgres).await.unwrap();
    let ledger = PostgresLedger::new(pool);
    ledger.migrate().await.unwrap();
    put_partners(&etcd).await;

    let (port, ops_port) = (free_port(), free_port());
    let config = Config {
        http: HttpConfig::api(
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("127.0.0.1:{ops_port}").parse().unwrap(),
        ),
        postgres,
        etcd: etcd.clone(),
        ledger: LedgerChoice::Postgres,
        tokens: AdminTokens::default().with_token("ops", Role::Viewer, ADMIN),
        unsubscribe: UnsubscribeKey::new(UNSUBSCRIBE_SECRET),
        cursor_secret: Some("cursor-secret".into()),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(run(config, shutdown.clone()));
    let harness = Harness {
        _context: context,
        base: format!("http://127.0.0.1:{port}"),
        ops: format!("http://127.0.0.1:{ops_port}"),
        etcd,
        http: reqwest::Client::new(),
        ledger,
        shutdown,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = harness.http.get(format!("{}/readyz", harness.ops)).send().await;
        if ready.is_ok_and(|response| response.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the informer did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Partner codes and dependencies are for operators: the public port has only /healthz.
    for (path, status) in [("/healthz", 200), ("/readyz", 404), ("/metrics", 404)] {
        let answer = harness.http.get(format!("{}{path}", harness.base)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "public {path}");
    }
    harness
}

/// Partners TOKO and WARUNG (same signing key; TOKO's customers carry tokens of its identity
/// provider's HS256 secret), and TOKO's tier program.
async fn put_partners(etcd: &EtcdConfig) {
    let mut client = etcd::connect(etcd).await.unwrap();
    let secret = base64_secret();
    for code in ["TOKO", "WARUNG"] {
        let mut record = json!({
            "code": code, "name": format!("{code} Ltd"), "status": "ACTIVE", "currency": "IDR",
            "time_zone": "Asia/Jakarta",
            "keys": [{"key_id": "k1", "secret": secret, "not_after": null}],
        });
        if code == "TOKO" {
            use base64::Engine;
            record["customer_tokens"] = json!({
                "algorithm": "HS256", "issuer": ISSUER,
                "keys": [{"secret": base64::engine::general_purpose::STANDARD.encode(JWT_SECRET)}],
            });
        }
        client
            .put(format!("{}partners/{code}", etcd.prefix), record.to_string(), None)
            .await
            .unwrap();
    }
    let tiers = json!({
        "partner": "TOKO", "window_days": 30,
        "tiers": [
            {"name": "SILVER", "min_purchases": 2, "multiplier_bp": 11000},
            {"name": "GOLD", "min_purchases": 5, "min_spend": 1000000, "multiplier_bp": 12000},
        ],
    });
    client.put(format!("{}tiers/TOKO", etcd.prefix), tiers.to_string(), None).await.unwrap();
}

fn base64_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(PARTNER_SECRET)
}

fn msisdn(text: &str) -> Msisdn {
    Msisdn::parse(text).unwrap()
}

fn toko() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

struct Decided<'a> {
    id: &'a str,
    customer: &'a str,
    at: DateTime<Utc>,
    kind: TransactionKind,
    amount: i64,
    cashback: i64,
    campaigns: Vec<(&'a str, CampaignKind, i64)>,
    tier: Option<&'a str>,
}

fn record(decided: Decided<'_>) -> RewardRecord {
    let outcome = match (decided.kind, decided.cashback) {
        (TransactionKind::Refund, _) => RewardOutcome::Clawback,
        (_, 0) => RewardOutcome::NoMatch,
        _ => RewardOutcome::Rewarded,
    };
    let original =
        (decided.kind == TransactionKind::Refund).then(|| TransactionId::parse("a-2").unwrap());
    RewardRecord {
        reward: Reward {
            partner: toko(),
            transaction_id: TransactionId::parse(decided.id).unwrap(),
            kind: decided.kind,
            original_transaction_id: original,
            msisdn: msisdn(decided.customer),
            amount: decided.amount,
            currency: Currency::parse("IDR").unwrap(),
            merchant: Some("Kopi Kenangan".into()),
            outcome,
            cashback: decided.cashback,
            tier_before: None,
            tier_after: decided.tier.map(str::to_owned),
            applied_campaigns: decided
                .campaigns
                .iter()
                .map(|(id, kind, amount)| AppliedCampaign {
                    campaign_id: (*id).to_owned(),
                    kind: *kind,
                    amount: *amount,
                })
                .collect(),
            exclusion_id: None,
            rules_revision: 41,
            explanation: format!("decided {}", decided.id),
            occurred_at: decided.at,
            decided_at: decided.at + chrono::Duration::seconds(1),
        },
        mcc: Some(Mcc::new(5814).unwrap()),
        quantity: 1,
        log_offset: None,
        local_day: decided.at.with_timezone(&chrono_tz::Asia::Jakarta).date_naive(),
        content_hash: format!("hash-{}", decided.id),
        budget_limits: Vec::new(),
    }
}

fn purchase<'a>(
    id: &'a str,
    customer: &'a str,
    at: DateTime<Utc>,
    amount: i64,
    cashback: i64,
) -> Decided<'a> {
    Decided {
        id,
        customer,
        at,
        kind: TransactionKind::Purchase,
        amount,
        cashback,
        campaigns: if cashback > 0 { vec![("base", CampaignKind::Base, cashback)] } else { vec![] },
        tier: Some("SILVER"),
    }
}

/// Writes decisions as the rewarder does: under a lease on the customer's shard.
async fn seed(ledger: &PostgresLedger, customer: &str, records: Vec<RewardRecord>) {
    let lease = ledger.claim("cezbek.transactions.v1/0").await.unwrap();
    ledger
        .apply(&[CustomerBatch {
            partner: toko(),
            msisdn: msisdn(customer),
            lease,
            records,
            state: Some(StateWrite {
                tier: Some("SILVER".into()),
                email: Some("customer@example.com".into()),
            }),
            budget_spends: Vec::new(),
        }])
        .await
        .unwrap();
}

/// Alice: 60 purchases a minute apart, newest now - 1 h.
async fn seed_alice(ledger: &PostgresLedger) -> Vec<String> {
    let newest = Utc::now() - chrono::Duration::hours(1);
    let ids: Vec<String> = (0..60).map(|i| format!("a-{i:02}")).collect();
    let records = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let minutes = i64::try_from(i).unwrap();
            record(purchase(id, ALICE, newest - chrono::Duration::minutes(minutes), 10_000, 100))
        })
        .collect();
    seed(ledger, ALICE, records).await;
    ids
}

impl Harness {
    fn partner_headers(&self, partner: &str, target: &str) -> Vec<(&'static str, String)> {
        let timestamp = Utc::now().timestamp();
        let signature = partner_auth::sign(PARTNER_SECRET, "GET", target, timestamp, b"");
        vec![
            ("X-Cezbek-Partner", partner.to_owned()),
            ("X-Cezbek-Key-Id", "k1".to_owned()),
            ("X-Cezbek-Timestamp", timestamp.to_string()),
            ("X-Cezbek-Signature", signature),
        ]
    }

    async fn get(&self, target: &str, headers: Vec<(&'static str, String)>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{target}", self.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }

    async fn as_partner(&self, partner: &str, target: &str) -> (u16, Value) {
        let response = self.get(target, self.partner_headers(partner, target)).await;
        json_of(response).await
    }

    async fn with_bearer(&self, token: &str, target: &str) -> (u16, Value) {
        let response = self.get(target, vec![("Authorization", format!("Bearer {token}"))]).await;
        json_of(response).await
    }
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn customer_token(partner: &str, customer: &str, key: &[u8], lifetime_seconds: i64) -> String {
    let claims = json!({
        "partner": partner, "msisdn": customer, "iss": ISSUER,
        "exp": Utc::now().timestamp() + lifetime_seconds,
    });
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

fn ids(body: &Value) -> Vec<String> {
    body["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}

fn field_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn history_pages_newest_first_with_a_verifiable_cursor() {
    let harness = start("infhistory").await;
    let expected = seed_alice(&harness.ledger).await;

    // Any accepted form of the number names the same customer.
    let mut seen = Vec::new();
    let mut target = "/v1/partners/TOKO/customers/081200000001/rewards?limit=20".to_owned();
    loop {
        let (status, body) = harness.as_partner("TOKO", &target).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["msisdn"], ALICE);
        seen.extend(ids(&body));
        let Some(cursor) = body["next_cursor"].as_str() else { break };
        target =
            format!("/v1/partners/TOKO/customers/6281200000001/rewards?limit=20&cursor={cursor}");
    }
    assert_eq!(seen, expected, "every reward once, newest first");

    let (status, body) =
        harness.as_partner("TOKO", "/v1/partners/TOKO/customers/%2B6281200000001/rewards").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body).len(), 50, "default limit is 50");
    assert!(body["next_cursor"].is_string());

    // A tampered cursor, or one from another customer's query, is a 400 naming the cursor.
    let (_, first) = harness
        .as_partner("TOKO", "/v1/partners/TOKO/customers/081200000001/rewards?limit=5")
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (target, reason) in [
        (
            format!("/v1/partners/TOKO/customers/081200000001/rewards?cursor={tampered}"),
            "is not a cursor",
        ),
        (
            format!("/v1/partners/TOKO/customers/081200000002/rewards?cursor={cursor}"),
            "belongs to another",
        ),
        (
            format!(
                "/v1/partners/TOKO/customers/081200000001/rewards?from=2020-01-01&cursor={cursor}"
            ),
            "belongs to another",
        ),
    ] {
        let (status, body) = harness.as_partner("TOKO", &target).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(field_errors(&body), vec!["cursor"]);
        assert!(body["errors"][0]["reason"].as_str().unwrap().contains(reason), "{body}");
    }

    // Bad parameters are named, all at once.
    let (status, body) = harness
        .as_partner(
            "TOKO",
            "/v1/partners/TOKO/customers/081200000001/rewards?limit=201&from=yesterday&colour=red",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(field_errors(&body), vec!["colour", "from", "limit"]);
    let (status, body) = harness
        .as_partner("TOKO", "/v1/partners/TOKO/customers/081200000001/rewards?limit=0")
        .await;
    assert_eq!((status, field_errors(&body)), (400, vec!["limit".to_owned()]));
    let (status, body) = harness.as_partner("TOKO", "/v1/partners/TOKO/customers/12/rewards").await;
    assert_eq!((status, field_errors(&body)), (400, vec!["msisdn".to_owned()]));

    // A date range in the partner's time zone: from and to are whole local days.
    let today = Utc::now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive();
    let (status, body) = harness
        .as_partner(
            "TOKO",
            &format!(
                "/v1/partners/TOKO/customers/081200000001/rewards?from={today}&to={today}&limit=200"
            ),
        )
        .await;
    assert_eq!(status, 200);
    let in_day = harness.ledger_history_on(today).await;
    assert_eq!(ids(&body), in_day);
}

impl Harness {
    async fn ledger_history_on(&self, day: NaiveDate) -> Vec<String> {
        let page = self
            .ledger
            .history(&cezbek_ledger::HistoryQuery {
                partner: toko(),
                msisdn: msisdn(ALICE),
                from: None,
                to: None,
                after: None,
                limit: 1000,
            })
            .await
            .unwrap();
        page.records
            .iter()
            .filter(|r| r.local_day == day)
            .map(|r| r.reward.transaction_id.to_string())
            .collect()
    }
}

#[tokio::test]
async fn each_caller_sees_only_what_is_theirs() {
    let harness = start("infauth").await;
    seed_alice(&harness.ledger).await;
    let alice_rewards = "/v1/partners/TOKO/customers/081200000001/rewards";
    let alice_summary = "/v1/partners/TOKO/customers/081200000001/summary";
    let bob_rewards = "/v1/partners/TOKO/customers/081200000002/rewards";
    let report = "/v1/partners/TOKO/reports/daily?date=2026-05-01";
    let transaction = "/v1/partners/TOKO/transactions/a-00";

    // The partner itself: its customers, transactions and reports.
    for target in [alice_rewards, alice_summary, report, transaction] {
        assert_eq!(harness.as_partner("TOKO", target).await.0, 200, "{target}");
    }
    // Another partner, correctly signed: none of TOKO's data.
    for target in [alice_rewards, alice_summary, report, transaction] {
        assert_eq!(harness.as_partner("WARUNG", target).await.0, 403, "{target}");
    }
    // A customer: their own rewards, summary and transactions, nothing else.
    let alice = customer_token("TOKO", "081200000001", JWT_SECRET, 600);
    for target in [alice_rewards, alice_summary, transaction] {
        assert_eq!(harness.with_bearer(&alice, target).await.0, 200, "{target}");
    }
    assert_eq!(harness.with_bearer(&alice, bob_rewards).await.0, 403);
    assert_eq!(harness.with_bearer(&alice, report).await.0, 403);
    assert_eq!(
        harness.with_bearer(&alice, "/v1/partners/WARUNG/customers/081200000001/rewards").await.0,
        403,
        "the same number at another partner is another customer"
    );
    let bob = customer_token("TOKO", BOB, JWT_SECRET, 600);
    let (status, _) = harness.with_bearer(&bob, transaction).await;
    assert_eq!(status, 404, "another customer's transaction is as good as absent");
    // An admin: everything.
    for target in [alice_rewards, alice_summary, report, transaction, bob_rewards] {
        assert_eq!(harness.with_bearer(ADMIN, target).await.0, 200, "{target}");
    }

    // Refused callers get a 401 that says why.
    let forged = customer_token("TOKO", "081200000001", b"someone else's key", 600);
    let expired = customer_token("TOKO", "081200000001", JWT_SECRET, -3600);
    for (token, reason) in [
        (forged.as_str(), "InvalidSignature"),
        (expired.as_str(), "ExpiredSignature"),
        ("nonsense", "not valid"),
    ] {
        let (status, body) = harness.with_bearer(token, alice_rewards).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(reason), "{body}");
    }
    let unauthenticated = harness.get(alice_rewards, vec![]).await;
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    let (status, body) = json_of(unauthenticated).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("bearer token"), "{body}");
    let mut stale = harness.partner_headers("TOKO", alice_rewards);
    stale[3].1 = "00".repeat(32);
    let (status, body) = json_of(harness.get(alice_rewards, stale).await).await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (401, "the signature does not match the request")
    );
    // The same signed read twice in one second is fine (reads are not replay-guarded).
    let headers = harness.partner_headers("TOKO", alice_rewards);
    assert_eq!(harness.get(alice_rewards, headers.clone()).await.status(), 200);
    assert_eq!(harness.get(alice_rewards, headers).await.status(), 200);

    let metrics = harness
        .http
        .get(format!("{}/metrics", harness.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cezbek_informer_auth_failures_total{reason=\"bad_token\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cezbek_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/partners/{partner}/customers/{msisdn}/rewards\",status=\"403\"}"),
        "latency per route: {metrics}"
    );
}

#[tokio::test]
async fn a_transaction_explains_its_decision() {
    let harness = start("inftx").await;
    let at = Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap();
    let mut decided = purchase("why-1", ALICE, at, 250_000, 3_000);
    decided.campaigns =
        vec![("base", CampaignKind::Base, 2_500), ("kopi", CampaignKind::Bonus, 500)];
    decided.tier = Some("GOLD");
    seed(&harness.ledger, ALICE, vec![record(decided)]).await;

    let (status, body) = harness.as_partner("TOKO", "/v1/partners/TOKO/transactions/why-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cashback"], 3_000);
    assert_eq!(body["outcome"], "REWARDED");
    assert_eq!(body["rules_revision"], 41);
    assert_eq!(body["explanation"], "decided why-1");
    assert_eq!(body["tier_after"], "GOLD");
    assert_eq!(body["occurred_at"], "2026-05-01T03:00:00Z");
    assert_eq!(body["local_day"], "2026-05-01");
    assert_eq!(body["mcc"], 5814);
    assert_eq!(
        body["campaigns"],
        json!([
            {"campaign_id": "base", "kind": "BASE", "amount": 2500},
            {"campaign_id": "kopi", "kind": "BONUS", "amount": 500}
        ])
    );
    let (status, _) = harness.as_partner("TOKO", "/v1/partners/TOKO/transactions/nope").await;
    assert_eq!(status, 404);
    let (status, body) =
        harness.as_partner("TOKO", "/v1/partners/TOKO/transactions/%20padded").await;
    assert_eq!((status, field_errors(&body)), (400, vec!["transaction_id".to_owned()]));
    let (status, _) =
        harness.with_bearer(ADMIN, "/v1/partners/NOSUCH/customers/081200000001/rewards").await;
    assert_eq!(status, 404, "an unknown partner");
}

#[tokio::test]
async fn the_summary_shows_tier_progress_and_cashback() {
    let harness = start("infsummary").await;
    let now = Utc::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    let mut refund = purchase("a-4", ALICE, hours(24), 50_000, -100);
    refund.kind = TransactionKind::Refund;
    refund.campaigns = vec![];
    let records = vec![
        record(purchase("a-1", ALICE, hours(1), 100_000, 300)),
        record(purchase("a-2", ALICE, hours(48), 200_000, 200)),
        record(purchase("a-3", ALICE, hours(40 * 24), 900_000, 1_000)),
        record(refund),
    ];
    // The window is rebuilt from these: a-1 and a-2 are inside the 30 days, a-2 half refunded.
    seed(&harness.ledger, ALICE, records).await;

    let token = customer_token("TOKO", ALICE, JWT_SECRET, 600);
    let (status, body) =
        harness.with_bearer(&token, "/v1/partners/TOKO/customers/081200000001/summary").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "SILVER");
    assert_eq!(
        body["next_tier"],
        json!({"name": "GOLD", "purchases_needed": 3, "spend_needed": 750_000})
    );
    assert_eq!(body["window"], json!({"days": 30, "purchases": 2, "spend": 250_000}));
    assert_eq!(body["cashback_last_30_days"], 300 + 200 - 100);
    assert_eq!(body["cashback_lifetime"], 300 + 200 + 1_000 - 100);
    assert_eq!(
        (body["transactions"].as_u64(), body["purchases"].as_u64(), body["refunds"].as_u64()),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(body["rewarded_purchases"], 3);
    assert_eq!(body["currency"], "IDR");
    assert_eq!(body["opted_out_of_digests"], false);

    // A customer with nothing yet: zeros, the lowest tier still ahead.
    let (status, body) =
        harness.with_bearer(ADMIN, "/v1/partners/TOKO/customers/081200000009/summary").await;
    assert_eq!(status, 200);
    assert_eq!((body["tier"].clone(), body["cashback_lifetime"].clone()), (Value::Null, json!(0)));
    assert_eq!(body["next_tier"]["name"], "SILVER");

    // Payouts: the payouts service never ran against this store, so nothing is owed or paid
    // yet (tests/payouts.rs reads real balances through the informer); the parameters are
    // checked all the same, and a customer reads only their own.
    let target = "/v1/partners/TOKO/customers/081200000001/payouts";
    let (status, body) = harness.with_bearer(&token, target).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"partner": "TOKO", "msisdn": "+6281200000001", "balances": [], "payouts": [], "next_before": null})
    );
    let (status, body) =
        harness.with_bearer(&token, &format!("{target}?limit=0&before=today&x=1")).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["x", "before", "limit"]);
    let (status, _) =
        harness.with_bearer(&token, "/v1/partners/TOKO/customers/081200000009/payouts").await;
    assert_eq!(status, 403, "another customer's payouts");
}

#[tokio::test]
async fn the_daily_report_adds_up_by_campaign_and_tier() {
    let harness = start("infreport").await;
    // 2026-05-01 in Jakarta (UTC+7) runs from 2026-04-30T17:00Z to 2026-05-01T17:00Z.
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0).unwrap();
    let mut gold = purchase("c-2", CAROL, at(2, 0), 300_000, 4_500);
    gold.campaigns =
        vec![("base", CampaignKind::Base, 3_000), ("kopi", CampaignKind::Bonus, 1_500)];
    gold.tier = Some("GOLD");
    let mut refund = purchase("c-3", CAROL, at(5, 0), 100_000, -1_000);
    refund.kind = TransactionKind::Refund;
    refund.campaigns = vec![];
    refund.tier = Some("GOLD");
    let mut no_tier = purchase("c-4", CAROL, at(6, 0), 20_000, 0);
    no_tier.tier = None;
    let mut excluded = record(no_tier);
    excluded.reward.outcome = RewardOutcome::Excluded;
    let next_day = purchase("c-5", CAROL, at(18, 0), 999_000, 9_990);
    let previous_day =
        purchase("c-0", CAROL, Utc.with_ymd_and_hms(2026, 4, 30, 16, 59, 0).unwrap(), 5, 5);
    let records = vec![
        record(purchase("c-1", CAROL, at(1, 0), 100_000, 1_000)),
        record(gold),
        record(refund),
        excluded,
        record(next_day),
        record(previous_day),
    ];
    seed(&harness.ledger, CAROL, records).await;

    let (status, body) =
        harness.as_partner("TOKO", "/v1/partners/TOKO/reports/daily?date=2026-05-01").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["currency"], "IDR");
    assert_eq!(
        body["totals"],
        json!({"transactions": 4, "purchases": 3, "refunds": 1, "purchase_amount": 420_000,
               "refund_amount": 100_000, "cashback": 5_500, "clawback": 1_000, "excluded": 1})
    );
    assert_eq!(
        body["by_campaign"],
        json!([
            {"campaign_id": "base", "kind": "BASE", "transactions": 2, "cashback": 4_000},
            {"campaign_id": "kopi", "kind": "BONUS", "transactions": 1, "cashback": 1_500}
        ])
    );
    let tiers: Vec<(&str, u64)> = body["by_tier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tier"].as_str().unwrap(), t["transactions"].as_u64().unwrap()))
        .collect();
    assert_eq!(tiers, vec![("GOLD", 2), ("NONE", 1), ("SILVER", 1)]);

    // Each day's totals, summed by the ledger: the same as the day's report, every day of the
    // range present (zeros where nothing was decided).
    let daily_totals = body["totals"].clone();
    let (status, days) = harness
        .as_partner("TOKO", "/v1/partners/TOKO/reports/days?from=2026-04-29&to=2026-05-02")
        .await;
    assert_eq!(status, 200, "{days}");
    let dates: Vec<&str> =
        days["days"].as_array().unwrap().iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-04-29", "2026-04-30", "2026-05-01", "2026-05-02"]);
    assert_eq!(days["days"][2]["totals"], daily_totals);
    assert_eq!(days["days"][0]["totals"]["transactions"], 0);
    assert_eq!(days["days"][1]["totals"]["transactions"], 1, "{days}");
    assert_eq!(days["days"][3]["totals"]["cashback"], 9_990, "{days}");
    for (query, field) in [
        ("from=2026-05-02&to=2026-05-01", "to"),
        ("from=2026-01-01&to=2026-04-03", "to"),
        ("from=May&to=2026-05-01", "from"),
    ] {
        let path = format!("/v1/partners/TOKO/reports/days?{query}");
        let (status, body) = harness.as_partner("TOKO", &path).await;
        assert_eq!((status, field_errors(&body)), (400, vec![field.to_owned()]), "{query}");
    }

    let target = "/v1/partners/TOKO/reports/daily?date=2026-05-01&format=csv";
    let response = harness.get(target, harness.partner_headers("TOKO", target)).await;
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = response.text().await.unwrap();
    assert_eq!(
        csv,
        "partner,date,currency,group,name,transactions,purchases,refunds,purchase_amount,refund_amount,cashback,clawback,excluded\r\n\
         TOKO,2026-05-01,IDR,total,,4,3,1,420000,100000,5500,1000,1\r\n\
         TOKO,2026-05-01,IDR,campaign,base,2,,,,,4000,,\r\n\
         TOKO,2026-05-01,IDR,campaign,kopi,1,,,,,1500,,\r\n\
         TOKO,2026-05-01,IDR,tier,GOLD,2,1,1,300000,100000,4500,1000,0\r\n\
         TOKO,2026-05-01,IDR,tier,NONE,1,1,0,20000,0,0,0,1\r\n\
         TOKO,2026-05-01,IDR,tier,SILVER,1,1,0,100000,0,1000,0,0\r\n"
    );

    let (status, body) = harness
        .as_partner("TOKO", "/v1/partners/TOKO/reports/daily?date=01-05-2026&format=xml")
        .await;
    assert_eq!((status, field_errors(&body)), (400, vec!["date".to_owned(), "format".to_owned()]));
    let (status, body) = harness.as_partner("TOKO", "/v1/partners/TOKO/reports/daily").await;
    assert_eq!((status, field_errors(&body)), (400, vec!["date".to_owned()]));
}

#[tokio::test]
async fn an_unsubscribe_link_records_the_opt_out() {
    let harness = start("infunsub").await;
    seed_alice(&harness.ledger).await;
    let token = UnsubscribeKey::new(UNSUBSCRIBE_SECRET).token(&toko(), &msisdn(ALICE));

    // Opening the link only asks: link scanners must not unsubscribe anyone.
    let page = harness.get(&format!("/v1/unsubscribe?token={token}"), vec![]).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "{html}");
    let state = harness.ledger.customer_states(&toko(), &[msisdn(ALICE)]).await.unwrap();
    assert!(!state[0].opted_out);

    // The confirmation form posts the token.
    let confirmed = harness
        .http
        .post(format!("{}/v1/unsubscribe", harness.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let state = harness.ledger.customer_states(&toko(), &[msisdn(ALICE)]).await.unwrap();
    assert!(state[0].opted_out);
    let (_, summary) =
        harness.with_bearer(ADMIN, "/v1/partners/TOKO/customers/081200000001/summary").await;
    assert_eq!(summary["opted_out_of_digests"], true);

    // RFC 8058 one-click: the token in the URL, the body says List-Unsubscribe=One-Click.
    let bob_token = UnsubscribeKey::new(UNSUBSCRIBE_SECRET).token(&toko(), &msisdn(BOB));
    let one_click = harness
        .http
        .post(format!("{}/v1/unsubscribe?token={bob_token}", harness.base))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(one_click.status(), 200);
    let state = harness.ledger.customer_states(&toko(), &[msisdn(BOB)]).await.unwrap();
    assert!(state[0].opted_out, "an opt-out is kept even before the customer's first reward");

    let forged =
        UnsubscribeKey::new(b"another key entirely, 32+ bytes long").token(&toko(), &msisdn(CAROL));
    let refused = harness
        .http
        .post(format!("{}/v1/unsubscribe?token={forged}", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let state = harness.ledger.customer_states(&toko(), &[msisdn(CAROL)]).await.unwrap();
    assert!(state.is_empty() || !state[0].opted_out);

    let spec = harness.get("/openapi.json", vec![]).await.json::<Value>().await.unwrap();
    let history = &spec["paths"]["/v1/partners/{partner}/customers/{msisdn}/rewards"]["get"];
    assert!(history.is_object(), "{spec}");
    // Generated from the handler: the constraints the server enforces are stated.
    let partner = history["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "partner")
        .unwrap();
    assert_eq!(partner["schema"]["pattern"], "^[A-Z0-9_]{2,16}$", "{partner}");
    let reward = &spec["components"]["schemas"]["Reward"]["properties"];
    assert!(reward["explanation"].is_object() && reward["campaigns"].is_object(), "{reward}");
}

/// A partner whose identity provider publishes a JWK Set: its customers' tokens verify with the
/// set's keys, another partner's provider cannot speak for them (nor they for it), and a new
/// key (rotation) is picked up when a token names its key id, without any change in Cezbek.
#[tokio::test]
async fn customer_tokens_verify_with_their_partners_jwk_set_and_follow_its_rotation() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use std::sync::{Arc, Mutex};

    let harness = start("informerjwks").await;
    // The provider's keys, made by openssl, and the set it publishes (swapped on rotation).
    let key_pair = |name: &str| {
        let dir = std::env::temp_dir().join(format!("cezbek-jwks-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let status = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let private = EncodingKey::from_ec_pem(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut jwk = Jwk::from_encoding_key(&private, jsonwebtoken::Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(name.into());
        (private, jwk)
    };
    let (first, first_jwk) = key_pair("first");
    let (second, second_jwk) = key_pair("second");
    let published = Arc::new(Mutex::new(JwkSet { keys: vec![first_jwk] }));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let jwks_port = free_port();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get({
            let (published, fetches) = (Arc::clone(&published), Arc::clone(&fetches));
            move || {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = serde_json::to_string(&*published.lock().unwrap()).unwrap();
                async move { ([("content-type", "application/json")], body) }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", jwks_port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut etcd_client = etcd::connect(&harness.etcd).await.unwrap();
    let warung = json!({
        "code": "WARUNG", "name": "WARUNG Ltd", "status": "ACTIVE", "currency": "IDR",
        "time_zone": "Asia/Jakarta",
        "keys": [{"key_id": "k1", "secret": base64_secret(), "not_after": null}],
        "customer_tokens": {
            "algorithm": "ES256", "jwks_url": format!("http://127.0.0.1:{jwks_port}/jwks"),
            "issuer": "https://id.warung.example",
        },
    });
    etcd_client
        .put(format!("{}partners/WARUNG", harness.etcd.prefix), warung.to_string(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let es256 = |partner: &str, key: &EncodingKey, kid: &str| {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        let claims = json!({
            "partner": partner, "msisdn": "081200000001", "iss": "https://id.warung.example",
            "exp": Utc::now().timestamp() + 600,
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let warung_alice = "/v1/partners/WARUNG/customers/081200000001/rewards";
    let toko_alice = "/v1/partners/TOKO/customers/081200000001/rewards";
    assert_eq!(harness.with_bearer(&es256("WARUNG", &first, "first"), warung_alice).await.0, 200);
    // WARUNG's provider cannot speak for TOKO's customers, nor TOKO's for WARUNG's.
    let (status, body) = harness.with_bearer(&es256("TOKO", &first, "first"), toko_alice).await;
    assert_eq!(status, 401, "{body}");
    let toko_for_warung = customer_token("WARUNG", "081200000001", JWT_SECRET, 600);
    assert_eq!(harness.with_bearer(&toko_for_warung, warung_alice).await.0, 401);

    // Rotation: the provider publishes a second key and signs with it.
    published.lock().unwrap().keys.push(second_jwk);
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    // A set younger than the refetch pause is not fetched again for an unknown key id.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rotated = es256("WARUNG", &second, "second");
    let (status, body) = harness.with_bearer(&rotated, warung_alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), before + 1, "fetched once more");
    assert_eq!(harness.with_bearer(&es256("WARUNG", &first, "first"), warung_alice).await.0, 200);
    // A key id the provider never published is refused (and does not fetch at every request).
    let (status, _) = harness.with_bearer(&es256("WARUNG", &second, "made-up"), warung_alice).await;
    assert_eq!(status, 401);
    assert_eq!(
        harness.with_bearer(&es256("WARUNG", &second, "made-up"), warung_alice).await.0,
        401
    );
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn a_partner_reads_its_budgets_spent_remaining_and_rate() {
    use cezbek_ledger::budget::{BudgetKey, BudgetRequest, BudgetScope, BudgetSpend};

    let harness = start("inbudget").await;
    let mut client = etcd::connect(&harness.etcd).await.unwrap();
    let promo = json!({
        "id": "promo", "partner": "TOKO", "name": "Promo", "kind": "BONUS", "status": "ACTIVE",
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
        "conditions": {"currency": "IDR"}, "reward": {"fixed": 500}, "budget": 100000,
    });
    client
        .put(format!("{}campaigns/TOKO/promo", harness.etcd.prefix), promo.to_string(), None)
        .await
        .unwrap();
    // A shard is granted part of the budget and spends 4,000 of it with a decision.
    let lease = harness.ledger.claim("cezbek.transactions.v1/0").await.unwrap();
    let key = BudgetKey { partner: toko(), campaign_id: "promo".into(), scope: BudgetScope::Total };
    let request = BudgetRequest { key, budget: 100_000, revision: 1, wanted: 4_000 };
    harness.ledger.grant_budget(&lease, &request).await.unwrap();
    harness
        .ledger
        .apply(&[CustomerBatch {
            partner: toko(),
            msisdn: msisdn(ALICE),
            lease,
            records: vec![record(purchase("p-1", ALICE, Utc::now(), 80_000, 4_000))],
            state: None,
            budget_spends: vec![BudgetSpend {
                campaign_id: "promo".into(),
                scope: BudgetScope::Total,
                amount: 4_000,
            }],
        }])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let budgets = loop {
        let (status, body) = harness.as_partner("TOKO", "/v1/partners/TOKO/budgets").await;
        assert_eq!(status, 200, "{body}");
        if !body["items"].as_array().unwrap().is_empty() {
            break body;
        }
        assert!(Instant::now() < deadline, "the campaign never showed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let promo = &budgets["items"][0];
    assert_eq!(promo["campaign_id"], "promo");
    assert_eq!((promo["budget"].as_i64(), promo["spent"].as_i64()), (Some(100_000), Some(4_000)));
    assert_eq!(promo["remaining"], 96_000);
    assert_eq!(promo["spent_last_hour"], 4_000);
    assert!(promo["projected_exhaustion"].is_string());
    assert!(promo["budget_per_day"].is_null() && promo["remaining_today"].is_null());
    // Another partner may not read them.
    let (status, _) = harness.as_partner("WARUNG", "/v1/partners/TOKO/budgets").await;
    assert_eq!(status, 403);
}
