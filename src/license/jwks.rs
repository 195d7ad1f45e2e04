//! `GET /.well-known/jwks.json`: the keys that verify licenses and status lists.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Served from bytes built when the keyring loads.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "licenses",
    operation_id = "jwks",
    summary = "Public keys of licenses and status lists",
    responses(
        (status = 200, description = "JWK set (Cache-Control: max-age=300)", body = latchkey_core::PublishedJwkSet, content_type = "application/jwk-set+json")
    )
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.load().jwks.clone();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}
