//! Campaignex's OpenAPI document, generated from the handlers' annotations and the rule models
//! they read and answer with (`cezbek_rules::model`).
//!
//! A rule as the API shows it is the model plus its `version` and `updated_at` (read-only); a
//! replacement (PUT) may leave out the identifier its path names. Errors are the same few
//! answers everywhere, declared once below and listed per operation.

#![allow(dead_code)] // the response types describe answers; the handlers build them as Problems

use utoipa::openapi::link::Link;
use utoipa::openapi::schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, OpenApi as Document, Ref, RefOr, SchemaFormat};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::openapi::SecuritySchemes;
use cezbek_rules::model::{
    Campaign, CampaignStatus, Conditions, Exclusion, ExclusionTarget, Partner, PartnerKey,
    PartnerStatus, Tier, TierProgram,
};
use cezbek_rules::{AdapterKind, ChannelTerms, Decision, FeeSchedule, Hours, PaymentProvider};

use crate::api;
use crate::store::Revision;

// ---------------------------------------------------------------- errors

/// No valid admin or viewer bearer token.
#[derive(IntoResponses)]
#[response(status = 401, content_type = "application/problem+json")]
pub struct Unauthenticated(Problem);

/// A viewer's token: it may read but not write.
#[derive(IntoResponses)]
#[response(status = 403, content_type = "application/problem+json")]
pub struct Forbidden(Problem);

/// No such partner or rule.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub struct NotFound(Problem);

/// A bad path parameter or body: every bad field with its reason.
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub struct Invalid(Problem);

/// A bad query parameter, named with its reason.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub struct BadQuery(Problem);

/// It exists already (or, for a partner, still has rules).
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub struct Conflict(Problem);

/// If-Match is not a version ETag.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub struct BadIfMatch(Problem);

/// If-Match names an older version: read the rule again.
#[derive(IntoResponses)]
#[response(status = 412, content_type = "application/problem+json")]
pub struct Stale(Problem);

/// If-Match is missing: send the ETag you read, to avoid lost updates.
#[derive(IntoResponses)]
#[response(status = 428, content_type = "application/problem+json")]
pub struct IfMatchRequired(Problem);

/// The live rules in etcd cannot be read now.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
pub struct Unavailable(Problem);

// ---------------------------------------------------------------- parameters

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PartnerPath {
    /// The partner's code.
    #[param(pattern = "^[A-Z0-9_]{2,16}$")]
    partner: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProviderPath {
    /// The provider's name.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The rule's id.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BacktestPath {
    /// The partner's code.
    #[param(pattern = "^[A-Z0-9_]{2,16}$")]
    partner: String,
    /// The backtest's id.
    id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TablePath {
    /// The partner's code.
    #[param(pattern = "^[A-Z0-9_]{2,16}$")]
    partner: String,
    /// The backtest's id.
    id: String,
    /// Which table of the report.
    #[param(inline)]
    table: cezbek_backtest::Table,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The ETag of the version you read (`"3"`, or its number): a change to any other version
    /// is refused (412).
    #[param(rename = "If-Match", pattern = r#"^(W/)?"[0-9]{1,18}"$|^[0-9]{1,18}$"#)]
    if_match: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OptionalIfMatch {
    /// Required when the tier program exists: the ETag of the version you read.
    #[param(rename = "If-Match", value_type = String, required = false, pattern = r#"^(W/)?"[0-9]{1,18}"$|^[0-9]{1,18}$"#)]
    if_match: Option<String>,
}

// ---------------------------------------------------------------- answers

/// The fields the store adds to every rule it shows.
fn stored_fields(with_updated_at: bool) -> ObjectBuilder {
    let read_only = |format: Option<SchemaFormat>, kind: Type| {
        ObjectBuilder::new().schema_type(kind).format(format).read_only(Some(true))
    };
    let object = ObjectBuilder::new()
        .property(
            "version",
            read_only(None, Type::Integer)
                .minimum(Some(1))
                .description(Some("Increases with every change; the ETag")),
        )
        .required("version");
    if !with_updated_at {
        return object;
    }
    object
        .property(
            "updated_at",
            read_only(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)), Type::String),
        )
        .required("updated_at")
}

/// A rule model as shown: the model and what the store adds.
fn shown(model: &str, with_updated_at: bool) -> RefOr<Schema> {
    AllOfBuilder::new()
        .item(Ref::from_schema_name(model))
        .item(stored_fields(with_updated_at))
        .into()
}

/// A model that allows no other properties (`additionalProperties: false`), as shown: its own
/// schema with the store's fields added to it (an `allOf` of the two could match nothing).
fn shown_closed(mut model: RefOr<Schema>, with_updated_at: bool) -> RefOr<Schema> {
    let stored = stored_fields(with_updated_at).build();
    if let RefOr::T(Schema::Object(object)) = &mut model {
        object.properties.extend(stored.properties);
        object.required.extend(stored.required);
    }
    model
}

/// `{"items": [...]}` of rules as listed (no `updated_at`).
fn listed(model: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(shown(model, false)))
        .required("items")
        .into()
}

