//! The ingestor's OpenAPI document, generated from the handlers' annotations and the types
//! they read and answer with.

use utoipa::Number;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::openapi::SecuritySchemes;

use crate::api;

/// One transaction as a partner sends it. The handler reads these fields as text (the CSV
/// columns are the same), so numbers may also come as strings; every problem of an item is
/// reported with its field.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransactionFields)]
#[allow(dead_code)] // describes the JSON that `input::transaction` reads
pub struct TransactionInput {
    /// The partner's id, unique per partner; re-sending the same id with the same content is
    /// harmless. No control characters, no surrounding white space.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    transaction_id: String,
    /// E.164 (+62812…) or a local form (0812…, 62812…); normalised to +62…
    #[schema(
        pattern = r"^(\+[1-9][0-9]{7,14}|00[1-9][0-9]{7,14}|0[1-9][0-9]{5,12}|[1-9][0-9]{7,14})$"
    )]
    msisdn: String,
    /// Integer minor units, > 0.
    #[schema(value_type = PositiveInteger)]
    amount: i64,
    currency: cezbek_schemas::Currency,
    /// 1 when left out.
    #[schema(value_type = Option<Quantity>)]
    quantity: Option<i64>,
    /// RFC 3339; at most 1 h in the future.
    occurred_at: chrono::DateTime<chrono::Utc>,
    #[schema(max_length = 128, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    merchant: Option<String>,
    /// Merchant category code, 0001–9999.
    #[schema(value_type = Option<MerchantCategory>)]
    mcc: Option<u16>,
    /// PURCHASE (the default) or REFUND.
    kind: Option<cezbek_schemas::TransactionKind>,
    /// Required for a REFUND, refused on a PURCHASE.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    original_transaction_id: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^.\s\x00-\x1f\x7f-\x9f][^\s\x00-\x1f\x7f-\x9f]*\.[^\s\x00-\x1f\x7f-\x9f]*[^.\s\x00-\x1f\x7f-\x9f]$"
    )]
    email: Option<String>,
    /// The e-wallet to pay cashback into (OVO, GOPAY, …).
    #[schema(max_length = 32, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    wallet: Option<String>,
}

/// A transaction: its fields, and the rule that spans two of them (a REFUND names the purchase
/// it refunds; a PURCHASE names none).
pub struct TransactionSchema;

impl PartialSchema for TransactionSchema {
    fn schema() -> RefOr<Schema> {
        let kind = |values: &[Option<&str>]| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .enum_values(Some(values.iter().copied()))
        };
        let refund = ObjectBuilder::new()
            .property("kind", kind(&[Some("REFUND")]))
            .property("original_transaction_id", ObjectBuilder::new().schema_type(Type::String))
            .required("kind")
            .required("original_transaction_id");
        let purchase = ObjectBuilder::new()
            .property("kind", kind(&[Some("PURCHASE"), None]))
            .property("original_transaction_id", ObjectBuilder::new().schema_type(Type::Null));
        AllOfBuilder::new()
            .item(Ref::from_schema_name("TransactionFields"))
            .item(AnyOfBuilder::new().item(refund).item(purchase))
            .into()
    }
}
impl ToSchema for TransactionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Transaction".into()
    }
}

/// A whole number ≥ 1, as a JSON number or as its digits in a string.
pub struct PositiveInteger;

impl PartialSchema for PositiveInteger {
    fn schema() -> RefOr<Schema> {
        // Numbers up to 2^53 - 1: beyond, a JSON number is not exact in most parsers.
        number_or_digits(Some(1), Some(9_007_199_254_740_991), r"^\s*0*[1-9][0-9]{0,17}\s*$")
    }
}
impl ToSchema for PositiveInteger {}

/// A merchant category code 1–9999, as a JSON number or as its (up to four) digits.
pub struct MerchantCategory;

impl PartialSchema for MerchantCategory {
    fn schema() -> RefOr<Schema> {
        number_or_digits(
            Some(1),
            Some(9999),
            r"^\s*(0{0,3}[1-9]|0{0,2}[1-9][0-9]|0?[1-9][0-9]{2}|[1-9][0-9]{3})\s*$",
        )
    }
}
impl ToSchema for MerchantCategory {}

/// A quantity 1 to 2^31 - 1, as a JSON number or as its digits.
pub struct Quantity;

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        const UP_TO_I32_MAX: &str = r"^\s*0*([1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])\s*$";
        number_or_digits(Some(1), Some(i64::from(i32::MAX)), UP_TO_I32_MAX)
    }
}
impl ToSchema for Quantity {}

fn number_or_digits(minimum: Option<i64>, maximum: Option<i64>, digits: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(minimum.map(Number::from))
                .maximum(maximum.map(Number::from)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(digits)))
        .into()
}

/// One transaction, or a batch of 1–1,000.
pub struct TransactionBatch;

impl PartialSchema for TransactionBatch {
    fn schema() -> RefOr<Schema> {
        let one = || RefOr::Ref(Ref::from_schema_name("Transaction"));
        OneOfBuilder::new()
            .item(one())
            .item(
                ArrayBuilder::new()
                    .items(one())
                    .min_items(Some(1))
                    .max_items(Some(crate::MAX_BATCH_ITEMS)),
            )
            .into()
    }
}
impl ToSchema for TransactionBatch {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek ingestor",
        version = "1",
        description = "Partners send transactions here, one by one or in batches, signed with \
            HMAC-SHA256; or upload CSV files through presigned URLs. A 202 is sent only after the \
            broker acknowledged every accepted item (acks=all). Re-sending a transaction is \
            always safe: the ledger deduplicates on partner + transaction_id, so retry anything \
            that was not acknowledged. Money is integer minor units. Errors are \
            application/problem+json (RFC 9457)."
    ),
    paths(
        api::openapi_document,
        api::publish,
        api::create_upload,
        api::upload_status,
        api::upload_rejects
    ),
    components(schemas(Problem, FieldError, TransactionInput, TransactionSchema)),
    modifiers(&SecuritySchemes)
)]
struct IngestorApi;

/// The document served at `/openapi.json`.
pub fn document() -> Document {
    IngestorApi::openapi()
}
