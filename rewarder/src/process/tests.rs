//! The processor against the test kit's in-memory ledger (which passes the ledger's conformance
//! suite): every step of a batch, and the ways a batch goes wrong, without a database.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use prometheus::{IntCounterVec, Opts};

use cezbek_ledger::Ledger;
use cezbek_rules::{Replay, RuleSnapshot};
use cezbek_schemas::{RewardOutcome, Transaction, encode};
use cezbek_testkit::MemoryLedger;
use cezbek_testkit::fixtures::{mixed_log, pipeline_rules, snapshot};

use super::{Incoming, Outcome, ProcessMetrics, Processor, Shard};
use crate::assignment::Assignment;

const PARTITION: i32 = 3;

fn rules() -> RuleSnapshot {
    snapshot(pipeline_rules(), 7)
}

fn messages(log: &[Transaction], first_offset: i64) -> Vec<Incoming> {
    log.iter()
        .zip(first_offset..)
        .map(|(transaction, offset)| Incoming {
            partition: PARTITION,
            offset,
            key: Some(transaction.key().into_bytes()),
            payload: Some(encode(transaction).unwrap()),
        })
        .collect()
}

struct Setup {
    ledger: Arc<MemoryLedger>,
    assignment: Assignment,
    events: IntCounterVec,
}

impl Setup {
    fn new() -> Self {
        Self {
            ledger: Arc::new(MemoryLedger::new()),
            assignment: Assignment::of(&[PARTITION]),
            events: IntCounterVec::new(Opts::new("events", "events"), &["event"]).unwrap(),
        }
    }

    fn processor(&self, cache_limit: usize) -> Processor<MemoryLedger> {
        Processor::new(
            Arc::clone(&self.ledger),
            ProcessMetrics { events: self.events.clone() },
            Shard { topic: "transactions".into(), partition: PARTITION },
            self.assignment.clone(),
            cache_limit,
        )
    }

    fn count(&self, event: &str) -> u64 {
        self.events.with_label_values(&[event]).get()
    }

    /// The ledger's decisions as (id, outcome, cashback, tier after).
    fn decided(&self) -> Vec<(String, RewardOutcome, i64, Option<String>)> {
        let mut decided: Vec<_> = self
            .ledger
            .records()
            .into_iter()
            .map(|r| {
                let reward = r.reward;
                (
                    reward.transaction_id.to_string(),
                    reward.outcome,
                    reward.cashback,
                    reward.tier_after,
                )
            })
            .collect();
        decided.sort_by(|a, b| a.0.cmp(&b.0));
        decided
    }
}

/// What the engine decides with every customer's whole history in view.
fn replayed(
    log: &[Transaction],
    rules: &RuleSnapshot,
) -> Vec<(String, RewardOutcome, i64, Option<String>)> {
    let mut replay = Replay::default();
    let mut decided: Vec<_> = log
        .iter()
        .map(|transaction| {
            let decision = replay.decide(transaction, rules).decision;
            (
                transaction.transaction_id.to_string(),
                decision.outcome,
                decision.cashback,
                decision.tier_after,
            )
        })
        .collect();
    decided.sort_by(|a, b| a.0.cmp(&b.0));
    decided
}

fn reasons(outcome: &Outcome) -> Vec<(&'static str, i64)> {
    outcome.dead_letters.iter().map(|dead| (dead.reason, dead.message.offset)).collect()
}

#[tokio::test]
async fn batches_decide_what_the_engine_decides_with_the_whole_history_in_view() {
    let rules = rules();
    let log = mixed_log(400, 9, "m");
    let all = messages(&log, 100);
    for cache_limit in [1, 4, 1_000] {
        let setup = Setup::new();
        let mut processor = setup.processor(cache_limit);
        for chunk in all.chunks(37) {
            let outcome = processor.process(chunk, &rules).await.unwrap();
            assert!(outcome.dead_letters.is_empty(), "{:?}", outcome.dead_letters);
            assert_eq!(outcome.rewards.len(), chunk.len());
            assert_eq!(outcome.next_offset, Some(chunk.last().unwrap().offset + 1));
            assert!(processor.cached_customers() <= cache_limit);
        }
        assert_eq!(setup.decided(), replayed(&log, &rules), "cache limit {cache_limit}");
        assert_eq!(setup.count("consumed"), 400);
    }
}

#[tokio::test]
async fn a_redelivered_batch_re_emits_the_stored_rewards_and_writes_nothing() {
    let (setup, rules) = (Setup::new(), rules());
    let batch = messages(&mixed_log(40, 4, "r"), 0);
    let first = setup.processor(100).process(&batch, &rules).await.unwrap();
    let writes = setup.ledger.writes();
    // A new processor, as after a restart: it knows nothing but the ledger.
    let again = setup.processor(100).process(&batch, &rules).await.unwrap();
    assert_eq!(setup.ledger.writes(), writes + 1, "one write, of nothing new");
    assert_eq!(setup.ledger.records().len(), 40);
    let ids = |outcome: &Outcome| {
        let mut ids: Vec<String> = outcome
            .rewards
            .iter()
            .map(|r| format!("{} {}", r.transaction_id, r.cashback))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&first), "the same rewards, as stored");
    assert_eq!(setup.count("duplicates"), 40);
}

