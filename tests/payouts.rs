//! `cezbek payouts` against the real stack (Kafka-API broker, etcd, PostgreSQL) and the
//! Xendit-style provider simulators, which keep their own record of the money they moved: the
//! truth each test compares the journal with. Rewards go in through the topic, as the rewarder
//! writes them; the processes are SIGKILLed and restarted; faults are scripted per customer.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use cezbek_payouts::{Account, Journal, Limits, Reservation};
use cezbek_paysim::{
    Api, Ending, Fault, Faults, FeeRule, IrisKeys, RandomFaults, SimConfig, Simulator, SnapKeys,
    XenditKeys,
};
use cezbek_platform::auth::sha256;
use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::{CancellationToken, etcd, kafka};
use cezbek_rules::{FeeBearer, Partner, PayoutPolicy, Rule};
use cezbek_schemas::codec::{decode, encode};
use cezbek_schemas::{Msisdn, Reward, RewardOutcome, TransactionId, TransactionKind};
use cezbek_testkit::fixtures::{customer, idr, partner, purchase, toko};
use cezbek_testkit::{Running, TestContext, free_port, service_env};

/// Rp 1 in minor units.
const RP: i64 = 100;

fn policy() -> PayoutPolicy {
    PayoutPolicy {
        hold_days: 7,
        minimum: 10_000 * RP,
        maximum_per_day: 500_000 * RP,
        pay_at: "00:00".into(),
        fee_bearer: FeeBearer::Partner,
        default_wallet: Some("OVO".into()),
    }
}

fn msisdn(n: u32) -> Msisdn {
    customer("857", n)
}

/// A simulated provider of a test: its name, API (`xendit`, `iris`, `snap`), flat fee in
/// whole rupiah, and wallets.
struct SimSpec {
    name: &'static str,
    api: &'static str,
    fee: i64,
    wallets: &'static [&'static str],
}

/// The credential of `role` a test gives the simulator `name` and the service alike.
fn credential(name: &str, role: &str) -> String {
    format!("{name}-{role}-test-value")
}

/// The partner's RSA key for SNAP simulators, made once per test process by openssl: (the
/// private key as PEM, the public key as PKCS#1 DER).
fn snap_key() -> (String, Vec<u8>) {
    use base64::Engine;
    use ring::signature::KeyPair;
    static KEY: std::sync::OnceLock<(String, Vec<u8>)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let made = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(made.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(made.stdout).unwrap();
        let der: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        (pem, key.public_key().as_ref().to_vec())
    })
    .clone()
}

struct Setup {
    context: TestContext,
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    postgres: PostgresConfig,
    pool: PgPool,
    journal: Journal,
    sims: BTreeMap<&'static str, Simulator>,
    /// Every credential variable the service is given: (name, value).
    credentials: Vec<(String, String)>,
    /// Where callbacks go: the first process's API.
    api_port: u16,
    http: reqwest::Client,
    stop_sims: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop_sims.cancel();
    }
}

impl Setup {
    async fn new(name: &str, sims: &[SimSpec]) -> Self {
        let context = TestContext::new(name);
        let kafka = context.kafka_config();
        context.create_topics(&kafka, 4).await;
        let etcd_config = context.etcd_config();
        let mut client = etcd::connect(&etcd_config).await.unwrap();
        let toko = Rule::Partner(Partner { payout_policy: Some(policy()), ..partner() });
        client.put(toko.key().path(&etcd_config.prefix), toko.to_json(), None).await.unwrap();
        let postgres = context.postgres_config().await;
        let pool = cezbek_platform::postgres::connect(&postgres).await.unwrap();
        let journal = Journal::new(pool.clone());
        journal.migrate().await.unwrap();

        let api_port = free_port();
        let stop_sims = CancellationToken::new();
        let mut started = BTreeMap::new();
        let mut specs = Vec::new();
        let mut credentials = Vec::new();
        for sim in sims {
            let mut config = SimConfig::local();
            config.callback_url =
                Some(format!("http://127.0.0.1:{api_port}/v1/callbacks/{}", sim.name));
            config.fee = FeeRule { fixed: sim.fee, basis_points: 0, vat_basis_points: 1_100 };
            let value = |role: &str| credential(sim.name, role);
            let (api, roles): (Api, Vec<(&str, String)>) = match sim.api {
                "xendit" => (
                    Api::Xendit(XenditKeys {
                        secret_key: value("secret_key"),
                        callback_token: value("callback_token"),
                    }),
                    ["secret_key", "callback_token"].map(|role| (role, value(role))).to_vec(),
                ),
                "iris" => (
                    Api::Iris(IrisKeys {
                        creator_key: value("creator_key"),
                        approver_key: value("approver_key"),
                        merchant_key: value("merchant_key"),
                    }),
                    ["creator_key", "approver_key", "merchant_key"]
                        .map(|role| (role, value(role)))
                        .to_vec(),
                ),
                _ => {
                    let (pem, public_key_der) = snap_key();
                    let keys = SnapKeys {
                        client_key: value("client_key"),
                        client_secret: value("client_secret"),
                        public_key_der,
                    };
                    let roles = vec![
                        ("client_key", value("client_key")),
                        ("client_secret", value("client_secret")),
                        ("private_key", pem),
                    ];
                    (Api::Snap(keys), roles)
                }
            };
            let mut references = serde_json::Map::new();
            for (role, secret) in roles {
                let variable = format!("TEST_{}_{}", sim.name.to_uppercase(), role.to_uppercase());
                references.insert(role.to_owned(), json!(variable));
                credentials.push((variable, secret));
            }
            let running = Simulator::start(config, api, stop_sims.clone()).await.unwrap();
            let channels: serde_json::Map<String, Value> = sim
                .wallets
                .iter()
                .map(|wallet| {
                    let terms = json!({
                        "fee": {"fixed": sim.fee * RP, "vat_basis_points": 1_100},
                        "min_amount": 10_000 * RP,
                        "max_amount": 2_000_000 * RP,
                    });
                    ((*wallet).to_owned(), terms)
                })
                .collect();
            specs.push(json!({
                "name": sim.name,
                "adapter": sim.api,
                "base_url": running.url,
                "credentials": references,
                "channels": channels,
                "timeout_ms": 1_000,
            }));
            started.insert(sim.name, running);
        }
        // The providers as campaignex publishes them: live in etcd, credentials by name.
        for spec in specs {
            let provider = Rule::Provider(serde_json::from_value(spec).unwrap());
            assert_eq!(provider.validate(), Ok(()));
            client
                .put(provider.key().path(&etcd_config.prefix), provider.to_json(), None)
                .await
                .unwrap();
        }
        Self {
            context,
            kafka,
            etcd: etcd_config,
            postgres,
            pool,
            journal,
            sims: started,
            credentials,
            api_port,
            http: reqwest::Client::new(),
            stop_sims,
        }
    }

