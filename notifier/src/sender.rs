//! One partner-day run: every customer who earned that day gets one digest.
//!
//! Exactly once per (partner, customer, day): the intent is recorded in the ledger before the
//! message is handed over, and the completion after. A run that finds a completed digest skips
//! it; one that finds a pending digest (a run was interrupted between the two writes) sends it
//! again. So the only possible duplicate is the one message in flight when a sender died after
//! the relay accepted it and before the completion was written; it carries the same
//! `Message-ID` as the first, so mail systems that deduplicate drop it. Two runs never work on
//! the same partner-day at once: each holds the partner-day's etcd lock (see `coordination`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use cezbek_ledger::{
    AnyLedger, CustomerState, DayCursor, DigestStatus, Ledger, LedgerError, RewardRecord,
};
use cezbek_platform::CancellationToken;
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_rules::PartnerRules;
use cezbek_schemas::{Msisdn, PartnerCode};

use crate::coordination::CoordinationError;
use crate::digest::{self, CustomerDay, Digest, SkipReason};
use crate::metrics::Metrics;
use crate::templates::{Rendered, TemplateError, TemplateSource, Templates};
use crate::transport::{Transport, TransportError};

/// Customer states are read in chunks of this many.
const STATE_CHUNK: usize = 500;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Customers with any decision that day.
    pub customers: u64,
    pub sent: u64,
    /// Of `sent`: pending from an interrupted run, sent again.
    pub resent: u64,
    /// By reason (`SkipReason::as_str`).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Refused by the relay; left pending, so a later run tries again.
    pub failed: u64,
    /// Customers whose message could not be built or addressed (an address the mail library
    /// refuses, a template that fails on their data), with the reason. Nothing was recorded
    /// as intended for them, so a later run (after their address changed) tries again; the
    /// others' digests go out regardless.
    pub unbuildable: Vec<Unbuildable>,
}

/// A customer whose digest could not be built, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unbuildable {
    pub msisdn: Msisdn,
    pub reason: String,
}

impl RunReport {
    fn skip(&mut self, reason: SkipReason, metrics: &Metrics) {
        *self.skipped.entry(reason.as_str()).or_default() += 1;
        metrics.skipped.with_label_values(&[reason.as_str()]).inc();
    }
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} customers: {} sent", self.customers, self.sent)?;
        if self.resent > 0 {
            write!(f, " ({} resent after an interrupted run)", self.resent)?;
        }
        let skipped: u64 = self.skipped.values().sum();
        write!(f, ", {skipped} skipped")?;
        if skipped > 0 {
            let reasons: Vec<String> =
                self.skipped.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        write!(f, ", {} failed", self.failed)?;
        if !self.unbuildable.is_empty() {
            let who: Vec<String> = self
                .unbuildable
                .iter()
                .map(|failure| format!("{}: {}", failure.msisdn, failure.reason))
                .collect();
            write!(f, ", {} not built ({})", self.unbuildable.len(), who.join("; "))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the etcd lease was lost; stopped sending")]
    Lost,
    #[error("stopping")]
    Stopped,
}

impl From<CoordinationError> for RunError {
    fn from(error: CoordinationError) -> Self {
        match error {
            CoordinationError::Etcd(error) => Self::Etcd(error),
            CoordinationError::Lost => Self::Lost,
            CoordinationError::Stopped => Self::Stopped,
        }
    }
}

/// One partner-day run under way: what it works on and what it did so far.
struct DayRun<'a> {
    partner: &'a PartnerCode,
    day: NaiveDate,
    rules: Option<&'a PartnerRules>,
    templates: &'a Templates,
    done: &'a HashMap<Msisdn, DigestStatus>,
    fence: &'a CancellationToken,
    shutdown: &'a CancellationToken,
    report: RunReport,
    /// Sending is paced: the next message waits for this instant.
    next_slot: Instant,
    interval: Duration,
}

/// Everything a run needs besides the partner-day.
#[derive(Debug)]
pub struct Sender {
    pub ledger: Arc<AnyLedger>,
    pub transport: Transport,
    pub templates: TemplateSource,
    pub from: Mailbox,
    pub unsubscribe: UnsubscribeKey,
    /// The informer's `/v1/unsubscribe`; the token goes in its query.
    pub unsubscribe_url: url::Url,
    /// At most this many messages a second (relays such as SES enforce a send rate).
    pub max_per_second: u32,
    /// Records read per page of a partner-day.
    pub day_page: u32,
    pub metrics: Metrics,
}

