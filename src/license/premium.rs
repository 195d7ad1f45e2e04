//! `GET /api/premium/example`: a resource that only a DPoP-bound license with
//! the `premium` entitlement opens (RFC 9449 §7).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use latchkey_core::dpop::{ath, DpopError};
use serde::Serialize;
use utoipa::ToSchema;

use super::proof::{check_proof, dpop_error, replay_horizon, At};
use crate::error::{AppError, Result};
use crate::http::Time;
use crate::state::AppState;
use crate::store::now;

/// The premium example's content.
#[derive(Serialize, ToSchema)]
pub(crate) struct Premium {
    message: String,
    user_id: String,
    license_expires_at: Time,
}

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
    operation_id = "premium_example",
    summary = "Premium example: a DPoP-bound license with the premium entitlement",
    security(("dpop" = [])),
    params(("DPoP" = String, Header, pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", description = "DPoP proof (RFC 9449) with ath")),
    responses(
        (status = 200, description = "Premium content", body = Premium),
        (status = 401, description = "License or proof refused (WWW-Authenticate: DPoP)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No premium entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn example(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Premium>> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            invalid_token("Send the license as Authorization: DPoP <license>, with a DPoP proof.")
        })?;
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => token.trim(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
            return Err(invalid_token(
                "This license is bound to a device key: use the DPoP scheme with a proof.",
            ))
        }
        _ => return Err(invalid_token("Use the DPoP authorization scheme.")),
    };
    let proof = check_proof(
        &state,
        &headers,
        "GET",
        "/api/premium/example",
        Some(&ath(token)),
        At::Resource,
    )?;
    let claims = state
        .keys
        .load()
        .verify_license(token, now())
        .map_err(|e| invalid_token(&format!("The license was refused: {e}.")))?;
    if claims.jkt() != proof.jkt {
        return Err(invalid_token(
            "The DPoP proof was signed by another key than the one the license is bound to.",
        ));
    }
    // Every check that needs no write comes first: a refused request writes nothing.
    if !claims.ent.iter().any(|e| e == "premium") {
        return Err(AppError::forbidden(
            "missing-entitlement",
            "This license does not carry the premium entitlement.",
        ));
    }
    // From the database, not a cached copy: a revocation made on any
    // instance (or with the CLI) is refused at once everywhere.
    if !state.store.license_in_force(&claims.jti).await? {
        return Err(invalid_token("This license has been revoked."));
    }
    if !state
        .store
        .use_dpop_proof(&proof.replay_id(), replay_horizon(&state, &proof))
        .await?
    {
        return Err(dpop_error(&state, At::Resource, &DpopError::Replayed));
    }
    Ok(Json(Premium {
        message: "Premium content unlocked".into(),
        user_id: claims.sub.clone(),
        license_expires_at: Time(claims.exp),
    }))
}
