//! Cezbek's event contract: the Avro schemas (`avro/*.avsc`), the Rust event types, the
//! single-object codec and the domain value types every service shares.

mod binary;
pub mod codec;
mod currency;
pub mod event;
pub mod value;

pub use binary::BinaryError;
pub use codec::{
    AnyEvent, CodecError, decode, decode_any, decode_transaction, encode, encode_into,
};
pub use currency::minor_unit_exponents;
pub use event::{
    AppliedCampaign, CampaignKind, EARLIEST_TIME_MS, LATEST_TIME_MS, Payout, PayoutStatus, Reward,
    RewardOutcome, Source, SourceChannel, Transaction, TransactionKind, check_storable_time,
};
pub use value::{Currency, Mcc, Money, MoneyError, Msisdn, PartnerCode, TransactionId, ValueError};
