//! The OpenAPI 3.1 document: the features' routers document their own paths
//! (`utoipa_axum::routes!`), and this module adds what is common to all of
//! them: info, tags, security schemes, and the problems any operation of a
//! kind can answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::OpenApi;

use crate::http::ratelimit::class_of;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Passkey sign-in and offline, device-bound entitlement licenses for PWAs. \
                       Errors are RFC 9457 problem documents; state-changing requests need an Origin equal to the service's.",
        license(name = "Apache-2.0")
    ),
    paths(openapi_json),
    components(schemas(crate::error::Problem)),
    tags(
        (name = "passkeys", description = "Registration, sign-in and self-service"),
        (name = "licenses", description = "Offline licenses, keys, status lists and the premium example"),
        (name = "admin", description = "Administration (admins, and API keys with the scopes an operation lists)"),
        (name = "billing", description = "Payment webhooks: signed by the provider, no session"),
        (name = "operations", description = "Health and documentation"),
    )
)]
struct Base;

/// The whole document: the base, the features' paths, the security schemes
/// and the common problem answers.
pub fn document(features: impl IntoIterator<Item = Document>) -> Document {
    let mut doc = Base::openapi();
    for part in features {
        doc.merge(part);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "latchkey",
            "The session cookie set by a passkey sign-in (`__Host-latchkey` on https).",
        ))),
    );
    components.add_security_scheme(
        "dpop",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`DPoP <license>`, with a `DPoP` proof header signed by the license's device key (RFC 9449).",
        ))),
    );
    components.add_security_scheme(
        "apikey",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("lk_…")
                .description(Some(
                    "An API key (`Authorization: Bearer lk_…`, made by an administrator); \
                     the scopes an operation lists are the ones a key needs. No cookie or Origin is needed.",
                ))
                .build(),
        ),
    );
    add_common_problems(&mut doc);
    doc
}

/// Adds the problems any operation of a kind can answer, so each handler
/// documents only its own: 401 where a session is needed, 403 for
/// non-admins on the admin API and for a foreign Origin, 413 and 415 on bodies,
/// 422 on JSON of the wrong shape, 429 on rate-limited routes, 503 wherever
/// the database is used, 400 where path or query parameters are read.
fn add_common_problems(doc: &mut Document) {
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                crate::error::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let database = !matches!(
            path.as_str(),
            "/healthz" | "/.well-known/jwks.json" | "/openapi.json"
        );
        let session = path.starts_with("/api/")
            && !path.starts_with("/api/status-lists/")
            && !path.starts_with("/api/webhooks/");
        let limited = class_of(path).is_some();
        let operations = [
            (false, item.get.as_mut()),
            (true, item.post.as_mut()),
            (true, item.patch.as_mut()),
            (true, item.delete.as_mut()),
        ];
        for (write, operation) in operations {
            let Some(operation) = operation else { continue };
            let has_body = operation.request_body.is_some();
            let signed_in = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut operation.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(description).into());
            };
            if signed_in {
                add(
                    "401",
                    "Not signed in (`not-signed-in`), or the credentials were refused",
                );
            }
            if path.starts_with("/api/admin/") {
                add(
                    "403",
                    "Not an administrator (`not-admin`), or a foreign Origin",
                );
            }
            if write && session {
                add("403", "Origin is not the service's origin");
            }
            if write {
                add("413", "Body over the limit");
            }
            if has_body {
                add("400", "Malformed JSON");
                add(
                    "415",
                    "The body is not JSON (send Content-Type: application/json)",
                );
                add(
                    "422",
                    "JSON of the wrong shape: a missing, unknown or mistyped field",
                );
            }
            if has_params {
                add("400", "Invalid path or query parameter");
            }
            if limited {
                add("429", "Rate limited; see Retry-After");
            }
            if database {
                add("503", "Database unavailable; retry");
            }
        }
    }
}

/// The document, serialized once when the router is built.
#[derive(Clone)]
pub struct Serialized(pub Arc<Bytes>);

/// The OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(State(doc): State<Serialized>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::clone(&doc.0),
    )
}
