//! The informer's OpenAPI document, generated from the handlers' annotations and the types
//! they answer with.

use utoipa::openapi::OpenApi as Document;
use utoipa::{IntoResponses, OpenApi};

use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::openapi::SecuritySchemes;

use crate::api;

/// A bad path or query parameter, each named with the reason.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
#[allow(dead_code)] // describes an answer the handlers build as a Problem
pub struct BadParameter(Problem);

/// Not authenticated (a partner's signature, or an admin or customer bearer token).
#[derive(IntoResponses)]
#[response(status = 401, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Unauthenticated(Problem);

/// No such partner (or nothing decided under that id).
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct NotFound(Problem);

/// Partners or the ledger cannot be read now.
#[derive(IntoResponses)]
#[response(
    status = 503,
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "seconds"))
)]
#[allow(dead_code)]
pub struct Unavailable(Problem);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek informer",
        version = "1",
        description = "Reads of the reward ledger: a customer's history and summary, their \
            payout balances and payouts, one transaction's explanation, a partner's daily report, and the digests' unsubscribe \
            link. Partners sign their requests (as for the ingestor); admins and customers \
            send bearer tokens. Money is integer minor units. Errors are \
            application/problem+json (RFC 9457)."
    ),
    paths(
        api::openapi_document,
        api::history,
        api::summary,
        api::payouts,
        api::transaction,
        api::daily_report,
        api::days_report,
        api::budgets,
        api::unsubscribe_page,
        api::unsubscribe,
    ),
    components(schemas(Problem, FieldError, api::DayOrTime, api::ReportFormat)),
    modifiers(&SecuritySchemes)
)]
struct InformerApi;

/// The document served at `/openapi.json`.
pub fn document() -> Document {
    InformerApi::openapi()
}
