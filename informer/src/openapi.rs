//! The informer's OpenAPI document, generated from the handlers' annotations and the types
//! they answer with.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::openapi::SecuritySchemes;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek informer",
        version = "1",
        description = "Reads of the reward ledger: a customer's history and summary, one \
            transaction's explanation, a partner's daily report, and the digests' unsubscribe \
            link. Partners sign their requests (as for the ingestor); admins and customers \
            send bearer tokens. Money is integer minor units. Errors are \
            application/problem+json (RFC 9457)."
    ),
    paths(
        api::openapi_document,
        api::history,
        api::summary,
        api::transaction,
        api::daily_report,
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
