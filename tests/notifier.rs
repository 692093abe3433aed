//! The notifier against the real stack: a PostgreSQL ledger seeded with decisions, partners
//! and rules in etcd, the stack's SMTP capture server receiving the digests, and `cezbek`
//! processes that are killed, fenced off and restarted. Each test proves one promise: one
//! email per customer-day, one sender among replicas, unsubscribes honoured, totals that match
//! the ledger, backfills that send only what was not sent.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Jakarta;
use serde_json::Value;

use cezbek_ledger::{
    CustomerBatch, DigestStatus, Ledger, PostgresLedger, RewardRecord, StateWrite,
};
use cezbek_platform::config::{EtcdConfig, PostgresConfig};
use cezbek_platform::etcd;
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_rules::{Campaign, Partner, Rule};
use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Msisdn, Reward, RewardOutcome, TransactionId, TransactionKind,
};
use cezbek_testkit::fixtures::{at, base, customer, idr, partner, program, tier, toko};
use cezbek_testkit::{Running, TestContext, free_port, service_env};

const UNSUBSCRIBE_SECRET: &str = "notifier-test-unsubscribe-secret-0123456789";

fn msisdn(n: u32) -> Msisdn {
    customer("813", n)
}

/// Today in the partner's zone.
fn today() -> NaiveDate {
    Utc::now().with_timezone(&Jakarta).date_naive()
}

/// Noon of a Jakarta day, in UTC (noon: well inside the day whatever the test's start time).
fn noon(day: NaiveDate) -> DateTime<Utc> {
    Jakarta.from_local_datetime(&day.and_hms_opt(12, 0, 0).unwrap()).unwrap().with_timezone(&Utc)
}

/// One decision to seed: a rewarded purchase, or a refund that claws back.
struct Decided {
    id: String,
    at: DateTime<Utc>,
    amount: i64,
    cashback: i64,
    merchant: &'static str,
    refund_of: Option<String>,
}

fn purchase(id: &str, at: DateTime<Utc>, amount: i64, cashback: i64) -> Decided {
    Decided { id: id.into(), at, amount, cashback, merchant: "Kopi Kenangan", refund_of: None }
}

fn record(customer: u32, decided: &Decided) -> RewardRecord {
    let refund = decided.refund_of.is_some();
    RewardRecord {
        reward: Reward {
            partner: toko(),
            transaction_id: TransactionId::parse(&decided.id).unwrap(),
            kind: if refund { TransactionKind::Refund } else { TransactionKind::Purchase },
            original_transaction_id: decided
                .refund_of
                .as_deref()
                .map(|id| TransactionId::parse(id).unwrap()),
            msisdn: msisdn(customer),
            amount: decided.amount,
            currency: idr(),
            merchant: Some(decided.merchant.into()),
            outcome: if refund { RewardOutcome::Clawback } else { RewardOutcome::Rewarded },
            cashback: decided.cashback,
            tier_before: None,
            tier_after: None,
            applied_campaigns: if refund {
                Vec::new()
            } else {
                vec![AppliedCampaign {
                    campaign_id: "base".into(),
                    kind: CampaignKind::Base,
                    amount: decided.cashback,
                }]
            },
            exclusion_id: None,
            rules_revision: 7,
            explanation: format!("seeded {}", decided.id),
            occurred_at: decided.at,
            decided_at: decided.at,
        },
        mcc: None,
        quantity: 1,
        log_offset: None,
        local_day: decided.at.with_timezone(&Jakarta).date_naive(),
        content_hash: format!("hash-{}", decided.id),
        budget_limits: Vec::new(),
    }
}

/// TOKO (Asia/Jakarta, IDR) with a named base campaign and a tier program.
fn rules() -> Vec<Rule> {
    vec![
        Rule::Partner(Partner { name: "Toko Rewards".into(), ..partner() }),
        Rule::Campaign(Campaign {
            name: "Everyday 1%".into(),
            ends_at: at(2040, 1, 1, 0, 0),
            ..base("base", 100)
        }),
        Rule::Tiers(program(30, vec![tier("SILVER", Some(10), None, 11_000, 0)])),
    ]
}

