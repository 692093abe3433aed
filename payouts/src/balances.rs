//! How cashback decisions become money in the journal, and when it becomes payable.
//!
//! - A rewarded decision (cashback > 0) is earned: `CASHBACK_EARNED/{partner}/{transaction}`,
//!   from the partner's funding to the customer's **held** balance.
//! - A clawback (a refund's negative cashback) is taken from the customer's **payable**
//!   balance at once: `CLAWBACK/{partner}/{transaction}`, back to the partner's funding. Payable
//!   may go negative (a clawback after the cashback was released, or paid out); it is netted
//!   against later cashback, never pulled back from a wallet. Taking every clawback from
//!   payable, whether or not its original is still held, makes the result independent of the
//!   order in which releases and late refunds arrive.
//! - When the partner's hold period has passed since the purchase, the earning is released:
//!   `HOLD_RELEASE/{partner}/{transaction}`, held → payable, the whole amount.
//!
//! Every id is derived from the decision, so a redelivered reward posts nothing new.

use chrono::{DateTime, Utc};

use cezbek_schemas::{Currency, Msisdn, PartnerCode, Reward};

use crate::journal::{Account, Transfer, TransferKind};

/// The transfer a decision posts, if it moves money (no-match, excluded and zero-cashback
/// decisions do not).
pub fn transfer_of(reward: &Reward) -> Option<Transfer> {
    let reference = format!("{}/{}", reward.partner, reward.transaction_id);
    let funding = Account::PartnerFunding { partner: reward.partner.clone() };
    let (kind, debit, credit, amount) = match reward.cashback {
        0 => return None,
        earned if earned > 0 => (
            TransferKind::CashbackEarned,
            funding,
            Account::CustomerHeld {
                partner: reward.partner.clone(),
                msisdn: reward.msisdn.clone(),
            },
            earned,
        ),
        clawed => (
            TransferKind::Clawback,
            Account::CustomerPayable {
                partner: reward.partner.clone(),
                msisdn: reward.msisdn.clone(),
            },
            funding,
            clawed.checked_neg()?,
        ),
    };
    Some(Transfer {
        id: format!("{}/{reference}", kind.as_str()),
        kind,
        debit,
        credit,
        amount,
        currency: reward.currency,
        reference,
        effective_at: reward.occurred_at,
    })
}

/// The release of an earning (`reference` is `{partner}/{transaction}`), effective when it was
/// earned: the release moves the same amount, whenever it is posted.
pub fn release(
    partner: PartnerCode,
    msisdn: Msisdn,
    reference: String,
    amount: i64,
    currency: Currency,
    earned_at: DateTime<Utc>,
) -> Transfer {
    Transfer {
        id: format!("{}/{reference}", TransferKind::HoldRelease.as_str()),
        kind: TransferKind::HoldRelease,
        debit: Account::CustomerHeld { partner: partner.clone(), msisdn: msisdn.clone() },
        credit: Account::CustomerPayable { partner, msisdn },
        amount,
        currency,
        reference,
        effective_at: earned_at,
    }
}
