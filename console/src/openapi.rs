//! The console's OpenAPI document, generated from the handlers' annotations: sign-in, the
//! pipeline's health and the pass-through to the services (whose own documents describe
//! what lies behind it).

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use cezbek_platform::http::{FieldError, Problem};

use crate::api;

/// The session cookie a sign-in sets.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::session::COOKIE))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek console",
        version = "1",
        description = "The console's web app and what it calls: POST /session exchanges an \
            admin or viewer token for a session cookie (HttpOnly, SameSite=Strict); every \
            write carries the session's CSRF token in X-CSRF-Token; /api/{service}/… calls a \
            service's API with the signed-in person's token. Errors are \
            application/problem+json (RFC 9457)."
    ),
    paths(
        crate::assets::index,
        crate::assets::asset,
        api::openapi_document,
        api::sign_in,
        api::current_session,
        api::sign_out,
        api::pipeline_health,
        api::currencies,
        api::forward,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SessionCookie)
)]
struct ConsoleApi;

/// The document served at `/openapi.json`.
pub fn document() -> Document {
    ConsoleApi::openapi()
}
