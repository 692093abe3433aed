//! Avro single-object encoding: `C3 01`, the writer schema's 8-byte CRC-64-AVRO (Rabin)
//! fingerprint in little endian, then the Avro binary body.
//!
//! The header lets a reader pick the writer's schema from the versions it knows and resolve it
//! into the schema it reads with, so producers and consumers can be upgraded one at a time. Any
//! Avro library can read these messages with the `.avsc` files alone.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{Payout, Reward, Transaction};
use crate::value::ValueError;

/// The two marker bytes that open every single-object encoded message.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

pub type Fingerprint = [u8; 8];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message is {0} bytes; a single-object encoded message has at least {HEADER_LEN}")]
    TooShort(usize),
    #[error("message does not start with the single-object marker C3 01 (found {0:02X?})")]
    BadMagic([u8; 2]),
    #[error("unknown {schema} schema fingerprint {}", hex(fingerprint))]
    UnknownFingerprint { schema: &'static str, fingerprint: Fingerprint },
    #[error("cannot encode {schema}: {source}")]
    Encode { schema: &'static str, source: Box<apache_avro::Error> },
    #[error("cannot decode {schema} body: {source}")]
    Decode { schema: &'static str, source: Box<apache_avro::Error> },
    #[error("{schema} body has {count} trailing bytes after the record")]
    TrailingBytes { schema: &'static str, count: usize },
    #[error("{schema} decoded but is invalid: {}", join(.problems))]
    Invalid { schema: &'static str, problems: Vec<ValueError> },
    #[error("cannot read {schema} body: {source}")]
    Body { schema: &'static str, source: crate::binary::BinaryError },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn join(problems: &[ValueError]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The versions of one record's schema that this build knows: the current one it writes and
/// reads with, and older writer versions it can still resolve from.
#[derive(Debug)]
pub struct SchemaVersions {
    name: &'static str,
    current: Schema,
    current_fingerprint: Fingerprint,
    writers: HashMap<Fingerprint, Schema>,
}

/// Problems with the schema texts themselves: a build error, caught by the tests.
#[derive(Debug, thiserror::Error)]
#[error("schema {name} is not valid Avro: {source}")]
pub struct SchemaError {
    name: &'static str,
    source: Box<apache_avro::Error>,
}

impl SchemaVersions {
    /// `current` is written and read with; `older` are accepted as writer schemas.
    pub fn new(name: &'static str, current: &str, older: &[&str]) -> Result<Self, SchemaError> {
        let parse = |text: &str| {
            Schema::parse_str(text).map_err(|source| SchemaError { name, source: Box::new(source) })
        };
        let current = parse(current)?;
        let current_fingerprint = fingerprint(&current);
        let mut writers = HashMap::from([(current_fingerprint, current.clone())]);
        for text in older {
            let schema = parse(text)?;
            writers.insert(fingerprint(&schema), schema);
        }
        Ok(Self { name, current, current_fingerprint, writers })
    }

    pub fn current(&self) -> &Schema {
        &self.current
    }

    pub fn current_fingerprint(&self) -> Fingerprint {
        self.current_fingerprint
    }

    /// Encodes a value with the current schema, header included.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let encode_error =
            |source| CodecError::Encode { schema: self.name, source: Box::new(source) };
        let avro_value = apache_avro::to_value(value).map_err(encode_error)?;
        // Resolving turns serde's plain values into what the schema says: unions, enums,
        // timestamp logical types.
        let resolved = avro_value.resolve(&self.current).map_err(encode_error)?;
        let body = apache_avro::to_avro_datum(&self.current, resolved).map_err(encode_error)?;
        let mut message = Vec::with_capacity(HEADER_LEN + body.len());
        message.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        message.extend_from_slice(&self.current_fingerprint);
        message.extend_from_slice(&body);
        Ok(message)
    }

    /// Whether a message with this writer fingerprint is one of ours.
    pub fn knows(&self, fingerprint: &Fingerprint) -> bool {
        self.writers.contains_key(fingerprint)
    }

    /// Decodes a message written with any known version into the current shape.
    pub fn decode<T: DeserializeOwned>(&self, message: &[u8]) -> Result<T, CodecError> {
        let decode_error =
            |source| CodecError::Decode { schema: self.name, source: Box::new(source) };
        let fingerprint = split_header(message)?;
        let writer = self
            .writers
            .get(&fingerprint)
            .ok_or(CodecError::UnknownFingerprint { schema: self.name, fingerprint })?;
        let mut body = &message[HEADER_LEN..];
        let value = apache_avro::from_avro_datum(writer, &mut body, Some(&self.current))
            .map_err(decode_error)?;
        if !body.is_empty() {
            return Err(CodecError::TrailingBytes { schema: self.name, count: body.len() });
        }
        apache_avro::from_value(&value).map_err(decode_error)
    }
}

/// Checks the marker and returns the writer fingerprint of a single-object message.
pub fn split_header(message: &[u8]) -> Result<Fingerprint, CodecError> {
    if message.len() < HEADER_LEN {
        return Err(CodecError::TooShort(message.len()));
    }
    if message[..2] != SINGLE_OBJECT_MAGIC {
        return Err(CodecError::BadMagic([message[0], message[1]]));
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&message[2..HEADER_LEN]);
    Ok(fingerprint)
}

/// CRC-64-AVRO of the schema's Parsing Canonical Form, little endian as single-object
/// encoding writes it.
pub fn fingerprint(schema: &Schema) -> Fingerprint {
    crc64_avro(parsing_canonical_form(schema).as_bytes()).to_le_bytes()
}

/// The Parsing Canonical Form as the Avro specification defines it.
///
/// apache-avro's own form writes a primitive that carried a logical type as `{"type":"long"}`,
/// where the specification (and Java, fastavro and the other libraries) have `"long"`: its
/// fingerprints would match no other implementation. In the canonical form there are no docs,
/// defaults or white space, and names cannot hold braces or quotes, so the wrapped form can only
/// be a schema, and replacing it is exact.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    const PRIMITIVES: [&str; 8] =
        ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];
    let mut form = schema.canonical_form();
    for primitive in PRIMITIVES {
        form = form.replace(&format!(r#"{{"type":"{primitive}"}}"#), &format!(r#""{primitive}""#));
    }
    form
}

/// The 64-bit Rabin fingerprint of the Avro specification ("CRC-64-AVRO").
pub fn crc64_avro(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xC15D_213A_A4D7_A795;
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u64; 256];
        for (index, slot) in (0u64..).zip(table.iter_mut()) {
            let mut fingerprint = index;
            for _ in 0..8 {
                fingerprint = (fingerprint >> 1) ^ (EMPTY & (fingerprint & 1).wrapping_neg());
            }
            *slot = fingerprint;
        }
        table
    });
    data.iter().fold(EMPTY, |fingerprint, byte| {
        // The index is the low byte, so the cast cannot lose anything that matters.
        (fingerprint >> 8) ^ table[((fingerprint ^ u64::from(*byte)) & 0xFF) as usize]
    })
}

pub const TRANSACTION_AVSC: &str = include_str!("../avro/transaction.avsc");
pub const REWARD_AVSC: &str = include_str!("../avro/reward.avsc");
pub const PAYOUT_AVSC: &str = include_str!("../avro/payout.avsc");

/// An event type bound to its schema versions, with direct Avro binary for its current
/// schema (see [`crate::binary`]).
pub trait Event: Serialize + DeserializeOwned {
    fn schema_versions() -> &'static SchemaVersions;
    #[doc(hidden)]
    fn write_current(&self, out: &mut Vec<u8>);
    /// Reads a body of the current schema; returns the event and how many bytes trail it.
    #[doc(hidden)]
    fn read_current(body: &[u8]) -> Result<(Self, usize), crate::binary::BinaryError>;
}

fn known(
    cell: &'static OnceLock<SchemaVersions>,
    name: &'static str,
    text: &str,
) -> &'static SchemaVersions {
    cell.get_or_init(|| match SchemaVersions::new(name, text, &[]) {
        Ok(versions) => versions,
        // The schemas are compiled in and checked by the unit tests; a bad one is a build
        // defect, not an input error.
        Err(error) => panic!("built-in schema is invalid: {error}"),
    })
}

impl Event for Transaction {
    fn schema_versions() -> &'static SchemaVersions {
        static VERSIONS: OnceLock<SchemaVersions> = OnceLock::new();
        known(&VERSIONS, "Transaction", TRANSACTION_AVSC)
    }

    fn write_current(&self, out: &mut Vec<u8>) {
        crate::binary::write_transaction(out, self);
    }

    fn read_current(body: &[u8]) -> Result<(Self, usize), crate::binary::BinaryError> {
        let mut reader = crate::binary::Reader::new(body);
        Ok((crate::binary::read_transaction(&mut reader)?, reader.remaining()))
    }
}