struct Setup {
    context: TestContext,
    etcd: EtcdConfig,
    postgres: PostgresConfig,
    ledger: PostgresLedger,
    /// Every address of this test ends with it, so its mail is told apart from other tests'.
    domain: String,
}

impl Setup {
    async fn new(name: &str) -> Self {
        let context = TestContext::new(name);
        let etcd_config = context.etcd_config();
        let postgres = context.postgres_config().await;
        let ledger =
            PostgresLedger::new(cezbek_platform::postgres::connect(&postgres).await.unwrap());
        ledger.migrate().await.unwrap();
        let mut client = etcd::connect(&etcd_config).await.unwrap();
        for rule in rules() {
            client.put(rule.key().path(&etcd_config.prefix), rule.to_json(), None).await.unwrap();
        }
        let domain = format!("{}.test", context.id);
        Self { context, etcd: etcd_config, postgres, ledger, domain }
    }

    fn email(&self, customer: u32) -> String {
        format!("c{customer}@{}", self.domain)
    }

    /// A customer's decisions and state (with their email, or none).
    async fn seed(&self, customer: u32, decisions: &[Decided], email: Option<String>) {
        let batch = CustomerBatch {
            partner: toko(),
            msisdn: msisdn(customer),
            lease: self.lease().await,
            records: decisions.iter().map(|decided| record(customer, decided)).collect(),
            state: Some(StateWrite { tier: None, email }),
            budget_spends: Vec::new(),
        };
        self.ledger.apply(&[batch]).await.unwrap();
    }

    /// `count` customers from `first`, each with one purchase of `day` earning 10 + n.
    async fn seed_many(&self, first: u32, count: u32, day: NaiveDate) {
        let lease = self.lease().await;
        let batches: Vec<CustomerBatch> = (first..first + count)
            .map(|customer| {
                let decided =
                    purchase(&format!("m-{customer}"), noon(day), 50_000, 10 + i64::from(customer));
                CustomerBatch {
                    partner: toko(),
                    msisdn: msisdn(customer),
                    lease: lease.clone(),
                    records: vec![record(customer, &decided)],
                    state: Some(StateWrite { tier: None, email: Some(self.email(customer)) }),
                    budget_spends: Vec::new(),
                }
            })
            .collect();
        for chunk in batches.chunks(200) {
            self.ledger.apply(chunk).await.unwrap();
        }
    }

    /// A lease to write decisions under, as the rewarder holds one per partition.
    async fn lease(&self) -> cezbek_ledger::ShardLease {
        self.ledger.claim("cezbek.transactions.v1/0").await.unwrap()
    }

