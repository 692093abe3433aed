//! The single-object codec: round trips, schema resolution and every decode failure.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use cezbek_schemas::codec::{
    self, CodecError, SINGLE_OBJECT_MAGIC, SchemaVersions, TRANSACTION_AVSC,
};
use cezbek_schemas::{
    Payout, Reward, Transaction, decode, decode_any, decode_transaction, encode, encode_into,
};
use proptest::prelude::*;

proptest! {
    /// A sender's reused buffers hold exactly what a fresh encoding and key would, whatever
    /// a previous, longer message left in them.
    #[test]
    fn reused_buffers_hold_the_same_message_and_key(
        first in support::transaction(),
        second in support::transaction(),
    ) {
        let (mut payload, mut key) = (Vec::new(), Vec::new());
        for transaction in [&first, &second] {
            encode_into(transaction, &mut payload);
            transaction.key_into(&mut key);
            prop_assert_eq!(&payload, &encode(transaction).unwrap());
            prop_assert_eq!(&key, &transaction.key().into_bytes());
        }
    }

    /// The direct binary writer and apache-avro write the same bytes, and each reads the other.
    #[test]
    fn direct_binary_matches_apache_avro_for_transactions(transaction in support::transaction()) {
        let versions = <Transaction as codec::Event>::schema_versions();
        let ours = encode(&transaction).unwrap();
        let theirs = versions.encode(&transaction).unwrap();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(versions.decode::<Transaction>(&ours).unwrap(), transaction);
    }

    #[test]
    fn direct_binary_matches_apache_avro_for_rewards(reward in support::reward()) {
        let versions = <Reward as codec::Event>::schema_versions();
        let ours = encode(&reward).unwrap();
        let theirs = versions.encode(&reward).unwrap();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(decode::<Reward>(&theirs).unwrap(), reward);
    }

    #[test]
    fn direct_binary_matches_apache_avro_for_payouts(payout in support::payout()) {
        let versions = <Payout as codec::Event>::schema_versions();
        let ours = encode(&payout).unwrap();
        let theirs = versions.encode(&payout).unwrap();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(decode::<Payout>(&theirs).unwrap(), payout.clone());
        prop_assert_eq!(decode_any(&ours).unwrap(), codec::AnyEvent::Payout(payout));
    }

    #[test]
    fn transactions_round_trip(transaction in support::transaction()) {
        let bytes = encode(&transaction).unwrap();
        prop_assert_eq!(&bytes[..2], &SINGLE_OBJECT_MAGIC);
        prop_assert_eq!(decode_transaction(&bytes).unwrap(), transaction);
    }

    #[test]
    fn rewards_round_trip(reward in support::reward()) {
        let bytes = encode(&reward).unwrap();
        prop_assert_eq!(decode::<Reward>(&bytes).unwrap(), reward);
    }

    #[test]
    fn any_bytes_decode_to_a_value_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        // Must never panic, whatever arrives on the topic.
        let _ = decode_transaction(&bytes);
    }
}

fn sample_transaction() -> Transaction {
    support::samples(support::transaction(), 1).remove(0)
}

#[test]
fn header_carries_the_fingerprint_of_the_current_schema() {
    let bytes = encode(&sample_transaction()).unwrap();
    let versions = <Transaction as codec::Event>::schema_versions();
    assert_eq!(codec::split_header(&bytes).unwrap(), versions.current_fingerprint());
    assert_ne!(
        versions.current_fingerprint(),
        <Reward as codec::Event>::schema_versions().current_fingerprint()
    );
}

#[test]
fn an_unknown_fingerprint_is_a_typed_error() {
    let mut bytes = encode(&sample_transaction()).unwrap();
    bytes[2] ^= 0xFF;
    let error = decode_transaction(&bytes).unwrap_err();
    assert!(
        matches!(error, CodecError::UnknownFingerprint { schema: "Transaction", .. }),
        "{error}"
    );
    assert!(error.to_string().contains("unknown Transaction schema fingerprint"), "{error}");
}

