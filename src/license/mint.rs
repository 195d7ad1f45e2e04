//! `POST /api/licenses`: a device-bound license for the signed-in user.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::dpop::{verify_proof, DpopError, Expected};
use super::sign_jwt;
use super::verify::LICENSE_TYP;
use crate::app::{AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::passkey::session::SignedIn;
use crate::store::audit::AuditEvent;
use crate::store::licenses::{MintError, NewLicense};
use crate::store::now;

/// Reads the single `DPoP` header and checks the proof for this request.
pub(super) fn check_proof(
    state: &AppState,
    headers: &HeaderMap,
    htm: &str,
    path: &str,
    ath: Option<&str>,
    resource: bool,
) -> Result<super::dpop::DpopProof> {
    let now = now();
    let reject = |err: DpopError| {
        let (slug, error) = match err {
            DpopError::NonceRequired => ("use-dpop-nonce", "use_dpop_nonce"),
            _ => ("invalid-dpop-proof", "invalid_dpop_proof"),
        };
        AppError::Dpop {
            resource,
            slug,
            error,
            detail: err.to_string(),
            nonce: state.dpop_nonce.as_ref().map(|k| k.issue(now)),
        }
    };
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(reject(DpopError::Malformed));
    };
    let proof = value.to_str().map_err(|_| reject(DpopError::Malformed))?;
    let htu = format!("{}{path}", state.settings.origin);
    let expected = Expected {
        htm,
        htu: &htu,
        now,
        window: state.settings.dpop_window_secs,
        ath,
        nonce: state.dpop_nonce.as_ref(),
    };
    verify_proof(proof, &expected).map_err(reject)
}

#[utoipa::path(
    post,
    path = "/api/licenses",
    tag = "licenses",
    summary = "Mint a license bound to the DPoP proof key",
    params(("DPoP" = String, Header, description = "DPoP proof (RFC 9449), htm POST, htu <origin>/api/licenses")),
    responses(
        (status = 201, description = "The license (Cache-Control: no-store)", body = crate::openapi::License),
        (status = 400, description = "`invalid-dpop-proof` or `use-dpop-nonce` (with a DPoP-Nonce header)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn mint(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Response> {
    let proof = check_proof(&state, &headers, "POST", "/api/licenses", None, false)?;
    let now = now();
    let user = state
        .store
        .user_by_id(&signed_in.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(AppError::not_signed_in)?;
    let entitlements = state.store.current_entitlements(&user.id, now).await?;
    let credentials = state.store.active_credentials(&user.id).await?;

    let ttl = i64::try_from(state.settings.license_ttl.as_secs()).unwrap_or(i64::MAX / 4);
    let exp = entitlements
        .iter()
        .filter_map(|e| e.expires_at)
        .fold(now.saturating_add(ttl), i64::min);
    let ent: Vec<&str> = entitlements.iter().map(|e| e.name.as_str()).collect();
    let cks: Vec<serde_json::Value> = credentials
        .iter()
        .filter_map(|c| serde_json::from_str(&c.public_jwk).ok())
        .collect();
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let keyring = state.keys.load();
    let kid = keyring.active.kid.clone();
    let ent_json = serde_json::to_string(&ent).map_err(anyhow::Error::from)?;
    let origin = state.settings.origin.clone();

    let record = NewLicense {
        jti: &jti,
        user_id: &user.id,
        kid: &kid,
        device_jkt: &proof.jkt,
        login_id: &signed_in.login_id,
        credential_id: &signed_in.credential_id,
        entitlements: &ent_json,
        issued_at: now,
        expires_at: exp,
    };
    let audit = AuditEvent {
        event: "license.minted",
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        target: Some(&jti),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: None,
    };
    // Signed before the transaction: the slot is already known, and the
    // (single, on SQLite) writer should not wait on cryptography.
    let (list_id, idx) = state.slots.next(&state.store).await?;
    let sign = || {
        let claims = json!({
            "iss": origin,
            "aud": state.settings.audience,
            "sub": user.id,
            "name": user.username,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": jti,
            "ent": ent,
            "cnf": {"jkt": proof.jkt},
            "status": {"status_list": {"idx": idx, "uri": format!("{origin}/api/status-lists/{list_id}")}},
            "cks": cks,
        });
        sign_jwt(&keyring.active.key, &kid, LICENSE_TYP, &claims)
    };
    let token = sign().map_err(AppError::Internal)?;
    let proof_expires = proof.iat + state.settings.dpop_window_secs + 1;
    match state
        .store
        .mint_license(
            &proof.replay_id(),
            proof_expires,
            (list_id, idx),
            record,
            &audit,
        )
        .await
    {
        Ok(()) => {}
        Err(MintError::Replay) => {
            return Err(AppError::Dpop {
                resource: false,
                slug: "invalid-dpop-proof",
                error: "invalid_dpop_proof",
                detail: "this DPoP proof was already used".into(),
                nonce: None,
            })
        }
        Err(MintError::Revoked) => return Err(AppError::not_signed_in()),
        Err(MintError::Db(err)) => return Err(err.into()),
    };
    crate::metrics::license_minted();
    let expires_at = crate::app::rfc3339(exp);
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"license": token, "expires_at": expires_at})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(key) = &state.dpop_nonce {
        if let Ok(v) = HeaderValue::from_str(&key.issue(now)) {
            response.headers_mut().insert("dpop-nonce", v);
        }
    }
    Ok(response)
}

/// `GET /.well-known/jwks.json`, from pre-built bytes.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "licenses",
    summary = "Public keys of licenses and status lists",
    responses(
        (status = 200, description = "JWK set", body = crate::openapi::JwkSet)
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