/// A model with a field its path decides made optional, for a replacement.
fn replacement<T: PartialSchema>(path_field: &str) -> RefOr<Schema> {
    let mut schema = T::schema();
    drop_required(&mut schema, path_field);
    schema
}

fn drop_required(schema: &mut RefOr<Schema>, field: &str) {
    match schema {
        RefOr::T(Schema::Object(object)) => object.required.retain(|name| name != field),
        RefOr::T(Schema::AllOf(all_of)) => {
            all_of.items.iter_mut().for_each(|item| drop_required(item, field));
        }
        _ => {}
    }
}

macro_rules! schema {
    ($name:ident, $doc:literal, $build:expr) => {
        #[doc = $doc]
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }
        impl ToSchema for $name {}
    };
}

schema!(PartnerShown, "A partner as shown (signing secrets never are).", shown("Partner", true));
schema!(CampaignShown, "A campaign as shown.", shown("Campaign", true));
schema!(ExclusionShown, "An exclusion as shown.", shown("Exclusion", true));
schema!(TierProgramShown, "A tier program as shown.", shown("TierProgram", true));
schema!(
    ProviderShown,
    "A payment provider as shown.",
    shown_closed(PaymentProvider::schema(), true)
);
schema!(PartnerList, "All partners.", listed("Partner"));
schema!(
    ProviderList,
    "All payment providers.",
    ObjectBuilder::new()
        .property(
            "items",
            ArrayBuilder::new().items(shown_closed(PaymentProvider::schema(), false))
        )
        .required("items")
        .into()
);
schema!(
    ProviderReplacement,
    "A provider's new content; `name` is the path's.",
    replacement::<PaymentProvider>("name")
);
schema!(CampaignList, "A partner's campaigns.", listed("Campaign"));
schema!(ExclusionList, "A partner's exclusions.", listed("Exclusion"));
schema!(
    PartnerReplacement,
    "A partner's new content; `code` is the path's.",
    replacement::<Partner>("code")
);
schema!(
    CampaignReplacement,
    "A campaign's new content; `id` and `partner` are the path's.",
    replacement::<Campaign>("id")
);
schema!(
    ExclusionReplacement,
    "An exclusion's new content; `id` and `partner` are the path's.",
    replacement::<Exclusion>("id")
);
schema!(
    PartnerWithKey,
    "A partner as shown, with the signing key just made: its secret is shown this once.",
    AllOfBuilder::new()
        .item(Ref::from_schema_name("PartnerShown"))
        .item(
            ObjectBuilder::new()
                .property("signing_key", SigningKey::schema())
                .required("signing_key")
        )
        .into()
);

/// A new signing key, shown once.
#[derive(ToSchema)]
pub struct SigningKey {
    /// Sent as X-Cezbek-Key-Id.
    key_id: String,
    /// Base64 of 32 random bytes: the HMAC key. Store it now; it is never shown again.
    secret: String,
    note: String,
}

/// A customer's window as a sample may give it: purchases in the tier window (with what was
/// refunded of each), and the cashback each campaign paid per day, for daily caps.
#[derive(ToSchema)]
pub struct SampleWindow {
    #[schema(required = false)]
    purchases: Vec<SamplePurchase>,
    #[schema(required = false)]
    daily_earned: Vec<SampleDailyEarned>,
}

#[derive(ToSchema)]
pub struct SamplePurchase {
    transaction_id: String,
    /// Milliseconds since 1970 (UTC).
    #[schema(schema_with = timestamp_millis)]
    occurred_at: i64,
    amount: i64,
    refunded: i64,
}

#[derive(ToSchema)]
pub struct SampleDailyEarned {
    campaign_id: String,
    /// The partner-local day.
    day: chrono::NaiveDate,
    amount: i64,
}

/// The milliseconds a time can be given in (chrono's range).
fn timestamp_millis() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_millis()))
        .maximum(Some(chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis()))
        .into()
}

/// The audit trail, newest first.
#[derive(ToSchema)]
pub struct AuditPage {
    items: Vec<Revision>,
}

