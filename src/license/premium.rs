//! `GET /api/premium/example`: a resource that only a DPoP-bound license with
//! the `premium` entitlement opens (RFC 9449 §7).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::dpop::ath;
use super::mint::check_proof;
use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::store::now;

fn invalid_token(detail: &str) -> AppError {
    AppError::Dpop {
        resource: true,
        slug: "invalid-token",
        error: "invalid_token",
        detail: detail.to_owned(),
        nonce: None,
    }
}

#[utoipa::path(
    get,
    path = "/api/premium/example",
    tag = "licenses",
    summary = "Premium example: a DPoP-bound license with the premium entitlement",
    params(("Authorization" = String, Header, description = "DPoP <license>"), ("DPoP" = String, Header, description = "proof with ath")),
    responses(
        (status = 200, description = "Premium content", body = crate::openapi::Premium),
        (status = 401, description = "License or proof refused (WWW-Authenticate: DPoP)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No premium entitlement", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn example(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            invalid_token("send the license as Authorization: DPoP <license> with a DPoP proof")
        })?;
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => token.trim(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
            return Err(invalid_token(
                "this license is bound to a device key: use the DPoP scheme with a proof",
            ))
        }
        _ => return Err(invalid_token("unsupported authorization scheme")),
    };
    let proof = check_proof(
        &state,
        &headers,
        "GET",
        "/api/premium/example",
        Some(&ath(token)),
        true,
    )?;
    let keyring = state.keys.load();
    let claims = keyring
        .verifier
        .verify(token, now())
        .map_err(|e| invalid_token(&format!("license rejected: {e}")))?;
    if claims.jkt != proof.jkt {
        return Err(invalid_token(
            "the DPoP proof was signed by another key than the license is bound to",
        ));
    }
    let proof_expires = proof.iat + state.settings.dpop_window_secs + 1;
    if !state
        .store
        .use_dpop_proof(&proof.replay_id(), proof_expires)
        .await?
    {
        return Err(invalid_token("this DPoP proof was already used"));
    }
    if !state.store.license_in_force(&claims.jti).await? {
        return Err(invalid_token("this license has been revoked"));
    }
    if !claims.ent.iter().any(|e| e == "premium") {
        return Err(AppError::forbidden(
            "missing-entitlement",
            "this license does not carry the premium entitlement",
        ));
    }
    let mut response = Json(json!({
        "message": "Premium content unlocked",
        "user_id": claims.sub,
        "license_expires_at": crate::app::rfc3339(claims.exp),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
