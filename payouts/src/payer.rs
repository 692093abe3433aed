//! The payer: releases held cashback when its hold is over, reserves each due customer's
//! payout of the partner-local day, and drives every payout to its end through the cheapest
//! eligible provider.
//!
//! Driving a payout is one step at a time, each step recorded before the next call:
//! - no live attempt: route, record the attempt (with its idempotency key and the fees it was
//!   chosen over) and only then call the provider;
//! - an attempt whose create call has no known answer: the same call again, same key (the
//!   provider creates at most one payout per key; a 409 leads to a lookup);
//! - an accepted attempt: a status query, until it finished;
//! - a definitive failure (refused on create, or FAILED): the next cheapest provider, never
//!   while any attempt's outcome is unknown;
//! - a succeeded payout a callback named again: a status query, which may find it REVERSED.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use cezbek_platform::CancellationToken;
use cezbek_rules::{FeeBearer, PartnerStatus, PayoutPolicy, RuleSnapshot};
use cezbek_schemas::{Currency, PartnerCode};

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::payout::{Answered, Limits, Payout, PayoutError, PayoutState, Reservation};
use crate::providers::{Inquiry, Looked, PayoutRequest, Provider, ProviderStatus, Submitted};
use crate::registry::Registry;
use crate::routing::{Floats, Health, Need, route};
use crate::work::{Attempt, AttemptState, Claimed};

#[derive(Debug, Clone)]
pub struct PayerSettings {
    /// This replica's name in claims.
    pub owner: String,
    /// How long a claim holds; longer than any provider call.
    pub lease: Duration,
    /// How often due payouts are claimed.
    pub tick: Duration,
    /// How often releases and reservations are looked for.
    pub scan_every: Duration,
    /// An accepted payout is asked about this often (callbacks bring it forward).
    pub poll_every: Duration,
    /// After an unknown outcome, the next try.
    pub retry_after: Duration,
    /// Payouts driven at once.
    pub concurrency: usize,
    /// Reservations made per partner per scan.
    pub reserve_batch: i64,
    /// A payout unfinished this long after it was reserved counts as stuck (metric).
    pub stuck_after: Duration,
}

/// Customers reserved in one transaction.
const RESERVED_TOGETHER: usize = 200;

/// What a step leaves to do.
enum Next {
    Done,
    After(Duration),
    /// The step ended the claim itself, with its last write.
    Released,
}

struct Inner {
    journal: Journal,
    providers: Registry,
    health: Health,
    floats: Floats,
    http: reqwest::Client,
    settings: PayerSettings,
    rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    metrics: Metrics,
}

#[derive(Clone)]
pub struct Payer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payer").field("owner", &self.inner.settings.owner).finish_non_exhaustive()
    }
}

/// The currency's whole unit in minor units (wallets take whole units).
pub fn whole_unit(currency: Currency) -> i64 {
    10i64.pow(u32::from(currency.exponent()))
}

impl Payer {
    pub fn new(
        journal: Journal,
        providers: Registry,
        settings: PayerSettings,
        rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
        metrics: Metrics,
    ) -> Self {
        let inner = Inner {
            journal,
            providers,
            health: Health::default(),
            floats: Floats::default(),
            http: reqwest::Client::new(),
            settings,
            rules,
            metrics,
        };
        Self { inner: Arc::new(inner) }
    }