impl Event for Reward {
    fn schema_versions() -> &'static SchemaVersions {
        static VERSIONS: OnceLock<SchemaVersions> = OnceLock::new();
        known(&VERSIONS, "Reward", REWARD_AVSC)
    }

    fn write_current(&self, out: &mut Vec<u8>) {
        crate::binary::write_reward(out, self);
    }

    fn read_current(body: &[u8]) -> Result<(Self, usize), crate::binary::BinaryError> {
        let mut reader = crate::binary::Reader::new(body);
        Ok((crate::binary::read_reward(&mut reader)?, reader.remaining()))
    }
}

impl Event for Payout {
    fn schema_versions() -> &'static SchemaVersions {
        static VERSIONS: OnceLock<SchemaVersions> = OnceLock::new();
        known(&VERSIONS, "Payout", PAYOUT_AVSC)
    }

    fn write_current(&self, out: &mut Vec<u8>) {
        crate::binary::write_payout(out, self);
    }

    fn read_current(body: &[u8]) -> Result<(Self, usize), crate::binary::BinaryError> {
        let mut reader = crate::binary::Reader::new(body);
        Ok((crate::binary::read_payout(&mut reader)?, reader.remaining()))
    }
}

/// Encodes an event with its current schema.
pub fn encode<T: Event>(event: &T) -> Result<Vec<u8>, CodecError> {
    let mut message = Vec::with_capacity(256);
    encode_into(event, &mut message);
    Ok(message)
}