/// What the live rules decide for a sample, and the rules in etcd that could not be read.
#[derive(ToSchema)]
pub struct Evaluation {
    decision: Decision,
    /// Rules in etcd that do not parse (the rewarders skip them too).
    rejected_rules: Vec<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek campaignex",
        version = "1",
        description = "Admins manage partners, campaigns, exclusions and tier programs here. \
            PostgreSQL is the source of truth, with an audit row for every change; each change \
            goes live through etcd within a second. Every rule carries a version: send it back \
            in If-Match to replace or delete, so two admins cannot overwrite each other. Money \
            is integer minor units; times are RFC 3339. Errors are application/problem+json \
            (RFC 9457), a 422 naming every bad field."
    ),
    paths(
        api::openapi_document,
        api::audit,
        api::list_partners,
        api::create_partner,
        api::get_partner,
        api::update_partner,
        api::delete_partner,
        api::rotate_key,
        api::suspend_partner,
        api::reactivate_partner,
        api::evaluate,
        api::list_campaigns,
        api::create_campaign,
        api::get_campaign,
        api::replace_campaign,
        api::delete_campaign,
        api::list_exclusions,
        api::create_exclusion,
        api::get_exclusion,
        api::replace_exclusion,
        api::delete_exclusion,
        api::get_tiers,
        api::put_tiers,
        api::delete_tiers,
        api::list_providers,
        api::create_provider,
        api::get_provider,
        api::replace_provider,
        api::delete_provider,
        crate::backtests::create_backtest,
        crate::backtests::list_backtests,
        crate::backtests::get_backtest,
        crate::backtests::cancel_backtest,
        crate::backtests::backtest_table,
        crate::backtests::budgets,
    ),
    components(schemas(
        Problem,
        FieldError,
        Partner,
        PartnerKey,
        PartnerStatus,
        Campaign,
        CampaignStatus,
        Conditions,
        Exclusion,
        ExclusionTarget,
        Tier,
        TierProgram,
        Decision,
        Revision,
        PartnerShown,
        CampaignShown,
        ExclusionShown,
        TierProgramShown,
        PartnerReplacement,
        CampaignReplacement,
        ExclusionReplacement,
        PaymentProvider,
        AdapterKind,
        ChannelTerms,
        FeeSchedule,
        Hours,
        ProviderShown,
        ProviderReplacement,
        PartnerWithKey,
        api::RotateRequest,
        api::Sample,
        api::AuditEntity,
        crate::backtests::BacktestRequest,
        crate::backtests::BacktestShown,
        crate::backtests::BacktestList,
        crate::backtests::BudgetList,
    )),
    modifiers(&SecuritySchemes, &PartnerLinks)
)]
struct CampaignexApi;

/// Links from the partners a list or a creation answers with to the operations on one partner,
/// naming which field is the path's `{partner}` (its `code`; a client or a stateful test tool
/// could otherwise take the display `name`).
struct PartnerLinks;

impl Modify for PartnerLinks {
    fn modify(&self, document: &mut Document) {
        let paths = &mut document.paths.paths;
        let targets: Vec<String> = paths
            .iter()
            .filter(|(path, _)| path.starts_with("/v1/partners/{partner}"))
            .flat_map(|(_, item)| [&item.get, &item.put, &item.post, &item.delete])
            .filter_map(|operation| operation.as_ref()?.operation_id.clone())
            .collect();
        let Some(partners) = paths.get_mut("/v1/partners") else { return };
        // A partner just made has no tier program yet: reading or deleting one is not a use of
        // what the creation made.
        let sources = [
            (&mut partners.get, "200", "/items/0/code", true),
            (&mut partners.post, "201", "/code", false),
        ];
        for (operation, status, pointer, with_tiers) in sources {
            let response = operation
                .as_mut()
                .and_then(|operation| operation.responses.responses.get_mut(status));
            let Some(RefOr::T(response)) = response else { continue };
            let made = |target: &&String| {
                with_tiers || !matches!(target.as_str(), "get_tiers" | "delete_tiers")
            };
            for target in targets.iter().filter(made) {
                let mut link = Link::builder()
                    .parameter("path.partner", format!("$response.body#{pointer}"))
                    .build();
                // utoipa 5 writes this field as `operation_id`, which no tool reads: the
                // OpenAPI name goes in through the link's map of extra keywords.
                link.extensions
                    .get_or_insert_with(Default::default)
                    .insert("operationId".into(), serde_json::Value::String(target.clone()));
                response.links.insert(target.clone(), RefOr::T(link));
            }
        }
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> Document {
    CampaignexApi::openapi()
}