impl Sender {
    /// Sends the digests of `partner`'s `day`. Stops before the next message when `shutdown`
    /// fires, and abandons even the one in flight when `fence` (the lease) does.
    ///
    /// The day is read a page at a time, ordered by customer, and sent a chunk of customers at
    /// a time: a partner's busiest day is never held whole. A page may end inside a customer's
    /// records; that customer waits for the next page.
    pub async fn run_day(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        rules: Option<&PartnerRules>,
        fence: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<RunReport, RunError> {
        let templates = self.templates.load(partner)?;
        let done: HashMap<Msisdn, DigestStatus> =
            self.ledger.digests(partner, day).await?.into_iter().collect();
        let mut run = DayRun {
            partner,
            day,
            rules,
            templates: &templates,
            done: &done,
            fence,
            shutdown,
            report: RunReport::default(),
            next_slot: Instant::now(),
            interval: Duration::from_secs(1) / self.max_per_second.max(1),
        };
        let page_size = self.day_page.max(1);
        let started = Instant::now();
        let mut after: Option<DayCursor> = None;
        let mut customers: Vec<(Msisdn, Vec<RewardRecord>)> = Vec::new();
        loop {
            let page =
                self.ledger.rewards_of_day_page(partner, day, after.as_ref(), page_size).await?;
            let last_page = page.len() < page_size as usize;
            after = page.last().map(DayCursor::after);
            for record in page {
                match customers.last_mut() {
                    Some((msisdn, records)) if *msisdn == record.reward.msisdn => {
                        records.push(record);
                    }
                    _ => customers.push((record.reward.msisdn.clone(), vec![record])),
                }
            }
            // Every customer but the last is complete; on the last page, all are.
            let complete =
                if last_page { customers.len() } else { customers.len().saturating_sub(1) };
            if complete >= STATE_CHUNK || last_page {
                let waiting = customers.split_off(complete);
                self.send_chunk(&mut run, &customers).await?;
                customers = waiting;
                // A day of many customers takes a while at the relay's pace: a line per chunk
                // says how far it is (`cezbek notifier run` shows these as it sends).
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                tracing::info!(
                    %partner,
                    %day,
                    report = %run.report,
                    sent_per_second = (run.report.sent as f64 / seconds * 10.0).round() / 10.0,
                    "digest progress"
                );
            }
            if last_page {
                return Ok(run.report);
            }
        }
    }

    /// Sends the digests of some complete customers of the day.
    async fn send_chunk(
        &self,
        run: &mut DayRun<'_>,
        customers: &[(Msisdn, Vec<RewardRecord>)],
    ) -> Result<(), RunError> {
        let (partner, day, rules) = (run.partner, run.day, run.rules);
        run.report.customers += customers.len() as u64;
        let mut candidates = Vec::new();
        for (msisdn, records) in customers {
            let customer = CustomerDay { partner, msisdn, day, records };
            if run.done.get(msisdn) == Some(&DigestStatus::Sent) {
                run.report.skip(SkipReason::AlreadySent, &self.metrics);
            } else if customer.net_cashback() <= 0 {
                run.report.skip(SkipReason::NothingEarned, &self.metrics);
            } else {
                candidates.push(customer);
            }
        }
        let states = self.states(partner, &candidates, rules).await?;
        for customer in &candidates {
            if run.fence.is_cancelled() {
                return Err(RunError::Lost);
            }
            if run.shutdown.is_cancelled() {
                return Err(RunError::Stopped);
            }
            let state = states.get(customer.msisdn);
            if let Some(reason) = digest::skip_reason(customer, state) {
                run.report.skip(reason, &self.metrics);
                continue;
            }
            // Built before the intent is written: a message that cannot be built is this
            // customer's failure, recorded with its reason, and the run goes on.
            let email = state.and_then(|state| state.email.as_deref()).unwrap_or_default();
            let unsubscribe_url = self.unsubscribe_link(partner, customer.msisdn);
            let digest = digest::build(customer, email, state, rules, unsubscribe_url, Utc::now());
            let built = run
                .templates
                .render(&digest)
                .map_err(|error| error.to_string())
                .and_then(|rendered| self.message(&digest, &rendered));
            let message = match built {
                Ok(message) => message,
                Err(reason) => {
                    self.metrics.failures.with_label_values(&["unbuildable"]).inc();
                    tracing::warn!(%partner, %day, msisdn = %customer.msisdn, reason, "cannot build this customer's digest; going on with the others");
                    run.report
                        .unbuildable
                        .push(Unbuildable { msisdn: customer.msisdn.clone(), reason });
                    continue;
                }
            };
            let resending = match self.ledger.digest_intent(partner, day, customer.msisdn).await? {
                Some(DigestStatus::Sent) => {
                    run.report.skip(SkipReason::AlreadySent, &self.metrics);
                    continue;
                }
                Some(DigestStatus::Pending) => true,
                None => false,
            };

            tokio::time::sleep_until(run.next_slot).await;
            run.next_slot = Instant::now().max(run.next_slot) + run.interval;
            let sent = tokio::select! {
                () = run.fence.cancelled() => return Err(RunError::Lost),
                sent = self.transport.send(&message, partner, day, customer.msisdn) => sent,
            };
            match sent {
                Ok(()) => {
                    self.ledger.digest_sent(partner, day, customer.msisdn).await?;
                    run.report.sent += 1;
                    self.metrics.sent.inc();
                    if resending {
                        run.report.resent += 1;
                        self.metrics.resent.inc();
                        tracing::info!(%partner, %day, msisdn = %customer.msisdn, "sent a digest an interrupted run had left pending");
                    }
                }
                Err(error) if error.is_permanent() => {
                    // Left pending: a later run (the closing pass, a backfill) tries again.
                    run.report.failed += 1;
                    self.metrics.failures.with_label_values(&["permanent"]).inc();
                    tracing::warn!(%partner, %day, msisdn = %customer.msisdn, %error, "a digest was refused");
                }
                Err(error) => {
                    self.metrics.failures.with_label_values(&["transient"]).inc();
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    /// The candidates' stored states, with the tier window (rebuilt from their decisions)
    /// where the partner runs a tier program.
    async fn states(
        &self,
        partner: &PartnerCode,
        candidates: &[CustomerDay<'_>],
        rules: Option<&PartnerRules>,
    ) -> Result<HashMap<Msisdn, CustomerState>, LedgerError> {
        let mut states = HashMap::with_capacity(candidates.len());
        let window_since = rules.and_then(PartnerRules::tiers).and_then(|program| {
            Utc::now().checked_sub_days(chrono::Days::new(u64::from(program.window_days)))
        });
        for chunk in candidates.chunks(STATE_CHUNK) {
            let msisdns: Vec<Msisdn> =
                chunk.iter().map(|customer| customer.msisdn.clone()).collect();
            for mut state in self.ledger.customer_states(partner, &msisdns).await? {
                let Some(msisdn) = state.msisdn.clone() else { continue };
                if let Some(since) = window_since {
                    state.window = self.ledger.customer_window(partner, &msisdn, since).await?;
                }
                states.insert(msisdn, state);
            }
        }
        Ok(states)
    }

    fn unsubscribe_link(&self, partner: &PartnerCode, msisdn: &Msisdn) -> String {
        let mut url = self.unsubscribe_url.clone();
        url.query_pairs_mut().append_pair("token", &self.unsubscribe.token(partner, msisdn));
        url.to_string()
    }

    /// The message of one digest, or why it cannot be built.
    fn message(&self, digest: &Digest, rendered: &Rendered) -> Result<Message, String> {
        let to: Mailbox = digest
            .email
            .trim()
            .parse()
            .map_err(|error| format!("email {:?}: {error}", digest.email))?;
        // The same id for the same customer-day, so the one possible duplicate is recognisable.
        let fingerprint =
            Sha256::digest(format!("{}|{}|{}", digest.partner.code, digest.day, digest.msisdn));
        let message_id = format!(
            "<digest.{}.{}.{}@{}>",
            digest.partner.code,
            digest.day,
            &hex::encode(fingerprint)[..24],
            self.from.email.domain()
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(message_id))
            // RFC 2369 and RFC 8058: mail clients show an unsubscribe button that POSTs here.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{}>", digest.unsubscribe_url),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .map_err(|error| error.to_string())
    }
}