#[tokio::test]
async fn poison_and_conflicts_are_dead_lettered_and_the_rest_is_written() {
    let (setup, rules) = (Setup::new(), rules());
    let log = mixed_log(6, 2, "p");
    let mut batch = messages(&log, 0);
    setup.processor(100).process(&batch[..2], &rules).await.unwrap();
    // The same id with other content: a conflict, the first one stands.
    let mut conflicting = log[0].clone();
    conflicting.amount += 1;
    batch[0].payload = Some(encode(&conflicting).unwrap());
    // Not a transaction at all, and a transaction keyed by another customer.
    batch[2].payload = Some(b"not avro".to_vec());
    batch[3].key = Some(b"TOKO:+6281100000099".to_vec());
    let outcome = setup.processor(100).process(&batch, &rules).await.unwrap();
    assert_eq!(reasons(&outcome), vec![("undecodable", 2), ("invalid", 3), ("conflict", 0)]);
    assert_eq!(outcome.next_offset, Some(6));
    let stored = setup.ledger.reward(&log[0].partner, &log[0].transaction_id).await.unwrap();
    assert_eq!(stored.unwrap().reward.amount, log[0].amount, "the first one stands");
    let written: Vec<String> = setup.decided().into_iter().map(|(id, ..)| id).collect();
    assert_eq!(written, vec!["p0", "p1", "p4", "p5"]);
    assert_eq!((setup.count("conflicts"), setup.count("duplicates")), (1, 1));
}

#[tokio::test]
async fn a_revoked_partition_leaves_its_batch_undecided_and_uncommitted() {
    let (setup, rules) = (Setup::new(), rules());
    let batch = messages(&mixed_log(10, 2, "v"), 0);
    let mut processor = setup.processor(100);
    setup.assignment.revoke(&[PARTITION]);
    let outcome = processor.process(&batch, &rules).await.unwrap();
    assert!(outcome.rewards.is_empty() && outcome.dead_letters.is_empty());
    assert_eq!(outcome.next_offset, None, "nothing of it may be committed");
    assert!(setup.ledger.records().is_empty());
}

#[tokio::test]
async fn a_claim_elsewhere_is_taken_back_while_the_partition_is_still_ours() {
    let (setup, rules) = (Setup::new(), rules());
    let log = mixed_log(20, 3, "f");
    let batch = messages(&log, 0);
    let mut processor = setup.processor(100);
    processor.process(&batch[..10], &rules).await.unwrap();
    // Another instance claims the shard (a rebalance it is about to lose).
    setup.ledger.claim("transactions/3").await.unwrap();
    let outcome = processor.process(&batch[10..], &rules).await.unwrap();
    assert_eq!(outcome.next_offset, Some(20));
    assert_eq!(setup.decided(), replayed(&log, &rules));
}

#[tokio::test]
async fn a_claim_elsewhere_after_a_revocation_abandons_the_batch() {
    let (setup, rules) = (Setup::new(), rules());
    let batch = messages(&mixed_log(20, 3, "g"), 0);
    let mut processor = setup.processor(100);
    processor.process(&batch[..10], &rules).await.unwrap();
    // The new owner claims the shard; this instance learns of the revocation meanwhile.
    setup.ledger.claim("transactions/3").await.unwrap();
    setup.assignment.revoke(&[PARTITION]);
    let outcome = processor.process(&batch[10..], &rules).await.unwrap();
    assert_eq!(outcome.next_offset, None);
    assert_eq!(setup.ledger.records().len(), 10);
}

#[tokio::test]
async fn a_ledger_outage_fails_the_batch_and_the_retry_writes_it_exactly_once() {
    let (setup, rules) = (Setup::new(), rules());
    let log = mixed_log(30, 4, "o");
    let batch = messages(&log, 0);
    let mut processor = setup.processor(100);
    setup.ledger.fail_next_writes(1);
    let error = processor.process(&batch, &rules).await.unwrap_err();
    assert!(!error.is_permanent(), "{error}");
    let outcome = processor.process(&batch, &rules).await.unwrap();
    assert_eq!(outcome.rewards.len(), 30);
    assert_eq!(setup.decided(), replayed(&log, &rules));
}

#[tokio::test]
async fn a_message_of_another_partition_is_refused() {
    let (setup, rules) = (Setup::new(), rules());
    let mut batch = messages(&mixed_log(2, 1, "x"), 0);
    batch[1].partition = PARTITION + 1;
    let error = setup.processor(100).process(&batch, &rules).await.unwrap_err();
    assert!(error.to_string().contains("partition 4"), "{error}");
    assert!(setup.ledger.records().is_empty());
}