    /// The variables of a notifier process of this test.
    fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let stack = self.context.stack;
        let mut vars = service_env(None, &self.etcd, None, &self.postgres);
        vars.extend([
            ("CEZBEK_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET.to_owned()),
            ("CEZBEK_NOTIFIER_TRANSPORT", "smtp".to_owned()),
            ("CEZBEK_SMTP_ADDR", stack.var("CEZBEK_SMTP_ADDR")),
            ("CEZBEK_SMTP_TLS", "none".to_owned()),
            ("CEZBEK_NOTIFIER_FROM", "Toko Rewards <rewards@toko.example>".to_owned()),
            ("CEZBEK_NOTIFIER_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("CEZBEK_NOTIFIER_LEASE_TTL", "2s".to_owned()),
            ("CEZBEK_LOG", "info".to_owned()),
        ]);
        vars.extend(extra.iter().cloned());
        vars
    }

    fn command(&self, vars: &[(&'static str, String)], label: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(vars.iter().map(|(name, value)| (*name, value.as_str())));
        let log_path = self
            .context
            .stack
            .root
            .join(format!("var/log/test-notifier-{}-{label}.log", self.context.id));
        command.stderr(std::fs::File::create(log_path).unwrap());
        command
    }

    /// `cezbek notifier run --date DAY --partner TOKO`: its exit status and standard output.
    fn backfill(&self, day: NaiveDate, extra: &[(&'static str, String)]) -> (bool, String) {
        let vars = self.env(extra);
        let output = self
            .command(&vars, &format!("backfill-{day}"))
            .args(["notifier", "run", "--date", &day.to_string(), "--partner", "TOKO"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A notifier service process that sends today's digests at once.
    fn spawn_service(&self, label: &str, ops_port: u16) -> Running {
        let vars = self.env(&[
            ("CEZBEK_NOTIFIER_SEND_AT", "00:00".to_owned()),
            ("CEZBEK_NOTIFIER_CHECK_EVERY", "200ms".to_owned()),
            ("CEZBEK_NOTIFIER_MAX_PER_SECOND", "40".to_owned()),
            ("CEZBEK_NOTIFIER_LISTEN", format!("127.0.0.1:{ops_port}")),
        ]);
        Running(self.command(&vars, label).arg("notifier").stdout(Stdio::null()).spawn().unwrap())
    }

    /// This test's captured messages, oldest first.
    fn mail(&self) -> Vec<Value> {
        let json = self.context.stack.captured_mail(&format!("@{}", self.domain));
        serde_json::from_str::<Value>(&json).unwrap().as_array().cloned().unwrap_or_default()
    }

    async fn statuses(&self, day: NaiveDate) -> HashMap<Msisdn, DigestStatus> {
        self.ledger.digests(&toko(), day).await.unwrap().into_iter().collect()
    }

    /// Waits until `count` digests of `day` are marked sent.
    async fn wait_all_sent(&self, day: NaiveDate, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses(day).await;
            let sent = statuses.values().filter(|status| **status == DigestStatus::Sent).count();
            if sent == count {
                return;
            }
            assert!(Instant::now() < deadline, "only {sent} of {count} digests sent in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Messages per recipient.
fn per_recipient(mail: &[Value]) -> HashMap<String, Vec<&Value>> {
    let mut by: HashMap<String, Vec<&Value>> = HashMap::new();
    for message in mail {
        by.entry(message["to"].as_str().unwrap().to_owned()).or_default().push(message);
    }
    by
}

/// A counter or gauge from a process's `/metrics` (0 while it does not answer).
async fn metric(http: &reqwest::Client, port: u16, name: &str) -> f64 {
    let Ok(response) = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await else {
        return 0.0;
    };
    let body = response.text().await.unwrap_or_default();
    body.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_sends_only_what_was_not_sent_and_each_email_adds_up() {
    let setup = Setup::new("notifier backfill").await;
    let day = today().pred_opt().unwrap();
    let at = |hour: u32, minute: u32| {
        Jakarta
            .from_local_datetime(&day.and_hms_opt(hour, minute, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    // 1: two purchases; 2: a purchase refunded (nothing left); 3: no email; 4: mailed before;
    // 5: opted out; 6: one purchase; 7: earned only on another day.
    setup
        .seed(
            1,
            &[
                purchase("p-1a", at(9, 5), 150_000, 1_500),
                purchase("p-1b", at(18, 40), 250_000, 2_500),
            ],
            Some(setup.email(1)),
        )
        .await;
    let refund = Decided {
        id: "r-2".into(),
        at: at(11, 0),
        amount: 100_000,
        cashback: -1_000,
        merchant: "Kopi Kenangan",
        refund_of: Some("p-2".into()),
    };
    setup
        .seed(2, &[purchase("p-2", at(10, 0), 100_000, 1_000), refund], Some(setup.email(2)))
        .await;
    setup.seed(3, &[purchase("p-3", at(10, 0), 100_000, 1_000)], None).await;
    setup.seed(4, &[purchase("p-4", at(10, 0), 100_000, 1_000)], Some(setup.email(4))).await;
    assert_eq!(setup.ledger.digest_intent(&toko(), day, &msisdn(4)).await.unwrap(), None);
    setup.ledger.digest_sent(&toko(), day, &msisdn(4)).await.unwrap();
    setup.seed(5, &[purchase("p-5", at(10, 0), 100_000, 1_000)], Some(setup.email(5))).await;
    setup.ledger.set_opt_out(&toko(), &msisdn(5), true).await.unwrap();
    setup.seed(6, &[purchase("p-6", at(23, 59), 70_000, 700)], Some(setup.email(6))).await;
    setup.seed(7, &[purchase("p-7", noon(today()), 70_000, 700)], Some(setup.email(7))).await;

    // Pages of two records: customers 1 and 2 (two records each) straddle pages, and their
    // digests still add up their whole day.
    let (ok, stdout) = setup.backfill(day, &[("CEZBEK_NOTIFIER_DAY_PAGE", "2".to_owned())]);
    assert!(ok, "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!(
            "TOKO {day}: 6 customers: 2 sent, 4 skipped (already_sent 1, no_email 1, nothing_earned 1, opted_out 1), 0 failed"
        )
    );
    // Progress lines come while it sends (logged as each chunk of customers is done).
    let log = std::fs::read_to_string(
        setup
            .context
            .stack
            .root
            .join(format!("var/log/test-notifier-{}-backfill-{day}.log", setup.context.id)),
    )
    .unwrap();
    assert!(log.contains("digest progress") && log.contains("sent_per_second"), "{log}");
    let mail = setup.mail();
    let recipients: Vec<&str> = mail.iter().map(|m| m["to"].as_str().unwrap()).collect();
    let mut sorted = recipients.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![setup.email(1).as_str(), setup.email(6).as_str()]);

    // The total in the email is the ledger's, to the minor unit.
    let first = mail.iter().find(|m| m["to"] == setup.email(1)).unwrap();
    let ledger_total: i64 = setup
        .ledger
        .rewards_of_day(&toko(), day)
        .await
        .unwrap()
        .iter()
        .filter(|record| record.reward.msisdn == msisdn(1))
        .map(|record| record.reward.cashback)
        .sum();
    let total = cezbek_notifier::money_format::localized(ledger_total, idr());
    assert_eq!(total, "Rp 40,00");
    assert_eq!(first["subject"], format!("Toko Rewards: you earned {total} cashback on {day}"));
    let text = first["text"].as_str().unwrap();
    let html = first["html"].as_str().unwrap();
    assert!(text.contains(&format!("Total cashback today: {total}")), "{text}");
    assert!(html.contains(&format!("Total cashback today: {total}")), "{html}");
    // Each transaction: local time, merchant, amount, cashback, campaign name.
    assert!(
        text.contains(
            "09:05 WIB  Kopi Kenangan  purchase Rp 1.500,00  cashback Rp 15,00  (Everyday 1%)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "18:40 WIB  Kopi Kenangan  purchase Rp 2.500,00  cashback Rp 25,00  (Everyday 1%)"
        ),
        "{text}"
    );
    assert!(text.contains("You have no tier yet (2 purchases"), "{text}");
    assert!(text.contains("To reach SILVER: 8 more purchases"), "{text}");
    assert_eq!(first["from"], "Toko Rewards <rewards@toko.example>");

    // The unsubscribe link: in both parts and the headers, signed for this customer.
    let header = first["list_unsubscribe"].as_str().unwrap();
    let link = header.trim_start_matches('<').trim_end_matches('>');
    assert!(link.starts_with("http://127.0.0.1:8083/v1/unsubscribe?token="), "{link}");
    assert!(text.contains(link));
    assert_eq!(first["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    let token = link.split_once("token=").unwrap().1;
    let key = UnsubscribeKey::new(UNSUBSCRIBE_SECRET.as_bytes());
    assert_eq!(key.verify(token).unwrap(), (toko(), msisdn(1)));

    let statuses = setup.statuses(day).await;
    let mut sent: Vec<&Msisdn> = statuses
        .iter()
        .filter(|(_, status)| **status == DigestStatus::Sent)
        .map(|(m, _)| m)
        .collect();
    sent.sort();
    assert_eq!(sent, vec![&msisdn(1), &msisdn(4), &msisdn(6)]);

    // Again: nothing new goes out.
    let (ok, stdout) = setup.backfill(day, &[]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains(": 6 customers: 0 sent, 6 skipped (already_sent 3,"), "{stdout}");
    assert_eq!(setup.mail().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_link_followed_stops_the_next_digests() {
    let setup = Setup::new("notifier unsubscribe").await;
    let yesterday = today().pred_opt().unwrap();
    setup
        .seed(
            1,
            &[
                purchase("u-1", noon(yesterday), 100_000, 1_000),
                purchase("u-2", noon(today()), 100_000, 1_000),
            ],
            Some(setup.email(1)),
        )
        .await;

    // The informer serves the link.
    let informer_port = free_port();
    let informer = cezbek_informer::Config {
        http: cezbek_platform::config::HttpConfig::api(
            format!("127.0.0.1:{informer_port}").parse().unwrap(),
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        ),
        postgres: setup.postgres.clone(),
        etcd: setup.etcd.clone(),
        ledger: cezbek_ledger::LedgerChoice::Postgres,
        tokens: cezbek_platform::auth::AdminTokens::default(),
        unsubscribe: UnsubscribeKey::new(UNSUBSCRIBE_SECRET.as_bytes()),
        cursor_secret: Some("cursor".into()),
    };
    let shutdown = cezbek_platform::CancellationToken::new();
    tokio::spawn(cezbek_informer::run(informer, shutdown.clone()));
    let url = format!("http://127.0.0.1:{informer_port}/v1/unsubscribe");
    let extra = [("CEZBEK_NOTIFIER_UNSUBSCRIBE_URL", url.clone())];

    let (ok, stdout) = setup.backfill(yesterday, &extra);
    assert!(ok && stdout.contains("1 sent"), "{stdout}");
    let mail = setup.mail();
    assert_eq!(mail.len(), 1);
    let link = mail[0]["list_unsubscribe"].as_str().unwrap().trim_matches(['<', '>']).to_owned();
    assert!(link.starts_with(&url), "{link}");

    // What a mail client's one-click button does (RFC 8058).
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let response = http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await;
        match response {
            Ok(response) => break response.status().as_u16(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("the informer did not answer: {error}"),
        }
    };
    assert_eq!(status, 200);

    let (ok, stdout) = setup.backfill(today(), &extra);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("0 sent, 1 skipped (opted_out 1)"), "{stdout}");
    assert_eq!(setup.mail().len(), 1, "no digest after the unsubscribe");
    assert!(setup.statuses(today()).await.is_empty(), "a skipped customer leaves no intent");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_digest_per_customer_day_across_a_kill_and_restart() {
    const CUSTOMERS: u32 = 150;
    let setup = Setup::new("notifier kill").await;
    setup.seed_many(0, CUSTOMERS, today()).await;
    let http = reqwest::Client::new();

    let port = free_port();
    let mut first = setup.spawn_service("first", port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&http, port, "cezbek_notifier_digests_sent_total").await < 40.0 {
        assert!(Instant::now() < deadline, "the first notifier did not send 40 digests in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let sent_before = setup.mail().len();
    assert!(sent_before < CUSTOMERS as usize, "killed too late to prove anything");

    let mut second = setup.spawn_service("second", free_port());
    setup.wait_all_sent(today(), CUSTOMERS as usize, Duration::from_secs(60)).await;
    second.kill();

    let mail = setup.mail();
    let by = per_recipient(&mail);
    assert_eq!(by.len(), CUSTOMERS as usize, "every customer got a digest");
    let duplicated: Vec<(&String, &Vec<&Value>)> =
        by.iter().filter(|(_, messages)| messages.len() > 1).collect();
    // The one message in flight at the kill is the only possible duplicate, and it is
    // recognisable: the same Message-ID.
    assert!(
        duplicated.len() <= 1,
        "duplicates: {:?}",
        duplicated.iter().map(|(to, _)| to).collect::<Vec<_>>()
    );
    for (_, messages) in duplicated {
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["message_id"], messages[1]["message_id"]);
    }
}

/// After an outage of days, a leader still sends the digests of the days it missed (within the
/// catch-up horizon), and a customer whose address cannot be used costs only their own digest:
/// recorded as a failure with its reason, no intent written, the others sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_catches_up_on_missed_days_and_a_bad_address_costs_only_its_digest() {
    let setup = Setup::new("notifier catch-up").await;
    let days_ago = |days| today().checked_sub_days(chrono::Days::new(days)).unwrap();
    setup.seed_many(0, 4, days_ago(4)).await;
    setup.seed_many(10, 3, days_ago(3)).await;
    // A domain literal: an address by lettre's own check, but its message builder refuses it.
    let unusable = Some("c20@[127.0.0.1]".to_owned());
    setup.seed(20, &[purchase("bad-20", noon(days_ago(4)), 50_000, 500)], unusable).await;

    let port = free_port();
    let _service = setup.spawn_service("catch-up", port);
    setup.wait_all_sent(days_ago(4), 4, Duration::from_secs(60)).await;
    setup.wait_all_sent(days_ago(3), 3, Duration::from_secs(60)).await;
    assert!(
        !setup.statuses(days_ago(4)).await.contains_key(&msisdn(20)),
        "no intent is written for a message that could not be built"
    );
    let http = reqwest::Client::new();
    let unbuildable = "cezbek_notifier_digest_failures_total{kind=\"unbuildable\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, port, unbuildable).await < 1.0 {
        assert!(Instant::now() < deadline, "the unusable address was not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(per_recipient(&setup.mail()).len(), 7, "every usable customer got a digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_have_one_sender_and_a_lost_lease_stops_it_at_once() {
    const CUSTOMERS: u32 = 120;
    let setup = Setup::new("notifier leader").await;
    setup.seed_many(0, CUSTOMERS, today()).await;
    let http = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let replicas = [setup.spawn_service("a", ports[0]), setup.spawn_service("b", ports[1])];

    // Wait until one leads and has sent 20.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let mut leading = None;
        for (index, port) in ports.iter().enumerate() {
            if metric(&http, *port, "cezbek_notifier_digests_sent_total").await >= 20.0 {
                leading = Some(index);
            }
        }
        if let Some(index) = leading {
            break index;
        }
        assert!(Instant::now() < deadline, "no replica sent 20 digests in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let follower = 1 - leader;
    assert_eq!(metric(&http, ports[leader], "cezbek_notifier_leader").await, 1.0);
    assert_eq!(metric(&http, ports[follower], "cezbek_notifier_leader").await, 0.0);
    assert_eq!(metric(&http, ports[follower], "cezbek_notifier_digests_sent_total").await, 0.0);

    // An operator (or a partition) takes the leader's lease away.
    let election = cezbek_notifier::CoordinationNames::new(&setup.etcd.prefix).election;
    let mut client = etcd::connect(&setup.etcd).await.unwrap();
    let lease = client.leader(election.as_str()).await.unwrap().kv().unwrap().lease();
    client.lease_revoke(lease).await.unwrap();
    let sent_at_revoke = metric(&http, ports[leader], "cezbek_notifier_digests_sent_total").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_after = metric(&http, ports[leader], "cezbek_notifier_digests_sent_total").await;
    // At 40 a second it would have sent ~40 more; at most the one in hand may complete.
    assert!(
        sent_after <= sent_at_revoke + 1.0,
        "the old leader kept sending: {sent_at_revoke} → {sent_after}"
    );

    // Someone finishes the day (whoever wins the next election), and nobody got two.
    setup.wait_all_sent(today(), CUSTOMERS as usize, Duration::from_secs(60)).await;
    let total_sent = metric(&http, ports[0], "cezbek_notifier_digests_sent_total").await
        + metric(&http, ports[1], "cezbek_notifier_digests_sent_total").await;
    let mail = setup.mail();
    let by = per_recipient(&mail);
    assert_eq!(by.len(), CUSTOMERS as usize);
    let extra = mail.len() - CUSTOMERS as usize;
    assert!(extra <= 1, "{extra} duplicates");
    // The message in the old leader's hands when the lease went may have reached the relay
    // after it stopped counting: then it is the one duplicate, with the same Message-ID.
    let uncounted = mail.len() as f64 - total_sent;
    assert!((0.0..=1.0).contains(&uncounted), "{total_sent} counted, {} received", mail.len());
    for messages in by.values().filter(|messages| messages.len() > 1) {
        assert_eq!(messages[0]["message_id"], messages[1]["message_id"]);
    }
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_with_starttls_and_credentials_and_a_private_ca() {
    let setup = Setup::new("notifier starttls").await;
    let day = today().pred_opt().unwrap();
    setup.seed(1, &[purchase("t-1", noon(day), 100_000, 1_000)], Some(setup.email(1))).await;
    let stack = setup.context.stack;
    let relay = |password: &str, ca_file: Option<String>| {
        let mut vars = vec![
            ("CEZBEK_SMTP_ADDR", stack.var("CEZBEK_STACK_SMTP_STARTTLS_ADDR")),
            ("CEZBEK_SMTP_TLS", "starttls".to_owned()),
            ("CEZBEK_SMTP_USERNAME", stack.var("CEZBEK_STACK_SMTP_USERNAME")),
            ("CEZBEK_SMTP_PASSWORD", password.to_owned()),
        ];
        vars.extend(ca_file.map(|file| ("CEZBEK_SMTP_CA_FILE", file)));
        vars
    };
    let ca_file = stack.var("CEZBEK_STACK_SMTP_CA_FILE");
    let password = stack.var("CEZBEK_STACK_SMTP_PASSWORD");

    // The relay's certificate is signed by nobody the system trusts: no connection, no send.
    let (ok, stdout) = setup.backfill(day, &relay(&password, None));
    assert!(!ok, "{stdout}");
    assert_eq!(setup.mail().len(), 0);

    // Trusted, but the wrong password: the relay refuses, the digest stays pending.
    let (ok, stdout) = setup.backfill(day, &relay("not-the-password", Some(ca_file.clone())));
    assert!(!ok, "a refused digest fails the backfill: {stdout}");
    assert!(stdout.contains("0 sent, 0 skipped, 1 failed"), "{stdout}");
    assert_eq!(setup.statuses(day).await.get(&msisdn(1)), Some(&DigestStatus::Pending));

    // Right: the pending digest goes out over TLS.
    let (ok, stdout) = setup.backfill(day, &relay(&password, Some(ca_file)));
    assert!(ok, "{stdout}");
    assert!(stdout.contains("1 sent (1 resent after an interrupted run)"), "{stdout}");
    assert_eq!(setup.mail().len(), 1);
    assert_eq!(setup.statuses(day).await.get(&msisdn(1)), Some(&DigestStatus::Sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_transport_writes_one_eml_per_customer_day() {
    let setup = Setup::new("notifier files").await;
    let day = today().pred_opt().unwrap();
    setup.seed(1, &[purchase("f-1", noon(day), 100_000, 1_000)], Some(setup.email(1))).await;
    let outbox = setup.context.stack.root.join(format!("var/tmp/outbox-{}", setup.context.id));
    let (ok, stdout) = setup.backfill(
        day,
        &[
            ("CEZBEK_NOTIFIER_TRANSPORT", "file".to_owned()),
            ("CEZBEK_NOTIFIER_OUTBOX", outbox.display().to_string()),
        ],
    );
    assert!(ok && stdout.contains("1 sent"), "{stdout}");
    let folder = outbox.join("TOKO").join(day.to_string());
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{}.eml", msisdn(1))]);
    let eml = std::fs::read_to_string(folder.join(&names[0])).unwrap();
    assert!(eml.contains(&format!("To: {}", setup.email(1))), "{eml}");
    assert!(
        eml.contains(&format!("Subject: Toko Rewards: you earned Rp 10,00 cashback on {day}")),
        "{eml}"
    );
    assert!(eml.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{eml}");
    assert!(setup.mail().is_empty(), "nothing went to SMTP");
    std::fs::remove_dir_all(outbox).unwrap();
}
