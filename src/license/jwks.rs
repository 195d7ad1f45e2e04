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

/// The keys an app pins with its code: served from bytes built when the keyring loads.
#[utoipa::path(
    get,
    path = "/latchkey-keys.json",
    tag = "licenses",
    operation_id = "pinned_keys",
    summary = "Signing keys to pin: current and announced next",
    description = "The service worker keeps this manifest with the app shell; `latchkey.js` trusts a stored JWK set only for the keys listed here (or passed as `trustedKeys`). A key made by `latchkey keys rotate` is listed under `next` before it signs.",
    responses(
        (status = 200, description = "Pinned keys (Cache-Control: no-cache)", body = crate::state::keys::PinnedKeys, content_type = "application/json")
    )
)]
pub(crate) async fn pinned_keys(State(state): State<AppState>) -> Response {
    let body = state.keys.load().pins.clone();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