/// Two shards spending one budget: the campaign pays at most its budget in all, and at least
/// its budget less what sits unspent in the shards' chunks; once it is used up the next best
/// campaign applies, and a raised budget pays again at once.
#[tokio::test]
async fn a_budget_is_a_hard_stop_across_shards_and_a_raised_one_applies_at_once() {
    use cezbek_ledger::budget::{BudgetKey, BudgetScope};
    use cezbek_rules::{Campaign, Rule};
    use cezbek_testkit::fixtures::{base, partner};

    let with_budget = |budget: i64, revision: i64| {
        let rich =
            Campaign { budget: Some(budget), budget_per_day: Some(1_000_000), ..base("rich", 500) };
        snapshot(
            vec![
                Rule::Partner(partner()),
                Rule::Campaign(rich),
                Rule::Campaign(base("plain", 100)),
            ],
            revision,
        )
    };
    let ledger = Arc::new(MemoryLedger::new());
    let events = IntCounterVec::new(Opts::new("events", "events"), &["event"]).unwrap();
    let assignment = Assignment::of(&[3, 4]);
    let mut processors: Vec<Processor<MemoryLedger>> = [3, 4]
        .into_iter()
        .map(|partition| {
            Processor::new(
                Arc::clone(&ledger),
                ProcessMetrics { events: events.clone() },
                Shard { topic: "transactions".into(), partition },
                assignment.clone(),
                1_000,
            )
        })
        .collect();
    let log = mixed_log(1_200, 40, "b");
    let on = |partition: i32, messages: Vec<Incoming>| -> Vec<Incoming> {
        messages.into_iter().map(|message| Incoming { partition, ..message }).collect()
    };
    let paid_by_rich = || -> i64 {
        ledger
            .records()
            .iter()
            .flat_map(|record| &record.reward.applied_campaigns)
            .filter(|applied| applied.campaign_id == "rich")
            .map(|applied| applied.amount)
            .sum()
    };
    let outstanding = || async {
        let mut unspent = 0;
        for partition in [3, 4] {
            let lease = cezbek_ledger::ShardLease {
                shard: format!("transactions/{partition}").into(),
                epoch: 1,
            };
            for chunk in ledger.budget_chunks(&lease).await.unwrap() {
                if chunk.key.scope == BudgetScope::Total {
                    unspent += chunk.left();
                }
            }
        }
        unspent
    };

    // The first 800 transactions, alternating between the two shards, under a budget of 30,000.
    let rules = with_budget(30_000, 7);
    for (index, chunk) in messages(&log[..800], 0).chunks(50).enumerate() {
        let partition = [3, 4][index % 2];
        let processor = &mut processors[index % 2];
        let outcome = processor.process(&on(partition, chunk.to_vec()), &rules).await.unwrap();
        assert!(outcome.dead_letters.is_empty(), "{:?}", outcome.dead_letters);
    }
    let paid = paid_by_rich();
    let unspent = outstanding().await;
    assert!(paid <= 30_000, "paid {paid}");
    assert!(paid >= 30_000 - unspent, "paid {paid}, {unspent} unspent in chunks");
    let exhausted = ledger
        .records()
        .into_iter()
        .filter(|record| record.reward.explanation.contains("rich budget exhausted"))
        .collect::<Vec<_>>();
    assert!(!exhausted.is_empty(), "the budget ran out before the 800th transaction");
    for record in &exhausted {
        assert_eq!(record.budget_limits[0].allowed, 0);
        if record.reward.cashback > 0 {
            assert_eq!(record.reward.applied_campaigns[0].campaign_id, "plain");
        }
    }
    let key = BudgetKey {
        partner: partner().code,
        campaign_id: "rich".into(),
        scope: BudgetScope::Total,
    };
    let usage = ledger.budget_usage(&key.partner).await.unwrap();
    assert_eq!(usage[0].spent, paid, "what the chunks say was spent is what was paid");

    // Raised to 45,000: the next transactions are paid from it again, never past it.
    let rules = with_budget(45_000, 8);
    for (index, chunk) in messages(&log[800..], 800).chunks(50).enumerate() {
        let partition = [3, 4][index % 2];
        let outcome =
            processors[index % 2].process(&on(partition, chunk.to_vec()), &rules).await.unwrap();
        assert!(outcome.dead_letters.is_empty());
    }
    let paid_after = paid_by_rich();
    assert!(paid_after > paid + 5_000, "{paid} then {paid_after}");
    assert!(paid_after <= 45_000);
    // 400 more transactions want far more than 15,000: the raised budget is used up too.
    assert!(paid_after >= 45_000 - outstanding().await, "{paid_after}");
}
