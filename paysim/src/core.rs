//! What every simulated provider shares, whatever API it speaks: the book of transfers it was
//! asked for (one per idempotency key), the money it moved (the truth tests compare Cezbek's
//! journal with), its balance, the faults a test scripted, and the timeline a transfer goes
//! through — queued until released, processing, then succeeded or failed, and a succeeded one
//! maybe reversed later. Each API module only translates its requests and states.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::faults::{Draws, Ending, Fault, Faults};

/// What the API modules share of a simulator's configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Where notifications go; none sent without it.
    pub callback_url: Option<String>,
    /// The account balance (the float), whole currency units.
    pub balance: i64,
    pub fee: FeeRule,
    /// How long a released transfer takes to finish.
    pub processing: Duration,
}

impl SimConfig {
    /// On a free loopback port, with a large float, Rp 2,500 + 11 % VAT per transfer.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            callback_url: None,
            balance: 1_000_000_000_000,
            fee: FeeRule { fixed: 2_500, basis_points: 0, vat_basis_points: 1_100 },
            processing: Duration::from_millis(20),
        }
    }
}

/// What the provider charges per transfer: a fixed fee plus basis points of the amount, and
/// VAT on the fee; each rounded up to a whole unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    pub fixed: i64,
    pub basis_points: i64,
    pub vat_basis_points: i64,
}

impl FeeRule {
    /// (fee, VAT) on `amount`.
    pub fn charge(&self, amount: i64) -> (i64, i64) {
        let fee = self.fixed + ceil_div(i128::from(amount) * i128::from(self.basis_points), 10_000);
        let vat = ceil_div(i128::from(fee) * i128::from(self.vat_basis_points), 10_000);
        (fee, vat)
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i64 {
    let quotient = (numerator + denominator - 1) / denominator;
    i64::try_from(quotient).unwrap_or(i64::MAX)
}

/// Where a transfer is, in the simulator's own words (each API names them its way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Created, waiting to be released (an approval, for APIs that need one).
    Queued,
    Processing,
    Succeeded,
    Failed,
    /// Succeeded, then undone by the network.
    Reversed,
}

/// A transfer the simulator was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// The provider's id for it.
    pub id: String,
    /// The caller's idempotency key.
    pub key: String,
    /// The caller's reference (its attempt's key, in Cezbek's case).
    pub reference: String,
    pub account: String,
    pub channel: String,
    /// Whole currency units.
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
    pub phase: Phase,
    /// The provider's failure code, when failed.
    pub failure: Option<String>,
    /// The caller's per-day external id (SNAP), if the API has one.
    pub external_id: Option<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    #[serde(skip)]
    pub(crate) fault: Option<Fault>,
}

/// Money the simulator moved: one entry per transfer that succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executed {
    pub transfer_id: String,
    pub reference: String,
    pub account: String,
    pub amount: i64,
    pub fee: i64,
    pub vat: i64,
    pub reversed: bool,
}

/// A new transfer as an API module read it from a request.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub key: String,
    pub reference: String,
    pub account: String,
    pub channel: String,
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
    pub external_id: Option<String>,
}

/// What a create call found under its key.
#[derive(Debug, Clone)]
pub enum Created {
    New(Transfer),
    /// Created by an earlier call with the same key; nothing new.
    Earlier(Transfer),
}

impl Created {
    pub fn transfer(self) -> Transfer {
        match self {
            Self::New(transfer) | Self::Earlier(transfer) => transfer,
        }
    }
}

/// How a create call goes, decided by the scripted faults before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Answer a server error; nothing is created.
    ServerError,
    /// Create it; with `no_answer`, then answer a gateway timeout after that many ms.
    Admit { fault: Option<Fault>, no_answer: Option<u64> },
}

#[derive(Debug, Default)]
struct Book {
    transfers: Vec<Transfer>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    executed: Vec<Executed>,
    balance: i64,
    faults: Faults,
    /// Create calls seen per account, for faults that hit the first few.
    calls_by_account: HashMap<String, u32>,
    draws: Option<Draws>,
    /// Report lines altered by a test (reference → fields shown instead).
    tampered: HashMap<String, Value>,
}

