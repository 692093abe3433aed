//! What every service's generated OpenAPI document shares: the two ways a caller proves who it
//! is, and serving the document itself (at `/openapi.json`, without authentication, so tools
//! such as schemathesis or a client generator can read it).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The security scheme of a partner's signed request (see `partner_auth`).
pub const PARTNER_SIGNATURE: &str = "partnerSignature";
/// The security scheme of an admin (or viewer) bearer token.
pub const BEARER: &str = "bearer";

/// Adds both security schemes to a document (`#[openapi(modifiers(&SecuritySchemes))]`).
#[derive(Debug, Clone, Copy)]
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PARTNER_SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Cezbek-Signature",
                "Lowercase hex HMAC-SHA256, keyed with the base64-decoded secret of one of the \
                 partner's keys, over METHOD \\n PATH \\n TIMESTAMP \\n hex sha256(body), where \
                 PATH includes ?query when there is one; sent with X-Cezbek-Partner, \
                 X-Cezbek-Key-Id and X-Cezbek-Timestamp (unix seconds, within 300 s). Writes \
                 accept each signature once. The README has a worked example (`cezbek sign`).",
            ))),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin or viewer token (CEZBEK_ADMIN_TOKENS)."))
                    .build(),
            ),
        );
    }
}

/// The document as the response of `GET /openapi.json`.
pub fn serve(document: &OpenApi) -> Response {
    match document.to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serialize the OpenAPI document");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