/// Encodes an event with its current schema into `message`, replacing what it held: a sender
/// of many keeps one buffer rather than allocating one a message.
pub fn encode_into<T: Event>(event: &T, message: &mut Vec<u8>) {
    let versions = T::schema_versions();
    message.clear();
    message.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    message.extend_from_slice(&versions.current_fingerprint);
    event.write_current(message);
}

/// Decodes an event written with any known version of its schema: the current one directly,
/// older ones by resolving them into the current one.
pub fn decode<T: Event>(message: &[u8]) -> Result<T, CodecError> {
    let versions = T::schema_versions();
    if split_header(message)? != versions.current_fingerprint {
        return versions.decode(message);
    }
    let (event, trailing) = T::read_current(&message[HEADER_LEN..])
        .map_err(|source| CodecError::Body { schema: versions.name, source })?;
    if trailing > 0 {
        return Err(CodecError::TrailingBytes { schema: versions.name, count: trailing });
    }
    Ok(event)
}

/// Any Cezbek event, told apart by its writer schema's fingerprint: what tools that read a
/// topic (`cezbek events`) print.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "event")]
pub enum AnyEvent {
    Transaction(Transaction),
    Reward(Reward),
    Payout(Payout),
}

/// Decodes a message of any event type this build knows.
pub fn decode_any(message: &[u8]) -> Result<AnyEvent, CodecError> {
    let fingerprint = split_header(message)?;
    if Reward::schema_versions().knows(&fingerprint) {
        return decode::<Reward>(message).map(AnyEvent::Reward);
    }
    if Transaction::schema_versions().knows(&fingerprint) {
        return decode::<Transaction>(message).map(AnyEvent::Transaction);
    }
    if Payout::schema_versions().knows(&fingerprint) {
        return decode::<Payout>(message).map(AnyEvent::Payout);
    }
    Err(CodecError::UnknownFingerprint { schema: "any event", fingerprint })
}

/// Decodes and validates a transaction, so a consumer never acts on one that the ingestor
/// would have refused.
pub fn decode_transaction(message: &[u8]) -> Result<Transaction, CodecError> {
    let transaction: Transaction = decode(message)?;
    transaction
        .validate()
        .map_err(|problems| CodecError::Invalid { schema: "Transaction", problems })?;
    Ok(transaction)
}