#[test]
fn a_reward_is_not_read_as_a_transaction() {
    let reward = support::samples(support::reward(), 1).remove(0);
    let error = decode_transaction(&encode(&reward).unwrap()).unwrap_err();
    assert!(matches!(error, CodecError::UnknownFingerprint { .. }), "{error}");
}

#[test]
fn bad_framing_is_a_typed_error() {
    let bytes = encode(&sample_transaction()).unwrap();
    assert!(matches!(decode_transaction(&bytes[..5]), Err(CodecError::TooShort(5))));
    let mut wrong_magic = bytes.clone();
    wrong_magic[0] = 0x00;
    assert!(matches!(decode_transaction(&wrong_magic), Err(CodecError::BadMagic([0x00, 0x01]))));
    let truncated = &bytes[..bytes.len() - 3];
    assert!(matches!(decode_transaction(truncated), Err(CodecError::Body { .. })));
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert!(matches!(
        decode_transaction(&trailing),
        Err(CodecError::TrailingBytes { count: 2, .. })
    ));
}

#[test]
fn a_decoded_transaction_with_invalid_values_is_rejected_with_the_field() {
    let mut transaction = sample_transaction();
    transaction.amount = -5;
    transaction.quantity = 0;
    // Encoding does not validate (a producer bug must be visible downstream, not hidden).
    let bytes = encode(&transaction).unwrap();
    let error = decode_transaction(&bytes).unwrap_err();
    let CodecError::Invalid { problems, .. } = &error else {
        panic!("expected Invalid, got {error}")
    };
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"amount") && fields.contains(&"quantity"), "{error}");
}

/// Times every ledger backend stores (and text PostgreSQL holds) pass; a time outside them, or
/// a NUL in a text field, is refused where the transaction is read, naming the field. (Other
/// control characters, such as a line break in a quoted CSV field, are stored as they are.)
#[test]
fn times_and_text_that_a_ledger_cannot_store_are_rejected_with_the_field() {
    use cezbek_schemas::{EARLIEST_TIME_MS, LATEST_TIME_MS};
    let at = |millis| chrono::DateTime::from_timestamp_millis(millis).unwrap();
    let problems =
        |transaction: &Transaction| match decode_transaction(&encode(transaction).unwrap()) {
            Ok(_) => Vec::new(),
            Err(CodecError::Invalid { problems, .. }) => {
                problems.iter().map(|p| format!("{}: {}", p.field, p.reason)).collect()
            }
            Err(other) => panic!("expected Invalid, got {other}"),
        };
    for fine in [EARLIEST_TIME_MS, LATEST_TIME_MS - 1] {
        let mut transaction = sample_transaction();
        (transaction.occurred_at, transaction.ingested_at) = (at(fine), at(fine));
        assert_eq!(problems(&transaction), Vec::<String>::new());
    }
    let year_zero = chrono::NaiveDate::from_ymd_opt(0, 6, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    for bad in [
        EARLIEST_TIME_MS - 1,
        LATEST_TIME_MS,
        -8_000_000_000_000_000,
        year_zero.and_utc().timestamp_millis(),
    ] {
        let mut transaction = sample_transaction();
        transaction.occurred_at = at(bad);
        let found = problems(&transaction);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("occurred_at: ")
                && found[0].contains("outside the supported range"),
            "{found:?}"
        );
        let mut transaction = sample_transaction();
        transaction.ingested_at = at(bad);
        assert!(problems(&transaction)[0].starts_with("ingested_at: "));
    }
    let mut transaction = sample_transaction();
    transaction.merchant = Some("Toko\0Budi".into());
    transaction.wallet = Some("OVO\0".into());
    transaction.email = Some("a@b.c\n".into());
    assert_eq!(
        problems(&transaction),
        vec![
            "merchant: contains a NUL character, which cannot be stored",
            "wallet: contains a NUL character, which cannot be stored"
        ]
    );
}