    /// A `cezbek payouts` process serving callbacks on `api_port`.
    fn spawn(&self, label: &str, api_port: u16) -> Running {
        let mut vars = service_env(Some(&self.kafka), &self.etcd, None, &self.postgres);
        vars.extend([
            ("CEZBEK_PAYOUTS_LISTEN", format!("127.0.0.1:{api_port}")),
            ("CEZBEK_PAYOUTS_OPS_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("CEZBEK_PAYOUTS_OWNER", label.to_owned()),
            // A group of this test's: the members other tests killed are not waited for.
            ("CEZBEK_PAYOUTS_GROUP", format!("payouts-{}", self.context.id)),
            ("CEZBEK_PAYOUTS_DLQ_TOPIC", self.kafka.dead_letter_topic.clone()),
            ("CEZBEK_PAYOUTS_TICK", "50ms".to_owned()),
            ("CEZBEK_PAYOUTS_SCAN_EVERY", "200ms".to_owned()),
            ("CEZBEK_PAYOUTS_POLL_EVERY", "300ms".to_owned()),
            ("CEZBEK_PAYOUTS_RETRY_AFTER", "200ms".to_owned()),
            ("CEZBEK_PAYOUTS_LEASE", "3s".to_owned()),
            ("CEZBEK_LOG", "info".to_owned()),
            ("CEZBEK_ADMIN_TOKENS", format!("tester:admin:{}", hex(&sha256(ADMIN.as_bytes())))),
        ]);
        for (variable, value) in &self.credentials {
            vars.push((leak(variable.clone()), value.clone()));
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(vars.iter().map(|(name, value)| (*name, value.as_str())));
        let log = self
            .context
            .stack
            .root
            .join(format!("var/log/test-payouts-{}-{label}.log", self.context.id));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        command.stderr(log).stdout(Stdio::null()).arg("payouts");
        Running(command.spawn().unwrap())
    }

    async fn publish_rewards(&self, rewards: &[Reward]) {
        let producer = kafka::producer(&self.kafka).unwrap();
        let mut sends = Vec::new();
        for reward in rewards {
            let key = reward.key();
            let payload = encode(reward).unwrap();
            let record = FutureRecord::to(&self.kafka.rewards_topic).key(&key).payload(&payload);
            sends.push(producer.send_result(record).map_err(|(error, _)| error).unwrap());
        }
        for send in sends {
            send.await.unwrap().map_err(|(error, _)| error).unwrap();
        }
    }

    /// A purchase of each customer naming their wallet, on the transactions topic.
    async fn publish_wallets(&self, wallets: &[(Msisdn, &str)]) {
        let producer = kafka::producer(&self.kafka).unwrap();
        let mut sends = Vec::new();
        for (who, wallet) in wallets {
            let mut transaction = purchase(&format!("w-{}", who.as_str()), 10_000 * RP, ago(1));
            transaction.msisdn = who.clone();
            transaction.wallet = Some((*wallet).to_owned());
            let key = transaction.key();
            let payload = encode(&transaction).unwrap();
            let record =
                FutureRecord::to(&self.kafka.transactions_topic).key(&key).payload(&payload);
            sends.push(producer.send_result(record).map_err(|(error, _)| error).unwrap());
        }
        for send in sends {
            send.await.unwrap().map_err(|(error, _)| error).unwrap();
        }
    }

    /// Waits until the service recorded `count` customers' wallets: rewards published after
    /// that are paid to the wallets named, not the partner's default.
    async fn wait_destinations(&self, count: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let known: i64 = sqlx::query("SELECT count(*) AS known FROM payout_destinations")
                .fetch_one(&self.pool)
                .await
                .unwrap()
                .get("known");
            if known >= count {
                return;
            }
            assert!(Instant::now() < deadline, "{known} of {count} wallets recorded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every payout: id → (state, amount, provider).
    async fn payouts(&self) -> HashMap<String, (String, i64, Option<String>)> {
        let rows = sqlx::query("SELECT id, state, amount, provider FROM payouts")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.get::<String, _>("id"),
                    (row.get("state"), row.get("amount"), row.get("provider")),
                )
            })
            .collect()
    }

    /// Whether fewer than `count` payouts exist or some is unfinished.
    async fn unfinished_or_missing(&self, count: usize) -> bool {
        let payouts = self.payouts().await;
        let open =
            payouts.values().filter(|(state, ..)| state == "RESERVED" || state == "SUBMITTED");
        payouts.len() < count || open.count() > 0
    }

    /// Waits until `count` payouts exist and none is unfinished.
    async fn wait_settled(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let payouts = self.payouts().await;
            let open = payouts
                .values()
                .filter(|(state, ..)| state == "RESERVED" || state == "SUBMITTED")
                .count();
            if payouts.len() >= count && open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} payouts, {open} unfinished, after {within:?}",
                payouts.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until one payout is in `state`; fails with the state it is in after `within`.
    async fn wait_state(&self, id: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.payouts().await.get(id).map(|(state, ..)| state.clone());
            if now.as_deref() == Some(state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "payout {id} is {now:?}, not {state}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn payable(&self, who: &Msisdn) -> i64 {
        let account = Account::CustomerPayable { partner: toko(), msisdn: who.clone() };
        self.journal.balance(&account, idr()).await.unwrap()
    }

    /// The simulators' executions agree with the journal: every payout executed at most once
    /// over all providers, a succeeded one exactly once and for what its paying attempt sent
    /// (the payout's amount, less the fee when the customer bears it), a reversed one executed
    /// and reversed; and the journal balances.
    async fn assert_exactly_once(&self) {
        let payouts = self.payouts().await;
        let sent_by: HashMap<String, i64> = sqlx::query(
            "SELECT payout_id, amount FROM payout_attempts WHERE state IN ('SUCCEEDED', 'REVERSED')",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("payout_id"), row.get("amount")))
        .collect();
        let mut executed: HashMap<String, Vec<(&str, i64, bool)>> = HashMap::new();
        for (name, sim) in &self.sims {
            for run in sim.executed() {
                let payout = run.reference.rsplit_once('#').unwrap().0.to_owned();
                executed.entry(payout).or_default().push((name, run.amount * RP, run.reversed));
            }
        }
        for (id, runs) in &executed {
            assert_eq!(runs.len(), 1, "payout {id} executed {runs:?}");
            assert!(payouts.contains_key(id), "executed {id} unknown to the journal");
        }
        let mut paid_total = 0;
        for (id, (state, amount, provider)) in &payouts {
            let runs = executed.get(id).cloned().unwrap_or_default();
            match state.as_str() {
                "SUCCEEDED" => {
                    assert_eq!(runs.len(), 1, "{id} succeeded without one execution");
                    let (at, sent, reversed) = runs[0];
                    let attempt = sent_by[id];
                    assert!(attempt <= *amount, "{id} sent {attempt}, more than its {amount}");
                    assert_eq!((Some(at), sent, reversed), (provider.as_deref(), attempt, false));
                    paid_total += attempt;
                }
                "REVERSED" => assert!(runs.len() == 1 && runs[0].2, "{id}: {runs:?}"),
                "FAILED" => assert!(runs.is_empty(), "{id} failed yet executed: {runs:?}"),
                other => panic!("{id} is still {other}"),
            }
        }
        let sent: i64 = executed.values().flatten().filter(|run| !run.2).map(|run| run.1).sum();
        assert_eq!(sent, paid_total, "the simulators' sum equals the journal's");
        assert!(self.journal.verify().await.unwrap().is_empty(), "the journal balances");
    }

    /// An admin read of the first process's API, as JSON (or the CSV text as a JSON string).
    async fn admin_get(&self, path_and_query: &str) -> Value {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}{path_and_query}", self.api_port))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path_and_query}");
        let csv = response.headers()["content-type"].to_str().unwrap().starts_with("text/csv");
        let text = response.text().await.unwrap();
        if csv { Value::String(text) } else { serde_json::from_str(&text).unwrap() }
    }

    /// The `Payout` events on this test's topic, by payout id, in order.
    async fn events(
        &self,
        want: impl Fn(&HashMap<String, Vec<String>>) -> bool,
    ) -> HashMap<String, Vec<String>> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Message;
        let group = format!("test-events-{}", self.context.id);
        let consumer: StreamConsumer = kafka::consumer(&self.kafka, &group).unwrap();
        // Read directly from each partition's start: no group to join.
        let mut partitions = rdkafka::TopicPartitionList::new();
        for partition in 0..4 {
            partitions
                .add_partition_offset(
                    &self.kafka.payouts_topic,
                    partition,
                    rdkafka::Offset::Beginning,
                )
                .unwrap();
        }
        consumer.assign(&partitions).unwrap();
        let mut states: HashMap<String, Vec<String>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !want(&states) {
            assert!(Instant::now() < deadline, "events so far: {states:?}");
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
            else {
                continue;
            };
            let event: cezbek_schemas::Payout = decode(message.payload().unwrap()).unwrap();
            assert_eq!(message.key(), Some(event.key().as_bytes()), "keyed per customer");
            let state = serde_json::to_value(event.state).unwrap().as_str().unwrap().to_owned();
            let seen = states.entry(event.payout_id).or_default();
            // At least once: a repeated state is a redelivery.
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
        states
    }

    /// The first `count` dead letters: (payload, reason).
    async fn dead_letters(&self, count: usize) -> Vec<(Vec<u8>, String)> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::{Headers, Message};
        let group = format!("test-dlq-{}", self.context.id);
        let consumer: StreamConsumer = kafka::consumer(&self.kafka, &group).unwrap();
        let mut partitions = rdkafka::TopicPartitionList::new();
        partitions
            .add_partition_offset(&self.kafka.dead_letter_topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&partitions).unwrap();
        let mut letters = Vec::new();
        while letters.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("a dead letter within 30 s")
                .unwrap();
            let headers = message.headers().unwrap();
            let reason = headers
                .iter()
                .find(|header| header.key == "cezbek-reason")
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default();
            letters.push((message.payload().unwrap().to_vec(), reason));
        }
        letters
    }

    /// An informer over this test's store and rules, with the admin token; its address.
    async fn informer(&self) -> String {
        use cezbek_ledger::LedgerChoice;
        use cezbek_platform::auth::{AdminTokens, Role};
        use cezbek_platform::config::HttpConfig;
        let (port, ops_port) = (free_port(), free_port());
        let config = cezbek_informer::Config {
            http: HttpConfig::api(
                format!("127.0.0.1:{port}").parse().unwrap(),
                format!("127.0.0.1:{ops_port}").parse().unwrap(),
            ),
            postgres: self.postgres.clone(),
            etcd: self.etcd.clone(),
            ledger: LedgerChoice::Postgres,
            tokens: AdminTokens::default().with_token("ops", Role::Viewer, ADMIN),
            unsubscribe: cezbek_platform::unsubscribe::UnsubscribeKey::new(b"unsubscribe-secret"),
            cursor_secret: Some("cursor-secret".into()),
        };
        tokio::spawn(cezbek_informer::run(config, self.stop_sims.clone()));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .http
            .get(format!("http://127.0.0.1:{ops_port}/readyz"))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "the informer did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        base
    }

    /// Posts a callback to the first process's API with one header.
    async fn callback(&self, provider: &str, header: (&str, &str), body: &Value) -> u16 {
        self.http
            .post(format!("http://127.0.0.1:{}/v1/callbacks/{provider}", self.api_port))
            .header(header.0, header.1)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

const ADMIN: &str = "payouts-test-admin-token";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Variable names are built per test; the process table wants `&'static str`.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

fn ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days) - chrono::Duration::hours(1)
}