    /// The providers usable now.
    pub fn providers(&self) -> Arc<Vec<Provider>> {
        self.inner.providers.current()
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Runs until `shutdown`; payouts being driven then finish their step (bounded by the
    /// providers' timeouts) before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = self.inner.settings.clone();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let mut driving = JoinSet::new();
        // Releasing and reserving run beside the driving, which never waits for a scan.
        let scanner = tokio::spawn(self.clone().scan_until(shutdown.clone()));
        while !shutdown.is_cancelled() {
            let free = permits.available_permits();
            if free > 0 {
                let limit = i64::try_from(free).unwrap_or(i64::MAX);
                match self.inner.journal.claim_due(&settings.owner, settings.lease, limit).await {
                    Ok(claimed) => {
                        for claimed in claimed {
                            let Ok(permit) = permits.clone().acquire_owned().await else { break };
                            let payer = self.clone();
                            driving.spawn(async move {
                                payer.drive(claimed).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "claiming due payouts failed; retrying"),
                }
            }
            while driving.try_join_next().is_some() {}
            let busy = permits.available_permits() == 0;
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(settings.tick), if !busy => {}
                _ = driving.join_next(), if busy => {}
            }
        }
        while driving.join_next().await.is_some() {}
        let _ = scanner.await;
    }

    async fn scan_until(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.scan().await {
                tracing::warn!(%error, "releasing and reserving payouts failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.inner.settings.scan_every) => {}
            }
        }
    }

    /// Releases cashback whose hold is over and reserves the payouts due now, per partner
    /// with a payout policy.
    async fn scan(&self) -> Result<(), PayoutError> {
        let Some(snapshot) = self.inner.rules.borrow().clone() else { return Ok(()) };
        let now = Utc::now();
        let mut currencies: Vec<Currency> = snapshot
            .partners()
            .filter_map(|rules| rules.partner())
            .filter(|partner| partner.payout_policy.is_some())
            .map(|partner| partner.currency)
            .collect();
        currencies.sort_unstable();
        currencies.dedup();
        self.read_floats(&currencies).await;
        for rules in snapshot.partners() {
            let Some(partner) = rules.partner() else { continue };
            let Some(policy) = &partner.payout_policy else { continue };
            let hold = chrono::Duration::days(i64::from(policy.hold_days));
            loop {
                let releases =
                    self.inner.journal.due_releases(&partner.code, now - hold, 1_000).await?;
                self.inner.journal.post(&releases).await?;
                if releases.len() < 1_000 {
                    break;
                }
            }
            if partner.status != PartnerStatus::Active {
                continue;
            }
            let local = now.with_timezone(&rules.time_zone());
            if local.time() < policy.pay_at() {
                continue;
            }
            self.reserve_due(&partner.code, partner.currency, policy, local.date_naive()).await?;
        }
        let stuck = self.inner.journal.stuck(self.inner.settings.stuck_after).await?;
        self.inner.metrics.stuck.set(stuck);
        Ok(())
    }

    /// Asks each enabled provider for its float in each currency paid out.
    async fn read_floats(&self, currencies: &[Currency]) {
        let inner = &self.inner;
        let providers = inner.providers.current();
        for provider in providers.iter().filter(|provider| provider.spec.enabled) {
            let name = provider.spec.name.as_str();
            for currency in currencies {
                match provider.float(&inner.http, *currency).await {
                    Ok(float) => {
                        inner.floats.set(name, *currency, float);
                        inner
                            .metrics
                            .floats
                            .with_label_values(&[name, currency.as_str()])
                            .set(float);
                    }
                    Err(reason) => {
                        tracing::debug!(provider = name, %reason, "the float could not be read");
                    }
                }
            }
        }
    }

    async fn reserve_due(
        &self,
        partner: &PartnerCode,
        currency: Currency,
        policy: &PayoutPolicy,
        day: NaiveDate,
    ) -> Result<(), PayoutError> {
        let journal = &self.inner.journal;
        let limits = Limits {
            minimum: policy.minimum,
            maximum_per_day: policy.maximum_per_day,
            unit: whole_unit(currency),
        };
        let batch = self.inner.settings.reserve_batch;
        loop {
            let due = journal.due_customers(partner, currency, policy.minimum, day, batch).await?;
            let found = due.len();
            let mut ready = Vec::with_capacity(due.len());
            for customer in due {
                match customer.wallet.or_else(|| policy.default_wallet.clone()) {
                    Some(wallet) => ready.push((customer.msisdn, wallet)),
                    None => self.inner.metrics.no_wallet.inc(),
                }
            }
            // Many customers a transaction: their rows locked together, in order.
            for customers in ready.chunks(RESERVED_TOGETHER) {
                for reservation in
                    journal.reserve_many(partner, currency, day, limits, customers).await?
                {
                    if let Reservation::New(payout) = reservation {
                        self.inner.metrics.changed(&payout);
                    }
                }
            }
            if i64::try_from(found).unwrap_or(i64::MAX) < batch {
                return Ok(());
            }
        }
    }

    /// Works one claimed payout one step further, then gives up the claim until its next
    /// step is due.
    async fn drive(&self, claimed: Claimed) {
        let id = claimed.payout.id.clone();
        let next = match self.step(claimed).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(payout = %id, %error, "payout step failed; retrying");
                Next::After(self.inner.settings.retry_after)
            }
        };
        let (after, done) = match next {
            Next::Done => (Duration::ZERO, true),
            Next::After(after) => (after, false),
            Next::Released => return,
        };
        let owner = &self.inner.settings.owner;
        if let Err(error) = self.inner.journal.release_claim(&id, owner, after, done).await {
            // The claim lapses by itself.
            tracing::warn!(payout = %id, %error, "releasing the claim failed");
        }
    }

    fn policy(&self, partner: &PartnerCode) -> Option<PayoutPolicy> {
        let snapshot = self.inner.rules.borrow().clone()?;
        snapshot.partner_rules(partner)?.partner()?.payout_policy.clone()
    }

    fn provider(&self, name: &str) -> Option<Provider> {
        self.inner.providers.get(name)
    }

    async fn step(&self, claimed: Claimed) -> Result<Next, PayoutError> {
        let journal = &self.inner.journal;
        let payout = claimed.payout;
        let bearer = self.policy(&payout.partner).map(|policy| policy.fee_bearer);
        let bearer = bearer.unwrap_or_default();
        // A payout never sent has no attempts: no need to ask.
        let attempts = if payout.state == PayoutState::Reserved && payout.attempt == 0 {
            Vec::new()
        } else {
            journal.attempts(&payout.id).await?
        };
        match payout.state {
            PayoutState::Failed | PayoutState::Reversed => Ok(Next::Done),
            PayoutState::Succeeded => {
                let Some(paid) = attempts.iter().rev().find(|a| a.state == AttemptState::Succeeded)
                else {
                    return Ok(Next::Done);
                };
                self.recheck_paid(&payout, paid).await
            }
            PayoutState::Reserved | PayoutState::Submitted => {
                self.advance(payout, attempts, bearer).await
            }
        }
    }

    /// A callback named a paid payout: only a status query may say it was reversed.
    async fn recheck_paid(&self, payout: &Payout, paid: &Attempt) -> Result<Next, PayoutError> {
        let Some(provider) = self.provider(&paid.provider) else { return Ok(Next::Done) };
        let looked = provider
            .status(&self.inner.http, &paid.idempotency_key, paid.provider_reference.as_deref())
            .await;
        match looked {
            // Returned by the network after it was paid: Iris says `failed`, others `REVERSED`.
            Looked::Found {
                status: ProviderStatus::Reversed | ProviderStatus::Failed { .. },
                reference,
            } => {
                let journal = &self.inner.journal;
                journal
                    .attempt_answered(paid, AttemptState::Reversed, Some(&reference), None)
                    .await?;
                let reversed = journal.reversed(&payout.id).await?;
                self.inner.metrics.changed(&reversed);
                Ok(Next::Done)
            }
            Looked::Found { .. } | Looked::NotFound => Ok(Next::Done),
            Looked::Unknown { .. } => Ok(Next::After(self.inner.settings.retry_after)),
        }
    }

    /// Drives a reserved or submitted payout: at most one provider call per live attempt per
    /// step, and a new attempt only after the last one failed for certain.
    async fn advance(
        &self,
        payout: Payout,
        mut attempts: Vec<Attempt>,
        bearer: FeeBearer,
    ) -> Result<Next, PayoutError> {
        let journal = &self.inner.journal;
        let settings = &self.inner.settings;
        // Each round either ends the step or records a definitive failure, and each provider
        // fails a payout at most once: bounded by the number of providers.
        for _ in 0..=self.inner.providers.current().len() {
            let live = attempts.last().filter(|attempt| attempt.state != AttemptState::Failed);
            let attempt = match live {
                Some(attempt) => attempt.clone(),
                None => match self.begin(&payout, &attempts, bearer).await? {
                    Ok(attempt) => attempt,
                    Err(next) => return Ok(next),
                },
            };
            let Some(provider) = self.provider(&attempt.provider) else {
                tracing::error!(payout = %payout.id, provider = %attempt.provider,
                    "the provider of a live attempt is no longer configured");
                return Ok(Next::After(settings.poll_every));
            };
            let name = provider.spec.name.as_str();
            let answer = match (attempt.state, attempt.provider_reference.as_deref()) {
                (AttemptState::Sending, None) => {
                    let holder_name = match self.inquire(&provider, &payout, &attempt).await? {
                        Ok(holder_name) => holder_name,
                        Err(Some(reason)) => {
                            // The account cannot receive at this provider: definitive.
                            attempts = self.failed_for_certain(name, &attempt, &reason).await?;
                            continue;
                        }
                        Err(None) => {
                            self.inner.health.unknown(name);
                            return Ok(Next::After(settings.retry_after));
                        }
                    };
                    let request = self.request(&payout, &attempt, holder_name);
                    match provider.submit(&self.inner.http, &request).await {
                        Submitted::Accepted { reference, status } => Some((reference, status)),
                        Submitted::Refused { reason } => {
                            self.inner.metrics.call(name, "refused");
                            attempts = self.failed_for_certain(name, &attempt, &reason).await?;
                            continue;
                        }
                        Submitted::Unknown { reason } => {
                            tracing::info!(payout = %payout.id, provider = name, %reason,
                                "the outcome is unknown; asking again before anything else");
                            None
                        }
                    }
                }
                (_, reference) => {
                    match provider
                        .status(&self.inner.http, &attempt.idempotency_key, reference)
                        .await
                    {
                        Looked::Found { reference, status } => Some((reference, status)),
                        // Accepted before, so it exists: the provider's answer is what is
                        // unknown (or its lookup lags).
                        Looked::NotFound | Looked::Unknown { .. } => None,
                    }
                }
            };
            let Some((reference, status)) = answer else {
                self.inner.metrics.call(name, "unknown");
                self.inner.health.unknown(name);
                return Ok(Next::After(settings.retry_after));
            };
            self.inner.health.answered(name);
            self.inner.metrics.call(name, "answered");
            match status {
                ProviderStatus::Pending => {
                    let owner = &settings.owner;
                    journal
                        .attempt_pending(&attempt, &reference, owner, settings.poll_every)
                        .await?;
                    return Ok(Next::Released);
                }
                ProviderStatus::Succeeded => {
                    // The answer, the settlement and the end of the claim: one transaction.
                    let answered = Answered {
                        attempt: &attempt,
                        state: AttemptState::Succeeded,
                        reference: Some(&reference),
                        owner: &settings.owner,
                    };
                    let (paid, released) =
                        journal.settled(&payout.id, attempt.fee, bearer, Some(answered)).await?;
                    self.inner.metrics.changed(&paid);
                    return Ok(if released { Next::Released } else { Next::Done });
                }
                ProviderStatus::Reversed => {
                    journal
                        .attempt_answered(&attempt, AttemptState::Reversed, Some(&reference), None)
                        .await?;
                    let paid = journal.succeeded(&payout.id, attempt.fee, bearer).await?;
                    self.inner.metrics.changed(&paid);
                    let reversed = journal.reversed(&payout.id).await?;
                    self.inner.metrics.changed(&reversed);
                    return Ok(Next::Done);
                }
                ProviderStatus::Failed { reason } => {
                    journal
                        .attempt_answered(
                            &attempt,
                            AttemptState::Failed,
                            Some(&reference),
                            Some(&reason),
                        )
                        .await?;
                    attempts = journal.attempts(&payout.id).await?;
                }
            }
        }
        Ok(Next::After(settings.retry_after))
    }

    /// An attempt that created nothing and never will (refused, or an account the provider
    /// says cannot receive): recorded as failed, and the payout's attempts as they are now.
    async fn failed_for_certain(
        &self,
        provider: &str,
        attempt: &Attempt,
        reason: &str,
    ) -> Result<Vec<Attempt>, PayoutError> {
        self.inner.health.answered(provider);
        let journal = &self.inner.journal;
        journal.attempt_answered(attempt, AttemptState::Failed, None, Some(reason)).await?;
        journal.attempts(&attempt.payout_id).await
    }

    /// Records the next attempt at the cheapest eligible provider not yet failed; or ends the
    /// payout (none can ever pay it: its reservation goes back to payable) or waits (some
    /// provider may later).
    async fn begin(
        &self,
        payout: &Payout,
        attempts: &[Attempt],
        bearer: FeeBearer,
    ) -> Result<Result<Attempt, Next>, PayoutError> {
        let journal = &self.inner.journal;
        let tried: Vec<String> = attempts.iter().map(|attempt| attempt.provider.clone()).collect();
        let unit = whole_unit(payout.currency);
        let now = Utc::now();
        let need = Need {
            wallet: &payout.wallet,
            amount: payout.amount,
            currency: payout.currency,
            unit,
            now,
            tried: &tried,
        };
        let inner = &self.inner;
        let providers = inner.providers.current();
        let chosen = match route(&providers, &inner.health, &inner.floats, need) {
            Ok(chosen) => chosen,
            Err(no_route) if no_route.later => {
                return Ok(Err(Next::After(
                    self.inner.settings.poll_every.max(Duration::from_secs(60)),
                )));
            }
            Err(no_route) => {
                let reasons: Vec<String> = no_route
                    .passed_over
                    .iter()
                    .map(|passed| {
                        format!(
                            "{}: {}",
                            passed.provider,
                            passed.reason.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                let mut failure = format!("no provider can pay it ({})", reasons.join("; "));
                if let Some(last) = attempts.last().and_then(|attempt| attempt.failure.clone()) {
                    failure = format!("{failure}; last failure: {last}");
                }
                journal.note_failure(&payout.id, &failure).await?;
                let failed = journal.failed(&payout.id).await?;
                self.inner.metrics.changed(&failed);
                return Ok(Err(Next::Done));
            }
        };
        let provider = &providers[chosen.provider];
        let sent = match bearer {
            FeeBearer::Partner => payout.amount,
            FeeBearer::Customer => payout.amount - chosen.fee,
        };
        if sent <= 0 || sent % unit != 0 {
            let failure =
                format!("the fee {} would eat the payout of {}", chosen.fee, payout.amount);
            journal.note_failure(&payout.id, &failure).await?;
            let failed = journal.failed(&payout.id).await?;
            self.inner.metrics.changed(&failed);
            return Ok(Err(Next::Done));
        }
        let number = attempts.last().map_or(1, |attempt| attempt.number + 1);
        let attempt = journal
            .begin_attempt(
                payout,
                number,
                &provider.spec.name,
                &payout.wallet,
                sent,
                chosen.fee,
                &chosen.passed_over,
            )
            .await?;
        inner.floats.spend(&provider.spec.name, payout.currency, sent + chosen.fee);
        Ok(Ok(attempt))
    }

    /// Before the first payout to a destination, where the provider has an inquiry of its
    /// own: whether the account exists, and its holder's name (recorded). `Err(Some)` is a
    /// definitive no, `Err(None)` an unknown answer.
    async fn inquire(
        &self,
        provider: &Provider,
        payout: &Payout,
        attempt: &Attempt,
    ) -> Result<Result<Option<String>, Option<String>>, PayoutError> {
        if !provider.has_separate_inquiry() {
            return Ok(Ok(None));
        }
        let journal = &self.inner.journal;
        let (partner, msisdn, wallet) = (&payout.partner, &payout.msisdn, &payout.wallet);
        if let Some(holder) = journal.destination_holder(partner, msisdn, wallet).await? {
            return Ok(Ok(Some(holder)));
        }
        let http = &self.inner.http;
        let answer = provider.inquire(http, wallet, msisdn, attempt.amount, payout.currency).await;
        match answer {
            Inquiry::Holder { name } => {
                let provider = &provider.spec.name;
                journal.record_destination_holder(partner, msisdn, wallet, provider, &name).await?;
                Ok(Ok(Some(name)))
            }
            Inquiry::Invalid { reason } => Ok(Err(Some(format!("account inquiry: {reason}")))),
            Inquiry::Unsupported => Ok(Ok(None)),
            Inquiry::Unknown { reason } => {
                tracing::info!(payout = %payout.id, provider = %provider.spec.name, %reason,
                    "the account inquiry has no answer; asking again later");
                Ok(Err(None))
            }
        }
    }

    fn request(
        &self,
        payout: &Payout,
        attempt: &Attempt,
        holder_name: Option<String>,
    ) -> PayoutRequest {
        PayoutRequest {
            idempotency_key: attempt.idempotency_key.clone(),
            amount: attempt.amount,
            currency: payout.currency,
            wallet: payout.wallet.clone(),
            msisdn: payout.msisdn.clone(),
            description: format!("Cashback {}", payout.id),
            fee: attempt.fee,
            holder_name,
        }
    }
}
