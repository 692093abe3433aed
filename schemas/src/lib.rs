//! Cezbek's event contract: the Avro schemas (`avro/*.avsc`), the Rust event types, the
//! single-object codec and the domain value types every service shares.

mod binary;
pub mod codec;
mod currency;
pub mod event;
pub mod value;

pub use binary::BinaryError;
pub use codec::{CodecError, decode, decode_transaction, encode};
pub use event::{
    AppliedCampaign, CampaignKind, Reward, RewardOutcome, Source, SourceChannel, Transaction,
    TransactionKind,
};
pub use value::{Currency, Mcc, Money, MoneyError, Msisdn, PartnerCode, TransactionId, ValueError};