/// Sends an API's notification of a transfer's new state; set by the API module.
pub type Notify =
    Arc<dyn Fn(Transfer) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static>;

/// One simulated provider's state, shared by its API's handlers.
pub struct Core {
    pub config: SimConfig,
    book: Mutex<Book>,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    notify: Mutex<Option<Notify>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(config: SimConfig, shutdown: CancellationToken) -> Arc<Self> {
        let book = Book { balance: config.balance, ..Book::default() };
        Arc::new(Self {
            config,
            book: Mutex::new(book),
            http: reqwest::Client::new(),
            shutdown,
            notify: Mutex::new(None),
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock is a simulator bug; the book is still readable.
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_notify(&self, notify: Notify) {
        *self.notify.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(notify);
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut book = self.book();
        book.draws = faults.random.as_ref().map(|random| Draws::new(random.seed));
        book.faults = faults;
    }

    /// The scripted fault of an account, else a random one, if any.
    pub fn fault_of(&self, account: &str) -> Option<Fault> {
        let mut book = self.book();
        if let Some(fault) = book.faults.by_account.get(account) {
            return Some(fault.clone());
        }
        let random = book.faults.random.clone()?;
        random.draw(book.draws.as_mut()?)
    }

    /// Waits the scripted latency of every call.
    pub async fn latency(&self) {
        let latency = self.book().faults.latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
    }

    /// Counts a create call to `account` and decides, from the faults, how it goes.
    pub fn admit(&self, account: &str) -> Admission {
        let calls = {
            let mut book = self.book();
            let calls = book.calls_by_account.entry(account.to_owned()).or_default();
            *calls += 1;
            *calls
        };
        let fault = self.fault_of(account);
        match fault {
            Some(Fault::ServerError { times }) if calls <= times => Admission::ServerError,
            Some(Fault::AcceptThenNoAnswer { times, delay_ms }) if calls <= times => {
                Admission::Admit { fault, no_answer: Some(delay_ms) }
            }
            fault => Admission::Admit { fault, no_answer: None },
        }
    }

    /// Records a new transfer, queued; or finds the one created before under the same key.
    pub fn create(&self, new: NewTransfer, fault: Option<Fault>) -> Created {
        let mut book = self.book();
        if let Some(index) = book.by_key.get(&new.key) {
            return Created::Earlier(book.transfers[*index].clone());
        }
        let now = Utc::now();
        let transfer = Transfer {
            id: format!("{:08}-{}", book.transfers.len() + 1, short(&new.reference)),
            key: new.key,
            reference: new.reference,
            account: new.account,
            channel: new.channel,
            amount: new.amount,
            currency: new.currency,
            note: new.note,
            phase: Phase::Queued,
            failure: None,
            external_id: new.external_id,
            created: now,
            updated: now,
            fault,
        };
        let index = book.transfers.len();
        book.by_id.insert(transfer.id.clone(), index);
        book.by_key.insert(transfer.key.clone(), index);
        book.transfers.push(transfer.clone());
        Created::New(transfer)
    }

    pub fn by_id(&self, id: &str) -> Option<Transfer> {
        let book = self.book();
        book.by_id.get(id).map(|index| book.transfers[*index].clone())
    }

    pub fn by_key(&self, key: &str) -> Option<Transfer> {
        let book = self.book();
        book.by_key.get(key).map(|index| book.transfers[*index].clone())
    }

    /// The transfers matching `keep`, in creation order.
    pub fn transfers(&self, keep: impl Fn(&Transfer) -> bool) -> Vec<Transfer> {
        self.book().transfers.iter().filter(|transfer| keep(transfer)).cloned().collect()
    }

    pub fn executed(&self) -> Vec<Executed> {
        self.book().executed.clone()
    }

    pub fn balance(&self) -> i64 {
        self.book().balance
    }

    pub fn set_balance(&self, balance: i64) {
        self.book().balance = balance;
    }

    pub fn tamper(&self, reference: &str, value: Value) {
        self.book().tampered.insert(reference.into(), value);
    }

    /// Overwrites the fields a test tampered with in a report line of `reference`.
    pub fn apply_tampering(&self, reference: &str, line: &mut Value) {
        let book = self.book();
        let (Some(changes), Some(fields)) =
            (book.tampered.get(reference).and_then(Value::as_object), line.as_object_mut())
        else {
            return;
        };
        for (field, value) in changes {
            fields.insert(field.clone(), value.clone());
        }
    }

    /// Starts processing a queued transfer; once only.
    pub fn release(self: &Arc<Self>, id: &str) {
        {
            let mut book = self.book();
            let Some(index) = book.by_id.get(id).copied() else { return };
            let transfer = &mut book.transfers[index];
            if transfer.phase != Phase::Queued {
                return;
            }
            transfer.phase = Phase::Processing;
            transfer.updated = Utc::now();
        }
        tokio::spawn(process(self.clone(), id.to_owned()));
    }

    async fn notify(&self, transfer: &Transfer) {
        let notify = self.notify.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(notify) = notify {
            notify(transfer.clone()).await;
        }
    }

    /// POSTs a notification, retrying a few times while the receiver does not answer 2xx.
    pub async fn deliver(&self, headers: &[(&str, String)], body: Vec<u8>, what: &str) {
        let Some(url) = &self.config.callback_url else { return };
        for attempt in 0..3u32 {
            let mut request = self.http.post(url).header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let sent = request.body(body.clone()).timeout(Duration::from_secs(5)).send().await;
            if matches!(&sent, Ok(response) if response.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
        }
        tracing::warn!(what, "notification not accepted after 3 attempts");
    }

    /// Finishes the transfer as its outcome says, moving the money if the balance covers it.
    fn finish(&self, id: &str, fault: Option<&Fault>, ending: Ending) -> Option<Transfer> {
        let mut book = self.book();
        let index = book.by_id.get(id).copied()?;
        let amount = book.transfers[index].amount;
        let (fee, vat) = self.config.fee.charge(amount);
        let failure = match (fault, ending) {
            (Some(Fault::Fail { code }), _) => Some(code.clone()),
            (Some(Fault::InvalidAccount), _) => Some("INVALID_ACCOUNT".to_owned()),
            (_, Ending::Failed) => Some("TEMPORARY_TRANSFER_ERROR".to_owned()),
            _ if book.balance < amount + fee + vat => Some("INSUFFICIENT_BALANCE".to_owned()),
            _ => None,
        };
        let now = Utc::now();
        match failure {
            Some(code) => {
                let transfer = &mut book.transfers[index];
                transfer.phase = Phase::Failed;
                transfer.failure = Some(code);
                transfer.updated = now;
            }
            None => {
                book.balance -= amount + fee + vat;
                let transfer = &mut book.transfers[index];
                transfer.phase = Phase::Succeeded;
                transfer.updated = now;
                let executed = Executed {
                    transfer_id: transfer.id.clone(),
                    reference: transfer.reference.clone(),
                    account: transfer.account.clone(),
                    amount,
                    fee,
                    vat,
                    reversed: false,
                };
                book.executed.push(executed);
            }
        }
        Some(book.transfers[index].clone())
    }

    /// Undoes a succeeded transfer: the amount comes back, the fee is kept.
    fn reverse(&self, id: &str) -> Option<Transfer> {
        let mut book = self.book();
        let index = book.by_id.get(id).copied()?;
        let amount = book.transfers[index].amount;
        book.balance += amount;
        if let Some(executed) = book.executed.iter_mut().find(|executed| executed.transfer_id == id)
        {
            executed.reversed = true;
        }
        let transfer = &mut book.transfers[index];
        transfer.phase = Phase::Reversed;
        transfer.updated = Utc::now();
        Some(transfer.clone())
    }
}

/// A short, stable tag of a reference for ids (ids are opaque to callers).
fn short(reference: &str) -> String {
    let hash = reference.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// A released transfer's timeline: after the processing time (or its scripted pending time)
/// it ends, and its notifications go out as the faults script them.
async fn process(core: Arc<Core>, id: String) {
    let fault = core.by_id(&id).and_then(|transfer| transfer.fault);
    let (wait, ending) = match &fault {
        Some(Fault::PendingFor { ms, then }) => (Duration::from_millis(*ms), *then),
        Some(Fault::Fail { .. } | Fault::InvalidAccount) => {
            (core.config.processing, Ending::Failed)
        }
        _ => (core.config.processing, Ending::Succeeded),
    };
    tokio::select! {
        () = core.shutdown.cancelled() => return,
        () = tokio::time::sleep(wait) => {}
    }
    let Some(finished) = core.finish(&id, fault.as_ref(), ending) else { return };
    let reverse_after = match fault {
        Some(Fault::ReverseAfter { after_ms }) => Some(Duration::from_millis(after_ms)),
        Some(Fault::OutOfOrderCallbacks) => Some(Duration::ZERO),
        _ => None,
    };
    let copies = if fault == Some(Fault::DuplicateCallbacks) { 2 } else { 1 };
    let Some(after) = reverse_after.filter(|_| finished.phase == Phase::Succeeded) else {
        for _ in 0..copies {
            core.notify(&finished).await;
        }
        return;
    };
    let out_of_order = fault == Some(Fault::OutOfOrderCallbacks);
    if !out_of_order {
        core.notify(&finished).await;
    }
    tokio::select! {
        () = core.shutdown.cancelled() => return,
        () = tokio::time::sleep(after) => {}
    }
    let Some(reversed) = core.reverse(&id) else { return };
    core.notify(&reversed).await;
    if out_of_order {
        // The stale success arrives after the reversal.
        core.notify(&finished).await;
    }
}

/// The test controls every simulator serves beside its API: `PUT /_sim/faults`,
/// `GET /_sim/executed`.
pub fn control_routes(core: Arc<Core>) -> axum::Router {
    axum::Router::new()
        .route("/_sim/faults", put(set_faults))
        .route("/_sim/executed", get(executed))
        .with_state(core)
}

async fn set_faults(State(core): State<Arc<Core>>, Json(faults): Json<Faults>) -> StatusCode {
    core.set_faults(faults);
    StatusCode::NO_CONTENT
}

async fn executed(State(core): State<Arc<Core>>) -> Json<Vec<Executed>> {
    Json(core.executed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_up_and_vat_is_on_the_fee() {
        let rule = FeeRule { fixed: 2_500, basis_points: 0, vat_basis_points: 1_100 };
        assert_eq!(rule.charge(50_000), (2_500, 275));
        let rule = FeeRule { fixed: 0, basis_points: 150, vat_basis_points: 1_100 };
        // 1.5 % of 10,001 is 150.015: 151; 11 % of 151 is 16.61: 17.
        assert_eq!(rule.charge(10_001), (151, 17));
    }

    #[tokio::test]
    async fn a_transfer_is_created_once_per_key_and_moves_money_once() {
        let core = Core::new(SimConfig::local(), CancellationToken::new());
        let new = NewTransfer {
            key: "k1".into(),
            reference: "r1".into(),
            account: "+62811".into(),
            channel: "OVO".into(),
            amount: 50_000,
            currency: "IDR".into(),
            note: None,
            external_id: None,
        };
        let Created::New(created) = core.create(new.clone(), None) else { panic!("not new") };
        let Created::Earlier(earlier) = core.create(new, None) else { panic!("created twice") };
        assert_eq!(earlier.id, created.id);
        core.release(&created.id);
        core.release(&created.id);
        for _ in 0..100 {
            if core.by_id(&created.id).map(|transfer| transfer.phase) == Some(Phase::Succeeded) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(core.executed().len(), 1);
        assert_eq!(core.balance(), 1_000_000_000_000 - 50_000 - 2_500 - 275);
    }
}
