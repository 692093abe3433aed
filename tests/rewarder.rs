//! The rewarder against the real broker, etcd and PostgreSQL: exact decisions, live rules,
//! dead letters, crashes and a database outage.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::{CancellationToken, etcd, kafka};
use cezbek_rules::{Replay, Rule, RuleSnapshot};
use cezbek_schemas::{Reward, Transaction, decode, encode};
use cezbek_testkit::fixtures::{base, mixed_log, pipeline_rules};
use cezbek_testkit::{PrivatePostgres, TestContext, free_port};
use chrono::{TimeZone, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// What the engine decides for the transactions, customer by customer in log order.
fn expected(
    snapshot: &RuleSnapshot,
    transactions: &[Transaction],
) -> HashMap<String, (String, i64, Option<String>)> {
    let mut replay = Replay::default();
    transactions
        .iter()
        .map(|transaction| {
            let decision = replay.decide(transaction, snapshot).decision;
            let outcome =
                serde_json::to_value(decision.outcome).unwrap().as_str().unwrap().to_owned();
            (
                transaction.transaction_id.to_string(),
                (outcome, decision.cashback, decision.tier_after),
            )
        })
        .collect()
}

struct Pipeline {
    context: TestContext,
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    postgres: PostgresConfig,
    group: String,
    producer: FutureProducer,
    /// The etcd revision after the rules were written.
    revision: i64,
    rules: Vec<Rule>,
}

impl Pipeline {
    async fn new(name: &str) -> Self {
        let context = TestContext::new(name);
        let kafka = context.kafka_config();
        context.create_topics(&kafka, 6).await;
        let etcd = context.etcd_config();
        let postgres = context.postgres_config().await;
        let producer = kafka::producer(&kafka).unwrap();
        let group = format!("rewarder-{}", context.id);
        let mut pipeline = Self {
            context,
            kafka,
            etcd,
            postgres,
            group,
            producer,
            revision: 0,
            rules: Vec::new(),
        };
        for rule in pipeline_rules() {
            pipeline.put_rule(rule).await;
        }
        pipeline
    }

    async fn put_rule(&mut self, rule: Rule) {
        let mut client = etcd::connect(&self.etcd).await.unwrap();
        let key = rule.key().path(&self.etcd.prefix);
        let response = client.put(key.as_str(), rule.to_json(), None).await.unwrap();
        self.revision = response.header().unwrap().revision();
        self.rules.retain(|existing| existing.key() != rule.key());
        self.rules.push(rule);
    }

    fn snapshot(&self) -> RuleSnapshot {
        let mut set = cezbek_rules::RuleSet::new(self.etcd.prefix.clone());
        for rule in &self.rules {
            set.put(&rule.key().path(&self.etcd.prefix), rule.to_json().as_bytes()).unwrap();
        }
        set.snapshot(self.revision)
    }

    fn config(&self, postgres: &PostgresConfig) -> cezbek_rewarder::Config {
        cezbek_rewarder::Config {
            http: HttpConfig::ops_only(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
            kafka: self.kafka.clone(),
            etcd: self.etcd.clone(),
            postgres: postgres.clone(),
            ledger: cezbek_ledger::LedgerChoice::Postgres,
            group_id: self.group.clone(),
            batch_max: 2_000,
            batch_wait: Duration::ZERO,
            fetch_wait: Duration::from_millis(100),
            lanes: 4,
            cache_customers: 100_000,
        }
    }

    async fn produce_bytes(&self, key: &str, payload: &[u8]) {
        let record = FutureRecord::to(&self.kafka.transactions_topic).key(key).payload(payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }

    async fn produce(&self, transactions: &[Transaction]) {
        let payloads: Vec<(String, Vec<u8>)> =
            transactions.iter().map(|t| (t.key(), encode(t).unwrap())).collect();
        let sends = payloads.iter().map(|(key, payload)| {
            self.producer.send(
                FutureRecord::to(&self.kafka.transactions_topic).key(key).payload(payload),
                Duration::from_secs(60),
            )
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(error, _)| error).unwrap();
        }
    }

    async fn pool(postgres: &PostgresConfig) -> sqlx::PgPool {
        cezbek_platform::postgres::connect(postgres).await.unwrap()
    }

    /// `transaction_id → (outcome, cashback, tier_after, rules_revision)` from the ledger.
    async fn ledger(pool: &sqlx::PgPool) -> HashMap<String, (String, i64, Option<String>, i64)> {
        let rows: Vec<(String, String, i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT transaction_id, outcome, cashback, tier_after, rules_revision FROM rewards",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(id, outcome, cashback, tier, revision)| {
                (id, (outcome, cashback, tier, revision))
            })
            .collect()
    }

    async fn wait_for_rows(pool: &sqlx::PgPool, count: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let rows: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM rewards").fetch_one(pool).await;
            if rows.as_ref().is_ok_and(|rows| *rows >= count) {
                return;
            }
            assert!(Instant::now() < deadline, "ledger has {rows:?} rows, waited for {count}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts that the ledger holds exactly the engine's decisions under these rules. etcd's
    /// revision is cluster-wide (other tests move it too), so a decision may carry any
    /// revision from our last rule write on.
    fn assert_exact(
        &self,
        ledger: &HashMap<String, (String, i64, Option<String>, i64)>,
        transactions: &[Transaction],
    ) {
        let expected = expected(&self.snapshot(), transactions);
        assert_eq!(ledger.len(), expected.len(), "no loss and no extra");
        let mut mismatches = Vec::new();
        for (id, (outcome, cashback, tier)) in &expected {
            match ledger.get(id) {
                Some((o, c, t, revision))
                    if o == outcome && c == cashback && t == tier && *revision >= self.revision => {
                }
                other => mismatches.push(format!(
                    "{id}: expected {outcome} {cashback} {tier:?}, ledger {other:?}"
                )),
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} mismatches, e.g. {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
    }

    fn spawn_process(&self, label: &str) -> Child {
        let stack = self.context.stack;
        let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
        command.arg("rewarder").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (name, value) in [
            ("CEZBEK_KAFKA_BROKERS", stack.var("CEZBEK_KAFKA_BROKERS")),
            ("CEZBEK_TRANSACTIONS_TOPIC", self.kafka.transactions_topic.clone()),
            ("CEZBEK_REWARDS_TOPIC", self.kafka.rewards_topic.clone()),
            ("CEZBEK_TRANSACTIONS_DLQ_TOPIC", self.kafka.dead_letter_topic.clone()),
            ("CEZBEK_KAFKA_CLIENT_ID", format!("rewarder-{label}")),
            ("CEZBEK_REWARDER_GROUP", self.group.clone()),
            ("CEZBEK_ETCD_ENDPOINTS", stack.var("CEZBEK_ETCD_ENDPOINTS")),
            ("CEZBEK_ETCD_PREFIX", self.etcd.prefix.clone()),
            ("CEZBEK_POSTGRES_URL", self.postgres.url.clone()),
            ("CEZBEK_POSTGRES_SCHEMA", self.postgres.schema.clone().unwrap()),
            ("CEZBEK_REWARDER_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("CEZBEK_LOG", "warn".into()),
        ] {
            command.env(name, value);
        }
        let log = std::fs::File::create(
            stack.root.join(format!("var/log/test-rewarder-{}-{label}.log", self.context.id)),
        )
        .unwrap();
        command.stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }
}

#[tokio::test]
async fn transactions_become_exactly_the_engines_decisions_and_reward_events() {
    let pipeline = Pipeline::new("rwexact").await;
    let transactions = mixed_log(3_000, 150, "t");
    pipeline.produce(&transactions).await;
    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    let pool = Pipeline::pool(&pipeline.postgres).await;
    Pipeline::wait_for_rows(&pool, 3_000, Duration::from_secs(120)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);

    // Customer state: the latest email, the tier, and a window that matches.
    let (email, tier): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT email, tier FROM customer_state WHERE msisdn = '+628110000007'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(email.as_deref(), Some("c7@example.com"));
    assert!(tier.is_some(), "an active customer reached a tier");

    // Every decision is on the rewards topic too: events are published after the ledger
    // write, so they may trail it by a batch.
    let consumer =
        kafka::consumer(&pipeline.kafka, &format!("check-{}", pipeline.context.id)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut published = 0;
        for partition in 0..6 {
            let (low, high) = consumer
                .fetch_watermarks(&pipeline.kafka.rewards_topic, partition, Duration::from_secs(10))
                .unwrap();
            published += high - low;
        }
        if published >= 3_000 {
            break;
        }
        assert!(Instant::now() < deadline, "only {published} reward events after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_rule_changed_in_etcd_applies_to_the_next_transactions() {
    let mut pipeline = Pipeline::new("rwlive").await;
    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    let pool = Pipeline::pool(&pipeline.postgres).await;
    let before = mixed_log(200, 20, "a");
    pipeline.produce(&before).await;
    Pipeline::wait_for_rows(&pool, 200, Duration::from_secs(60)).await;
    let first_revision = pipeline.revision;

    // Base goes from 1 % to 3 %, live.
    pipeline.put_rule(Rule::Campaign(base("base", 300))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<Transaction> = mixed_log(200, 20, "b")
        .into_iter()
        .map(|t| Transaction { occurred_at: t.occurred_at + chrono::Duration::days(60), ..t })
        .collect();
    pipeline.produce(&after).await;
    Pipeline::wait_for_rows(&pool, 400, Duration::from_secs(60)).await;
    let ledger = Pipeline::ledger(&pool).await;
    assert!(pipeline.revision > first_revision);
    for transaction in &before {
        let revision = ledger[&transaction.transaction_id.to_string()].3;
        assert!((first_revision..pipeline.revision).contains(&revision), "{revision}");
    }
    for transaction in &after {
        assert!(
            ledger[&transaction.transaction_id.to_string()].3 >= pipeline.revision,
            "decided under the new rules"
        );
    }
    let only_after: HashMap<_, _> =
        ledger.into_iter().filter(|(id, _)| id.starts_with('b')).collect();
    // Decided from the state the first 200 left, under the new rules.
    let mut windows_history = before.clone();
    windows_history.extend(after.iter().cloned());
    let expected_all = expected(&pipeline.snapshot(), &windows_history);
    for (id, (outcome, cashback, tier, _)) in &only_after {
        let (o, c, t) = &expected_all[id];
        assert_eq!((outcome, cashback, tier), (o, c, t), "{id}");
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), service).await;
}

#[tokio::test]
async fn poison_and_conflicting_messages_go_to_the_dlq_and_the_partition_moves_on() {
    let pipeline = Pipeline::new("rwdlq").await;
    let good = mixed_log(50, 1, "g");
    let key = good[0].key();
    pipeline.produce(&good[..25]).await;
    pipeline.produce_bytes(&key, b"not avro at all").await;
    // The same id again: same content is a harmless redelivery; other content is a conflict.
    pipeline.produce(&good[..1]).await;
    let mut conflicting = good[1].clone();
    conflicting.amount += 1;
    pipeline.produce(&[conflicting]).await;
    pipeline.produce(&good[25..]).await;

    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    let pool = Pipeline::pool(&pipeline.postgres).await;
    Pipeline::wait_for_rows(&pool, 50, Duration::from_secs(60)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &good);

    let reasons = dead_letters(&pipeline, 2).await;
    assert_eq!(reasons[0].0, "conflict");
    assert!(reasons[0].1.contains("g1"), "{reasons:?}");
    assert_eq!(reasons[1].0, "undecodable");
    assert!(reasons[1].1.contains("single-object marker"), "{reasons:?}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), service).await;
}

/// Reads `count` dead letters: `(reason, error, source offset)` each, sorted by reason.
async fn dead_letters(pipeline: &Pipeline, count: usize) -> Vec<(String, String, i64)> {
    let consumer =
        kafka::consumer(&pipeline.kafka, &format!("dlq-{}", pipeline.context.id)).unwrap();
    consumer.subscribe(&[&pipeline.kafka.dead_letter_topic]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let headers = message.headers().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap()
        };
        letters.push((
            header("cezbek-reason"),
            header("cezbek-error"),
            header("cezbek-source-offset").parse().unwrap(),
        ));
    }
    letters.sort();
    letters
}

/// A transaction the ledger refuses for good (here: a constraint the operator added) used to
/// make the rewarder retry its batch forever, holding up every later transaction of the
/// partition. The batch is halved down to the message at fault, which is dead-lettered with
/// the ledger's error; the rest is written, exactly. A time no backend can store, or a key that
/// is not the transaction's customer, never gets that far.
#[tokio::test]
async fn a_transaction_the_ledger_refuses_is_dead_lettered_and_the_rest_is_written() {
    let pipeline = Pipeline::new("rwrefuse").await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    cezbek_ledger::PostgresLedger::new(pool.clone()).migrate().await.unwrap();
    sqlx::query(
        "ALTER TABLE rewards ADD CONSTRAINT no_poison CHECK (merchant IS DISTINCT FROM 'POISON')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // One customer, so every message shares a partition and the poison sits mid-batch.
    let good = mixed_log(60, 1, "g");
    let mut poison = mixed_log(1, 1, "poison").remove(0);
    poison.merchant = Some("POISON".into());
    poison.occurred_at = good[30].occurred_at;
    let mut year_zero = mixed_log(1, 1, "y0").remove(0);
    year_zero.occurred_at = Utc.with_ymd_and_hms(0, 6, 1, 0, 0, 0).unwrap();
    let mut elsewhere = mixed_log(1, 1, "k").remove(0);
    elsewhere.occurred_at = good[40].occurred_at;
    pipeline.produce(&good[..30]).await;
    pipeline.produce(&[poison]).await;
    pipeline.produce_bytes(&good[0].key(), &encode(&year_zero).unwrap()).await;
    pipeline.produce_bytes("TOKO:+6281100000009", &encode(&elsewhere).unwrap()).await;
    pipeline.produce(&good[30..]).await;

    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    Pipeline::wait_for_rows(&pool, 60, Duration::from_secs(60)).await;
    let letters = dead_letters(&pipeline, 3).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &good);
    assert_eq!(letters[0].0, "invalid", "{letters:?}");
    assert!(letters[0].1.contains("is not the transaction's customer"), "{letters:?}");
    assert_eq!(letters[1].0, "refused", "{letters:?}");
    assert!(letters[1].1.contains("no_poison"), "{letters:?}");
    assert_eq!(letters[1].2, 30, "the poison's own offset: {letters:?}");
    assert_eq!(letters[2].0, "undecodable", "{letters:?}");
    assert!(letters[2].1.contains("occurred_at"), "{letters:?}");
    assert!(letters[2].1.contains("outside the supported range"), "{letters:?}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), service).await;
}

#[tokio::test]
async fn six_partitions_share_one_lane_and_a_budget_of_four_small_batches() {
    // One lane and batches of 25: the instance's buffering budget holds four batches, fewer
    // than the six partitions' readers want to hand on. Every partition still gets its turn.
    let pipeline = Pipeline::new("rwbudget").await;
    let transactions = mixed_log(2_000, 120, "u");
    pipeline.produce(&transactions).await;
    let config =
        cezbek_rewarder::Config { lanes: 1, batch_max: 25, ..pipeline.config(&pipeline.postgres) };
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(cezbek_rewarder::run(config, shutdown.clone()));
    let pool = Pipeline::pool(&pipeline.postgres).await;
    Pipeline::wait_for_rows(&pool, 2_000, Duration::from_secs(120)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), service).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_redelivered_transaction_re_emits_its_reward_as_stored() {
    let pipeline = Pipeline::new("rwredo").await;
    let decided = mixed_log(40, 8, "r");
    pipeline.produce(&decided).await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    Pipeline::wait_for_rows(&pool, 40, Duration::from_secs(60)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), service).await.unwrap().unwrap().unwrap();

    // The first ten again, as after a crash between the ledger write and the commit: the
    // restarted rewarder finds them decided and publishes their rewards once more, as stored
    // (not decided again: the decision time is the first one).
    pipeline.produce(&decided[..10]).await;
    let shutdown = CancellationToken::new();
    let service =
        tokio::spawn(cezbek_rewarder::run(pipeline.config(&pipeline.postgres), shutdown.clone()));
    let consumer =
        kafka::consumer(&pipeline.kafka, &format!("rewards-{}", pipeline.context.id)).unwrap();
    consumer.subscribe(&[&pipeline.kafka.rewards_topic]).unwrap();
    let mut published: HashMap<String, Vec<Reward>> = HashMap::new();
    for _ in 0..50 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("40 rewards, then 10 re-emitted")
            .unwrap();
        let reward: Reward = decode(message.payload().unwrap()).unwrap();
        published.entry(reward.transaction_id.to_string()).or_default().push(reward);
    }
    for (index, transaction) in decided.iter().enumerate() {
        let copies = &published[transaction.transaction_id.as_str()];
        let expected_copies = if index < 10 { 2 } else { 1 };
        assert_eq!(copies.len(), expected_copies, "{}", transaction.transaction_id);
        assert!(copies.iter().all(|copy| *copy == copies[0]), "re-emitted as stored: {copies:?}");
    }
    assert_eq!(Pipeline::ledger(&pool).await.len(), 40, "nothing decided twice");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), service).await;
}

/// Reads the reward topic until it has been quiet for five seconds: how many times each
/// transaction's reward was published.
async fn rewards_published(pipeline: &Pipeline, at_least: usize) -> HashMap<String, usize> {
    let consumer =
        kafka::consumer(&pipeline.kafka, &format!("rewards-{}", pipeline.context.id)).unwrap();
    consumer.subscribe(&[&pipeline.kafka.rewards_topic]).unwrap();
    let mut published: HashMap<String, usize> = HashMap::new();
    let mut read = 0;
    loop {
        let quiet = if read < at_least { 60 } else { 5 };
        let Ok(message) = tokio::time::timeout(Duration::from_secs(quiet), consumer.recv()).await
        else {
            assert!(read >= at_least, "only {read} rewards published, expected {at_least}");
            return published;
        };
        let reward: Reward = decode(message.unwrap().payload().unwrap()).unwrap();
        *published.entry(reward.transaction_id.to_string()).or_default() += 1;
        read += 1;
    }
}

// Multi-threaded, as the service runs: a revocation waits for the batches in hand on the
// thread that polls the consumer, which a single-threaded runtime cannot spare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moving_to_a_joining_instance_is_handed_over_without_a_reward_twice() {
    let pipeline = Pipeline::new("rwhandover").await;
    let transactions = mixed_log(40_000, 1_000, "h");
    pipeline.produce(&transactions).await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    // Small batches, so that every partition has batches in hand when the second joins.
    let config = cezbek_rewarder::Config { batch_max: 200, ..pipeline.config(&pipeline.postgres) };
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(cezbek_rewarder::run(config.clone(), shutdown.clone()));
    Pipeline::wait_for_rows(&pool, 5_000, Duration::from_secs(120)).await;
    let second = tokio::spawn(cezbek_rewarder::run(
        cezbek_rewarder::Config {
            http: HttpConfig::ops_only(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
            ..config
        },
        shutdown.clone(),
    ));
    Pipeline::wait_for_rows(&pool, 40_000, Duration::from_secs(240)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);
    // Partitions did move mid-stream: their shards were claimed a second time.
    let moved: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_shards WHERE epoch > 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(moved > 0, "the second instance took over partitions");
    let published = rewards_published(&pipeline, transactions.len()).await;
    let twice: Vec<_> = published.iter().filter(|(_, copies)| **copies > 1).collect();
    assert!(
        twice.is_empty(),
        "{} rewards published more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(published.len(), transactions.len());
    shutdown.cancel();
    for instance in [first, second] {
        tokio::time::timeout(Duration::from_secs(30), instance).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn two_processes_share_the_work_and_a_sigkill_loses_and_doubles_nothing() {
    let pipeline = Pipeline::new("rwkill2").await;
    let transactions = mixed_log(100_000, 2_000, "k");
    pipeline.produce(&transactions).await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    let mut first = pipeline.spawn_process("a");
    let mut second = pipeline.spawn_process("b");
    Pipeline::wait_for_rows(&pool, 30_000, Duration::from_secs(240)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    Pipeline::wait_for_rows(&pool, 100_000, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    let status = second.wait().unwrap();
    assert!(status.success(), "the survivor stops cleanly on SIGTERM: {status:?}");
}

#[tokio::test]
async fn a_single_instance_killed_and_restarted_finishes_exactly() {
    let pipeline = Pipeline::new("rwkill1").await;
    let transactions = mixed_log(40_000, 1_000, "s");
    pipeline.produce(&transactions).await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    let mut instance = pipeline.spawn_process("first");
    Pipeline::wait_for_rows(&pool, 10_000, Duration::from_secs(180)).await;
    instance.kill().unwrap();
    instance.wait().unwrap();
    let mut restarted = pipeline.spawn_process("restarted");
    Pipeline::wait_for_rows(&pool, 40_000, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[tokio::test]
async fn postgres_down_for_ten_seconds_loses_nothing() {
    let pipeline = Pipeline::new("rwpgdown").await;
    let database = PrivatePostgres::start("rwpgdown");
    let postgres =
        PostgresConfig { url: database.url.clone(), schema: None, ..pipeline.postgres.clone() };
    let transactions = mixed_log(20_000, 500, "p");
    pipeline.produce(&transactions[..5_000]).await;
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(cezbek_rewarder::run(pipeline.config(&postgres), shutdown.clone()));
    let pool = Pipeline::pool(&postgres).await;
    Pipeline::wait_for_rows(&pool, 5_000, Duration::from_secs(60)).await;
    pool.close().await;

    database.stop();
    pipeline.produce(&transactions[5_000..]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    database.resume();

    let pool = Pipeline::pool(&postgres).await;
    Pipeline::wait_for_rows(&pool, 20_000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pipeline.assert_exact(&Pipeline::ledger(&pool).await, &transactions);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), service).await;
}

/// Four rewarder processes, two of them SIGKILLed and restarted, share two campaigns' money
/// budgets over 200,000 transactions: a bonus with 2,000,000 in all, and a base paying 800 with
/// 300,000 a partner-local day. Each pays at most its budget, and no less than its budget less
/// what sits unspent in chunks; the daily budget starts afresh at each of the partner's
/// midnights; the next best campaign applies once a budget is used up; a raised budget pays
/// again at once.
#[tokio::test]
async fn a_budget_is_a_hard_stop_across_four_processes_killed_and_restarted() {
    use cezbek_rules::{Campaign, RewardRule};
    use cezbek_testkit::fixtures::bonus;

    let mut pipeline = Pipeline::new("rwbudget").await;
    let promo =
        |budget: i64| Campaign { budget: Some(budget), ..bonus("promo", RewardRule::Fixed(1_000)) };
    let daily = Campaign {
        budget_per_day: Some(300_000),
        ..cezbek_testkit::fixtures::campaign(
            "daily",
            cezbek_schemas::CampaignKind::Base,
            RewardRule::Fixed(800),
        )
    };
    pipeline.put_rule(Rule::Campaign(promo(2_000_000))).await;
    pipeline.put_rule(Rule::Campaign(daily)).await;
    let transactions = mixed_log(200_000, 4_000, "g");
    pipeline.produce(&transactions).await;
    let pool = Pipeline::pool(&pipeline.postgres).await;
    let mut processes: Vec<Child> =
        ["a", "b", "c", "d"].into_iter().map(|label| pipeline.spawn_process(label)).collect();
    for (at, victim) in [(40_000, 1), (110_000, 3)] {
        Pipeline::wait_for_rows(&pool, at, Duration::from_secs(300)).await;
        processes[victim].kill().unwrap();
        processes[victim].wait().unwrap();
        processes[victim] = pipeline.spawn_process(&format!("restarted-{victim}"));
    }
    Pipeline::wait_for_rows(&pool, 200_000, Duration::from_secs(300)).await;

    let paid = |campaign: &'static str, day: Option<chrono::NaiveDate>| {
        let pool = pool.clone();
        async move {
            let paid: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum((a->>'amount')::int8), 0)::int8 \
                 FROM rewards, jsonb_array_elements(applied_campaigns) a \
                 WHERE a->>'campaign_id' = $1 AND ($2::date IS NULL OR local_day = $2)",
            )
            .bind(campaign)
            .bind(day)
            .fetch_one(&pool)
            .await
            .unwrap();
            paid
        }
    };
    let unspent = |campaign: &'static str, scope: String| {
        let pool = pool.clone();
        async move {
            let unspent: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(granted - spent), 0)::int8 FROM budget_chunks \
                 WHERE campaign_id = $1 AND scope = $2",
            )
            .bind(campaign)
            .bind(scope)
            .fetch_one(&pool)
            .await
            .unwrap();
            unspent
        }
    };
    let total = paid("promo", None).await;
    assert!(total <= 2_000_000, "paid {total} of a 2,000,000 budget");
    assert!(total >= 2_000_000 - unspent("promo", "total".into()).await, "paid {total}");
    let days: Vec<chrono::NaiveDate> =
        sqlx::query_scalar("SELECT DISTINCT local_day FROM rewards ORDER BY local_day")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(days.len() >= 4, "{days:?}");
    for day in days {
        let on_day = paid("daily", Some(day)).await;
        assert!(on_day <= 300_000, "{day}: paid {on_day} of a daily 300,000");
        let left = unspent("daily", day.to_string()).await;
        assert!(on_day >= 300_000 - left, "{day}: paid {on_day}, {left} unspent in chunks");
    }
    // Once a budget is used up, the next best campaign of the kind applies.
    for (exhausted, next) in [("promo", "coffee"), ("daily", "base")] {
        let next_best: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rewards WHERE explanation LIKE $1 \
             AND applied_campaigns @> jsonb_build_array(jsonb_build_object('campaign_id', $2::text))",
        )
        .bind(format!("%{exhausted} budget exhausted%"))
        .bind(next)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(next_best > 0, "{next} after {exhausted}");
    }

    // Raised to 3,000,000: the next transactions are paid from it at once.
    pipeline.put_rule(Rule::Campaign(promo(3_000_000))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later: Vec<Transaction> = mixed_log(10_000, 1_000, "h")
        .into_iter()
        .map(|mut transaction| {
            transaction.occurred_at += chrono::Duration::days(10);
            transaction
        })
        .collect();
    pipeline.produce(&later).await;
    Pipeline::wait_for_rows(&pool, 210_000, Duration::from_secs(120)).await;
    let raised = paid("promo", None).await;
    assert!(raised > total + 500_000, "{total} then {raised}");
    assert!(raised <= 3_000_000);
    for mut process in processes {
        process.kill().unwrap();
        process.wait().unwrap();
    }
}