#[test]
fn a_malformed_msisdn_on_the_wire_is_a_decode_error_naming_it() {
    // A valid transaction with the msisdn replaced by letters, as a buggy producer might send.
    let mut value = serde_json::to_value(sample_transaction()).unwrap();
    value["msisdn"] = "call-me".into();
    let versions = <Transaction as codec::Event>::schema_versions();
    let bytes = versions.encode(&value).unwrap();
    let error = decode_transaction(&bytes).unwrap_err();
    assert!(error.to_string().contains("msisdn"), "{error}");
}

/// An older producer that did not know `email` and `wallet` yet.
const OLDER_TRANSACTION_AVSC: &str = r#"{
  "type": "record", "name": "Transaction", "namespace": "cezbek.v1",
  "fields": [
    {"name": "partner", "type": "string"},
    {"name": "transaction_id", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "TransactionKind", "symbols": ["PURCHASE", "REFUND"]}},
    {"name": "original_transaction_id", "type": ["null", "string"], "default": null},
    {"name": "msisdn", "type": "string"},
    {"name": "amount", "type": "long"},
    {"name": "currency", "type": "string"},
    {"name": "quantity", "type": "int", "default": 1},
    {"name": "merchant", "type": ["null", "string"], "default": null},
    {"name": "mcc", "type": ["null", "int"], "default": null},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "source", "type": {"type": "record", "name": "Source", "fields": [
      {"name": "channel", "type": {"type": "enum", "name": "SourceChannel", "symbols": ["API", "CSV"]}},
      {"name": "reference", "type": "string"},
      {"name": "line", "type": ["null", "long"], "default": null}]}},
    {"name": "ingested_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}"#;

#[test]
fn an_older_writer_schema_resolves_into_the_current_one() {
    let transaction = Transaction { email: None, wallet: None, ..sample_transaction() };
    let mut older_fields = serde_json::to_value(&transaction).unwrap();
    let object = older_fields.as_object_mut().unwrap();
    object.remove("email");
    object.remove("wallet");
    let older = SchemaVersions::new("Transaction", OLDER_TRANSACTION_AVSC, &[]).unwrap();
    let written_by_older = older.encode(&older_fields).unwrap();

    let current_only = SchemaVersions::new("Transaction", TRANSACTION_AVSC, &[]).unwrap();
    assert!(matches!(
        current_only.decode::<Transaction>(&written_by_older),
        Err(CodecError::UnknownFingerprint { .. })
    ));
    let both =
        SchemaVersions::new("Transaction", TRANSACTION_AVSC, &[OLDER_TRANSACTION_AVSC]).unwrap();
    let decoded: Transaction = both.decode(&written_by_older).unwrap();
    assert_eq!(decoded, transaction, "missing fields take their defaults");
}

#[test]
fn an_invalid_schema_text_is_reported() {
    let error = SchemaVersions::new("Broken", r#"{"type": "record"}"#, &[]).unwrap_err();
    assert!(error.to_string().contains("Broken"), "{error}");
}

#[test]
fn crc64_avro_matches_the_specification_vectors() {
    // Values from the Avro specification's reference implementation (as signed longs).
    assert_eq!(codec::crc64_avro(br#""null""#) as i64, 7_195_948_357_588_979_594);
    assert_eq!(codec::crc64_avro(br#""boolean""#) as i64, -6_970_731_678_124_411_036);
    assert_eq!(
        codec::crc64_avro(br#"{"name":"foo","type":"fixed","size":15}"#) as i64,
        1_756_455_273_707_447_556
    );
}

#[test]
fn logical_types_do_not_change_the_canonical_form_or_fingerprint() {
    let with_logical = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"T","fields":[{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
    )
    .unwrap();
    let plain = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"T","fields":[{"name":"at","type":"long"}]}"#,
    )
    .unwrap();
    assert_eq!(
        codec::parsing_canonical_form(&with_logical),
        r#"{"name":"T","type":"record","fields":[{"name":"at","type":"long"}]}"#
    );
    assert_eq!(codec::fingerprint(&with_logical), codec::fingerprint(&plain));
}