/// A rewarded purchase (`cashback` > 0) or a clawback (< 0) of `who`, `days` ago.
fn reward(who: &Msisdn, id: &str, cashback: i64, days: i64) -> Reward {
    let clawback = cashback < 0;
    Reward {
        partner: toko(),
        transaction_id: TransactionId::parse(id).unwrap(),
        kind: if clawback { TransactionKind::Refund } else { TransactionKind::Purchase },
        original_transaction_id: None,
        msisdn: who.clone(),
        amount: 1_000_000 * RP,
        currency: idr(),
        merchant: None,
        outcome: if clawback { RewardOutcome::Clawback } else { RewardOutcome::Rewarded },
        cashback,
        tier_before: None,
        tier_after: None,
        applied_campaigns: Vec::new(),
        exclusion_id: None,
        rules_revision: 1,
        explanation: "test".into(),
        occurred_at: ago(days),
        decided_at: ago(days),
    }
}

fn today_id(who: &Msisdn) -> String {
    let day = Utc::now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive();
    cezbek_payouts::payout_id(&toko(), who, day)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_faults_limits_and_callbacks_each_behave_and_money_moves_once() {
    let setup = Setup::new(
        "payoutsrouting",
        &[
            SimSpec { name: "cheap", api: "xendit", fee: 1_500, wallets: &["OVO"] },
            SimSpec { name: "dear", api: "xendit", fee: 2_500, wallets: &["OVO", "DANA"] },
        ],
    )
    .await;
    let c = |n: u32| msisdn(n);
    let fault = |n: u32, fault: Fault| (c(n).as_str().to_owned(), fault);
    let code = |code: &str| Fault::Fail { code: code.into() };
    setup.sims["cheap"].set_faults(Faults {
        by_account: HashMap::from([
            fault(2, code("RECIPIENT_ACCOUNT_NUMBER_ERROR")),
            fault(3, Fault::ServerError { times: 3 }),
            fault(4, Fault::AcceptThenNoAnswer { times: 1, delay_ms: 0 }),
            fault(5, Fault::PendingFor { ms: 1_500, then: Ending::Succeeded }),
            fault(6, code("MAXIMUM_TRANSFER_LIMIT_ERROR")),
            fault(7, Fault::ReverseAfter { after_ms: 500 }),
            fault(8, Fault::DuplicateCallbacks),
            fault(9, Fault::OutOfOrderCallbacks),
        ]),
        ..Faults::default()
    });
    setup.sims["dear"].set_faults(Faults {
        by_account: HashMap::from([fault(6, code("DESTINATION_MAINTENANCE"))]),
        ..Faults::default()
    });
    let mut rewards: Vec<Reward> =
        (1..=11).map(|n| reward(&c(n), &format!("r-{n}"), 20_000 * RP, 10)).collect();
    rewards.extend([
        reward(&c(12), "r-12", 20_000 * RP, 2),       // still held
        reward(&c(13), "r-13", 5_000 * RP, 10),       // below the minimum
        reward(&c(14), "r-14", 700_000 * RP, 10),     // above the daily maximum
        reward(&c(15), "r-15", 20_000 * RP + 50, 10), // not whole rupiah
        reward(&c(16), "r-16", 20_000 * RP, 10),      // paid, then clawed back
    ]);
    setup.publish_wallets(&[(c(11), "dana")]).await;
    let _first = setup.spawn("routing-a", setup.api_port);
    let _second = setup.spawn("routing-b", free_port());
    setup.wait_destinations(1).await;
    // Poison among the rewards: dead-lettered with its reason, nothing valid held back.
    let producer = kafka::producer(&setup.kafka).unwrap();
    let poison = FutureRecord::to(&setup.kafka.rewards_topic).key("TOKO:+62").payload("not avro");
    producer.send(poison, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
    setup.publish_rewards(&rewards).await;
    setup.wait_settled(14, Duration::from_secs(90)).await;
    // Late callbacks (reversals) settle too: a reversal comes 500 ms after its success, and on
    // a loaded machine its callback may take longer than any fixed sleep.
    for n in [7, 9] {
        setup.wait_state(&today_id(&c(n)), "REVERSED", Duration::from_secs(30)).await;
    }

    let payouts = setup.payouts().await;
    let of = |n: u32| payouts.get(&today_id(&c(n))).cloned();
    let at = |n: u32| of(n).map(|(state, _, provider)| (state, provider.unwrap_or_default()));
    let succeeded = |provider: &str| Some(("SUCCEEDED".to_owned(), provider.to_owned()));
    assert_eq!(at(1), succeeded("cheap"), "the cheapest eligible provider");
    assert_eq!(at(2), succeeded("dear"), "after a definitive failure, the next cheapest");
    assert_eq!(at(3), succeeded("cheap"), "5xx is unknown: no failover, asked again");
    assert_eq!(at(4), succeeded("cheap"), "accepted without an answer: found, not re-sent");
    assert_eq!(at(5), succeeded("cheap"), "pending, then success");
    assert_eq!(at(6).unwrap().0, "FAILED", "every provider failed it for certain");
    assert_eq!(at(7).unwrap().0, "REVERSED", "a late reversal");
    assert_eq!(at(8), succeeded("cheap"), "duplicate callbacks");
    assert_eq!(at(9).unwrap().0, "REVERSED", "the reversal's callback came first");
    assert_eq!(at(11), succeeded("dear"), "DANA, named by a transaction, only at dear");
    assert_eq!(of(12), None, "held for 7 days");
    assert_eq!(of(13), None, "below the minimum");
    assert_eq!(of(14).unwrap().1, 500_000 * RP, "the daily maximum");
    assert_eq!(of(15).unwrap().1, 20_000 * RP, "whole rupiah");
    setup.assert_exactly_once().await;

    // Balances: restored where nothing was paid, the rest kept.
    assert_eq!(setup.payable(&c(6)).await, 20_000 * RP);
    assert_eq!(setup.payable(&c(7)).await, 20_000 * RP);
    assert_eq!(setup.payable(&c(9)).await, 20_000 * RP);
    assert_eq!(setup.payable(&c(1)).await, 0);
    assert_eq!(setup.payable(&c(14)).await, 200_000 * RP);
    assert_eq!(setup.payable(&c(15)).await, 50);
    assert_eq!(setup.payable(&c(12)).await, 0);
    let held = Account::CustomerHeld { partner: toko(), msisdn: c(12) };
    assert_eq!(setup.journal.balance(&held, idr()).await.unwrap(), 20_000 * RP);

    let dead = setup.dead_letters(1).await;
    assert_eq!(dead[0].0, b"not avro");
    assert_eq!(dead[0].1, "unreadable_reward");

    // The route is recorded with the fee it was chosen over.
    let chosen_over: Value =
        sqlx::query("SELECT chosen_over FROM payout_attempts WHERE payout_id = $1 AND attempt = 1")
            .bind(today_id(&c(1)))
            .fetch_one(&setup.pool)
            .await
            .unwrap()
            .get("chosen_over");
    assert_eq!(chosen_over, json!([{"provider": "dear", "fee": 277_500}]));
    let fee: i64 = sqlx::query("SELECT fee FROM payouts WHERE id = $1")
        .bind(today_id(&c(1)))
        .fetch_one(&setup.pool)
        .await
        .unwrap()
        .get("fee");
    assert_eq!(fee, 166_500, "Rp 1,500 and 11 % VAT");

    // Callbacks: a forged one is refused, a replayed one changes nothing.
    let paid = &setup.sims["cheap"].transfers()[0];
    let token = credential("cheap", "callback_token");
    let body = json!({"event": "payout.failed", "data": {"reference_id": format!("{}#1", today_id(&c(1))), "status": "FAILED"}});
    let forged = ("x-callback-token", "forged");
    assert_eq!(setup.callback("cheap", forged, &body).await, 401);
    assert_eq!(setup.callback("nobody", forged, &body).await, 404);
    let genuine = ("x-callback-token", token.as_str());
    assert_eq!(setup.callback("cheap", genuine, &body).await, 200, "{paid:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(at(1), succeeded("cheap"), "a callback alone changes nothing");

    // Reconciliation: today's attempts at `cheap` match its report; an amount changed in the
    // report is found, and named with its payout.
    let today = Utc::now().date_naive();
    let path = format!("/v1/providers/cheap/reconciliation?date={today}");
    let clean = setup.admin_get(&path).await;
    assert_eq!(clean["mismatched"], 0, "{clean}");
    assert!(clean["matched"].as_u64().unwrap() >= 8, "{clean}");
    let executed_before = setup.sims["cheap"].executed().len();
    let c1_key = format!("{}#1", today_id(&c(1)));
    setup.sims["cheap"].tamper_report(&c1_key, json!({"amount": 19_000}));
    let tampered = setup.admin_get(&path).await;
    assert_eq!(tampered["mismatched"], 1, "{tampered}");
    assert_eq!(tampered["lines"][0]["finding"], "amount_mismatch");
    assert_eq!(tampered["lines"][0]["payout_id"], today_id(&c(1)));
    assert_eq!(tampered["lines"][0]["provider_amount"], 19_000 * RP);
    let csv = setup.admin_get(&format!("{path}&format=csv")).await;
    assert!(csv.as_str().unwrap().lines().nth(1).unwrap().starts_with("amount_mismatch,"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let executed_after = setup.sims["cheap"].executed().len();
    assert_eq!(executed_after, executed_before, "a mismatch pays nothing");

    // The events: each payout's states in order, keyed per customer.
    let want = [(1, "SUCCEEDED"), (7, "REVERSED"), (6, "FAILED")];
    let events = setup
        .events(|states| {
            want.iter().all(|(n, last)| {
                states.get(&today_id(&c(*n))).and_then(|seen| seen.last()).map(String::as_str)
                    == Some(*last)
            })
        })
        .await;
    assert_eq!(events[&today_id(&c(1))], ["RESERVED", "SUBMITTED", "SUCCEEDED"]);
    assert_eq!(events[&today_id(&c(7))], ["RESERVED", "SUBMITTED", "SUCCEEDED", "REVERSED"]);
    assert_eq!(events[&today_id(&c(6))], ["RESERVED", "SUBMITTED", "FAILED"]);

    // A clawback after the payout: the balance goes negative and nets against the next.
    setup.publish_rewards(&[reward(&c(16), "r-16-refund", -5_000 * RP, 0)]).await;
    setup.publish_rewards(&[reward(&c(16), "r-16-more", 30_000 * RP, 9)]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.payable(&c(16)).await != 25_000 * RP {
        assert!(Instant::now() < deadline, "payable {}", setup.payable(&c(16)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tomorrow = Utc::now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive().succ_opt();
    let limits = Limits { minimum: 10_000 * RP, maximum_per_day: 500_000 * RP, unit: RP };
    let next = setup
        .journal
        .reserve(&toko(), &c(16), idr(), tomorrow.unwrap(), "OVO", limits)
        .await
        .unwrap();
    let Reservation::New(next) = next else { panic!("{next:?}") };
    assert_eq!(next.amount, 25_000 * RP, "Rp 30,000 earned less the Rp 5,000 clawed back");

    // The partner's statement adds up to the journal.
    let payouts = setup.payouts().await;
    let settled = |state: &str| state == "SUCCEEDED" || state == "REVERSED";
    let paid: i64 = payouts.values().filter(|p| settled(&p.0)).map(|p| p.1).sum();
    let reversed: i64 = payouts.values().filter(|p| p.0 == "REVERSED").map(|p| p.1).sum();
    let earned: i64 = rewards.iter().map(|reward| reward.cashback).sum::<i64>() + 30_000 * RP;
    // A statement counts partner-local days (reconciliation above, UTC ones): from 17:00 UTC
    // Jakarta is a day ahead.
    let local_today = Utc::now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive();
    let from = local_today - chrono::Duration::days(30);
    let statement =
        setup.admin_get(&format!("/v1/partners/TOKO/statement?from={from}&to={local_today}")).await;
    assert_eq!(statement["cashback_earned"], earned, "{statement}");
    assert_eq!(statement["clawed_back"], 5_000 * RP);
    assert_eq!(statement["paid_out"], paid);
    assert_eq!(statement["reversed"], reversed);
    let owed = ["held", "payable", "in_flight"].map(|part| statement[part].as_i64().unwrap());
    assert_eq!(statement["outstanding"], owed.iter().sum::<i64>());
    assert_eq!(
        statement["outstanding"].as_i64().unwrap(),
        earned - 5_000 * RP - paid + reversed,
        "what is owed is what was earned less what was clawed back and paid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_random_faults_with_two_replicas_and_sigkills() {
    let customers: u32 = std::env::var("CEZBEK_TEST_PAYOUTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(20_000);
    let setup = Setup::new(
        "payoutssoak",
        &[
            SimSpec { name: "first", api: "xendit", fee: 1_500, wallets: &["OVO"] },
            SimSpec { name: "second", api: "iris", fee: 2_000, wallets: &["OVO", "DANA"] },
            SimSpec { name: "third", api: "snap", fee: 2_500, wallets: &["OVO", "DANA", "GOPAY"] },
        ],
    )
    .await;
    // A third of the customers each on OVO (paid through the Xendit-style API, failing over to
    // Iris), DANA (Iris, then SNAP) and GoPay (SNAP only): every adapter under the same faults.
    let wallets: Vec<(Msisdn, &str)> = (0..customers)
        .filter(|n| n % 3 != 0)
        .map(|n| (msisdn(n), if n % 3 == 1 { "DANA" } else { "GOPAY" }))
        .collect();
    setup.publish_wallets(&wallets).await;
    for (seed, sim) in setup.sims.values().enumerate() {
        sim.set_faults(Faults {
            latency_ms: 5,
            random: Some(RandomFaults {
                seed: seed as u64 + 1,
                server_error: 0.05,
                accept_then_no_answer: 0.05,
                pending: 0.05,
                pending_ms: 400,
                fail: 0.02,
                duplicate_callbacks: 0.05,
            }),
            ..Faults::default()
        });
    }
    let rewards: Vec<Reward> = (0..customers)
        .map(|n| reward(&msisdn(n), &format!("s-{n}"), (20_000 + i64::from(n % 1_000)) * RP, 10))
        .collect();
    let mut replica_a = setup.spawn("soak-a", setup.api_port);
    let _replica_b = setup.spawn("soak-b", free_port());
    setup.wait_destinations(wallets.len() as i64).await;
    let started = Instant::now();
    setup.publish_rewards(&rewards).await;
    // Once payouts are under way, SIGKILL one replica five times at pseudo-random moments,
    // restarting it each time.
    while setup.payouts().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(300), "no payout after 5 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut kills = 0;
    let mut draw = 0x5EED_u64;
    while kills < 5 && setup.unfinished_or_missing(customers as usize).await {
        draw = draw.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        tokio::time::sleep(Duration::from_millis(1_000 + (draw >> 33) % 4_000)).await;
        replica_a.kill();
        kills += 1;
        replica_a = setup.spawn("soak-a", setup.api_port);
    }
    assert!(kills >= 3, "only {kills} SIGKILLs happened while paying");
    setup.wait_settled(customers as usize, Duration::from_secs(900)).await;
    let seconds = started.elapsed().as_secs_f64();
    setup.assert_exactly_once().await;
    let payouts = setup.payouts().await;
    let succeeded = payouts.values().filter(|(state, ..)| state == "SUCCEEDED").count();
    assert!(succeeded * 10 > payouts.len() * 9, "{succeeded} of {} succeeded", payouts.len());
    for (name, sim) in &setup.sims {
        let paid = sim.executed().len();
        assert!(paid * 4 > customers as usize, "{name} paid only {paid} of {customers}");
    }
    eprintln!(
        "{} payouts in {seconds:.1} s through {kills} SIGKILLs ({:.0}/s), {succeeded} succeeded",
        payouts.len(),
        payouts.len() as f64 / seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iris_and_snap_adapters_route_fail_over_inquire_and_reconcile_paying_once() {
    let setup = Setup::new(
        "payoutsadapters",
        &[
            SimSpec { name: "iris", api: "iris", fee: 1_000, wallets: &["OVO", "GOPAY"] },
            SimSpec { name: "snap", api: "snap", fee: 1_200, wallets: &["OVO", "DANA"] },
            SimSpec { name: "xendit", api: "xendit", fee: 2_500, wallets: &["OVO", "DANA"] },
        ],
    )
    .await;
    let c = |n: u32| msisdn(n);
    let fault = |n: u32, fault: Fault| (c(n).as_str().to_owned(), fault);
    setup.sims["iris"].set_faults(Faults {
        by_account: HashMap::from([
            fault(2, Fault::InvalidAccount),
            fault(3, Fault::ServerError { times: 2 }),
            fault(4, Fault::AcceptThenNoAnswer { times: 1, delay_ms: 0 }),
            fault(5, Fault::ReverseAfter { after_ms: 500 }),
            fault(6, Fault::DuplicateCallbacks),
        ]),
        ..Faults::default()
    });
    setup.sims["snap"].set_faults(Faults {
        by_account: HashMap::from([
            fault(12, Fault::PendingFor { ms: 1_000, then: Ending::Succeeded }),
            fault(13, Fault::Fail { code: "Exceeds Transaction Amount Limit".into() }),
            fault(14, Fault::InvalidAccount),
            fault(15, Fault::ServerError { times: 2 }),
            fault(16, Fault::AcceptThenNoAnswer { times: 1, delay_ms: 0 }),
            fault(17, Fault::ReverseAfter { after_ms: 3_000 }),
        ]),
        ..Faults::default()
    });
    let on_ovo = [1, 2, 3, 4, 5, 6];
    let on_dana = [11, 12, 13, 14, 15, 16, 17];
    let mut rewards = Vec::new();
    for n in on_ovo.into_iter().chain(on_dana) {
        rewards.push(reward(&c(n), &format!("a-{n}"), 20_000 * RP, 10));
    }
    let wallets: Vec<(Msisdn, &str)> = on_dana.iter().map(|n| (c(*n), "DANA")).collect();
    setup.publish_wallets(&wallets).await;
    let _first = setup.spawn("adapters-a", setup.api_port);
    let _second = setup.spawn("adapters-b", free_port());
    setup.wait_destinations(wallets.len() as i64).await;
    setup.publish_rewards(&rewards).await;
    setup.wait_settled(13, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    setup.wait_settled(13, Duration::from_secs(30)).await;

    let payouts = setup.payouts().await;
    let at = |n: u32| {
        let (state, _, provider) = payouts.get(&today_id(&c(n))).cloned().unwrap();
        (state, provider.unwrap_or_default())
    };
    let succeeded = |provider: &str| ("SUCCEEDED".to_owned(), provider.to_owned());
    assert_eq!(at(1), succeeded("iris"), "Iris, the cheapest for OVO: created, then approved");
    assert_eq!(at(2), succeeded("snap"), "Iris's account inquiry said no: the next cheapest");
    assert_eq!(at(3), succeeded("iris"), "5xx is unknown: asked again, no failover");
    assert_eq!(at(4), succeeded("iris"), "the same idempotency key answered the first create");
    assert_eq!(at(5).0, "REVERSED", "completed, then failed at Iris: a reversal");
    assert_eq!(at(6), succeeded("iris"), "duplicate signed notifications");
    assert_eq!(at(11), succeeded("snap"), "SNAP, the cheapest for DANA");
    assert_eq!(at(12), succeeded("snap"), "pending (03), then success (00)");
    assert_eq!(at(13), succeeded("xendit"), "failed (06) for certain: the next cheapest");
    assert_eq!(at(14), succeeded("xendit"), "an invalid account is refused (4043811)");
    assert_eq!(at(15), succeeded("snap"), "5xx is unknown: asked again");
    assert_eq!(at(16), succeeded("snap"), "the duplicate reference (4093801) was looked up");
    assert_eq!(setup.payable(&c(5)).await, 20_000 * RP, "the reversal restored the balance");

    // The inquiry before the first payout to a destination: the holder's name is kept.
    let holder: Option<String> = sqlx::query(
        "SELECT holder_name FROM payout_destination_checks WHERE msisdn = $1 AND wallet = 'OVO'",
    )
    .bind(c(1).as_str())
    .fetch_optional(&setup.pool)
    .await
    .unwrap()
    .map(|row| row.get("holder_name"));
    let first = c(1);
    let tail = &first.as_str()[first.as_str().len() - 4..];
    assert_eq!(holder, Some(format!("Customer {tail}")));
    let failure: String = sqlx::query(
        "SELECT failure FROM payout_attempts WHERE payout_id = $1 AND provider = 'iris'",
    )
    .bind(today_id(&c(2)))
    .fetch_one(&setup.pool)
    .await
    .unwrap()
    .get("failure");
    assert!(failure.starts_with("account inquiry:"), "{failure}");
    let iris_transfers = setup.sims["iris"].transfers();
    let to = |n: u32| iris_transfers.iter().filter(|t| t.account == c(n).as_str()).count();
    assert_eq!((to(2), to(4)), (0, 1), "nothing sent to an invalid account; one create per key");

    // Iris notifications: signed with the merchant key or refused.
    let merchant_key = credential("iris", "merchant_key");
    let body = json!({"reference_no": iris_transfers[0].id, "status": "failed"});
    let signature = cezbek_paysim::iris::signature(body.to_string().as_bytes(), &merchant_key);
    assert_eq!(setup.callback("iris", ("iris-signature", "0f"), &body).await, 401);
    let forged = cezbek_paysim::iris::signature(body.to_string().as_bytes(), "guessed");
    assert_eq!(setup.callback("iris", ("iris-signature", &forged), &body).await, 401);
    assert_eq!(setup.callback("iris", ("iris-signature", &signature), &body).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(at(1), succeeded("iris"), "a notification alone changes nothing");
    assert_eq!(setup.callback("snap", ("x-signature", "x"), &body).await, 401, "SNAP: none");

    // Reconciliation against each API's own statement; a tampered line is found.
    let today = Utc::now().date_naive();
    // SNAP refunded c17 after paying it and calls nobody back: reconciliation finds the
    // status mismatch, which has the payout asked about again; the status query posts the
    // reversal, and the day reconciles.
    assert_eq!(at(17), succeeded("snap"), "paid, as far as anyone told Cezbek");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refunded_at_snap = || {
        setup.sims["snap"].transfers().iter().any(|transfer| {
            transfer.account == c(17).as_str() && transfer.phase == cezbek_paysim::Phase::Reversed
        })
    };
    while !refunded_at_snap() {
        assert!(Instant::now() < deadline, "the simulator never refunded c17");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snap_day = format!("/v1/providers/snap/reconciliation?date={today}");
    let refunded = setup.admin_get(&snap_day).await;
    assert_eq!(refunded["mismatched"], 1, "{refunded}");
    assert_eq!(refunded["lines"][0]["finding"], "status_mismatch");
    assert_eq!(refunded["lines"][0]["provider_status"], "REVERSED");
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.payouts().await[&today_id(&c(17))].0 != "REVERSED" {
        assert!(Instant::now() < deadline, "the refund was not learned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(setup.payable(&c(17)).await, 20_000 * RP, "the refund restored the balance");
    setup.assert_exactly_once().await;
    for provider in ["iris", "snap"] {
        let path = format!("/v1/providers/{provider}/reconciliation?date={today}");
        let clean = setup.admin_get(&path).await;
        assert_eq!(clean["mismatched"], 0, "{clean}");
        assert!(clean["matched"].as_u64().unwrap() >= 4, "{clean}");
    }
    let key = format!("{}#1", today_id(&c(11)));
    setup.sims["snap"].tamper_report(&key, json!({"amount": {"value": "1.00", "currency": "IDR"}}));
    let path = format!("/v1/providers/snap/reconciliation?date={today}");
    let tampered = setup.admin_get(&path).await;
    assert_eq!(tampered["mismatched"], 1, "{tampered}");
    assert_eq!(tampered["lines"][0]["finding"], "amount_mismatch");
    assert_eq!(tampered["lines"][0]["provider_amount"], RP);

    // Customers and partners read balances and payouts through the informer.
    let informer = setup.informer().await;
    let read = |n: u32| {
        let url = format!("{informer}/v1/partners/TOKO/customers/{}/payouts", c(n).as_str());
        let http = setup.http.clone();
        async move {
            let response = http.get(url).bearer_auth(ADMIN).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let paid = read(1).await;
    assert_eq!(
        paid["balances"],
        json!([{"currency": "IDR", "held": 0, "payable": 0, "in_flight": 0, "paid": 20_000 * RP}])
    );
    assert_eq!(paid["payouts"][0]["id"], today_id(&c(1)));
    assert_eq!(paid["payouts"][0]["state"], "SUCCEEDED");
    assert_eq!(paid["payouts"][0]["provider"], "iris");
    assert_eq!(paid["payouts"][0]["fee"], 111_000, "Rp 1,000 and 11 % VAT");
    let reversed = read(5).await;
    assert_eq!(reversed["balances"][0]["payable"], 20_000 * RP, "the reversal gave it back");
    assert_eq!(reversed["balances"][0]["paid"], 0, "a reversed payout is not paid");
    assert_eq!(reversed["payouts"][0]["state"], "REVERSED");
    let stranger = setup
        .http
        .get(format!("{informer}/v1/partners/TOKO/customers/{}/payouts", c(1).as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401, "the same authentication as the rest of the informer");

    // A float that cannot cover a payout: the provider is passed over, not tried.
    setup.sims["iris"].set_balance(100);
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.publish_rewards(&[reward(&c(7), "a-7", 20_000 * RP, 10)]).await;
    setup.wait_settled(14, Duration::from_secs(60)).await;
    let rows =
        sqlx::query("SELECT provider, chosen_over FROM payout_attempts WHERE payout_id = $1")
            .bind(today_id(&c(7)))
            .fetch_all(&setup.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "one attempt, at a provider that could pay");
    assert_eq!(rows[0].get::<String, _>("provider"), "snap");
    let chosen_over: Value = rows[0].get("chosen_over");
    let iris = chosen_over.as_array().unwrap().iter().find(|over| over["provider"] == "iris");
    assert!(iris.unwrap()["reason"].as_str().unwrap().contains("float"), "{chosen_over}");

    // The partner switches its policy to the customer bearing the fee: the next payout sends
    // the amount less the fee, and the customer's balance gives up the whole amount.
    let customer_pays = PayoutPolicy { fee_bearer: FeeBearer::Customer, ..policy() };
    let toko = Rule::Partner(Partner { payout_policy: Some(customer_pays), ..partner() });
    let mut client = etcd::connect(&setup.etcd).await.unwrap();
    client.put(toko.key().path(&setup.etcd.prefix), toko.to_json(), None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.publish_rewards(&[reward(&c(8), "a-8", 20_000 * RP, 10)]).await;
    setup.wait_settled(15, Duration::from_secs(60)).await;
    let fee = 133_200; // SNAP's Rp 1,200 and 11 % VAT, through OVO now that Iris has no float.
    let (state, amount, provider) = setup.payouts().await[&today_id(&c(8))].clone();
    assert_eq!(
        (state.as_str(), amount, provider.as_deref()),
        ("SUCCEEDED", 20_000 * RP, Some("snap"))
    );
    let sent = setup.sims["snap"].executed().into_iter().find(|run| run.account == c(8).as_str());
    assert_eq!(
        sent.map(|run| (run.amount, run.fee + run.vat)),
        Some((20_000 - fee / RP, fee / RP))
    );
    assert_eq!(setup.payable(&c(8)).await, 0, "the whole amount left the balance");
    setup.assert_exactly_once().await;
}
