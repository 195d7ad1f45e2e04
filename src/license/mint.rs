//! `POST /api/licenses`: a device-bound license for the signed-in user.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey_core::dpop::DpopError;
use latchkey_core::{
    sign_jwt, Audience, Confirmation, LicenseClaims, StatusClaim, StatusRef, LICENSE_TYP,
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::proof::{check_proof, dpop_error, replay_horizon, At};
use crate::error::{AppError, Result};
use crate::http::session::SignedIn;
use crate::http::{ClientInfo, Time};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::licenses::{MintError, NewLicense};
use crate::store::now;

/// A new license.
#[derive(Serialize, ToSchema)]
pub(crate) struct License {
    /// Compact JWS, `typ` `license+jwt`, signed with Ed25519.
    license: String,
    expires_at: Time,
}

#[utoipa::path(
    post,
    path = "/api/licenses",
    tag = "licenses",
    operation_id = "mint_license",
    summary = "Mint a license bound to the DPoP proof key",
    security(("session" = [])),
    params(("DPoP" = String, Header, pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", description = "DPoP proof (RFC 9449), htm POST, htu <origin>/api/licenses")),
    responses(
        (status = 201, description = "The license (Cache-Control: no-store)", body = License),
        (status = 400, description = "`invalid-dpop-proof` or `use-dpop-nonce` (with a DPoP-Nonce header)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`device-limit`: a new device beyond the account's limit; `devices` lists the active ones", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn mint(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Response> {
    let proof = check_proof(
        &state,
        &headers,
        "POST",
        "/api/licenses",
        None,
        At::TokenEndpoint,
    )?;
    let now = now();
    let user_id = signed_in.user_id.clone();
    let profile = state
        .store
        .mint_profile(&user_id, now)
        .await?
        .ok_or_else(AppError::not_signed_in)?;
    let entitlements = profile.entitlements;

    let ttl = i64::try_from(state.settings.license_ttl.as_secs()).unwrap_or(i64::MAX / 4);
    let exp = entitlements
        .iter()
        .filter_map(|e| e.expires_at)
        .fold(now.saturating_add(ttl), i64::min);
    let limit = device_limit(&entitlements, state.settings.max_devices);
    let ent: Vec<String> = entitlements.into_iter().map(|e| e.name).collect();
    let cks: Vec<Map<String, Value>> = profile
        .passkey_jwks
        .iter()
        .filter_map(|jwk| serde_json::from_str(jwk).ok())
        .collect();
    // Time-ordered (UUIDv7): consecutive licenses sit side by side in the
    // `jti` index, so a batch of mints writes a page or two of it, not one each.
    let jti = uuid::Uuid::now_v7().simple().to_string();
    let keyring = state.keys.load();
    let kid = keyring.active.kid.clone();
    let ent_json = serde_json::to_string(&ent).map_err(anyhow::Error::from)?;
    let origin = state.settings.origin.clone();
    let device_name = crate::passkey::device_name(client.user_agent.as_deref());

    let record = NewLicense {
        jti: &jti,
        user_id: &user_id,
        kid: &kid,
        device_jkt: &proof.jkt,
        login_id: &signed_in.login_id,
        credential_id: &signed_in.credential_id,
        entitlements: &ent_json,
        issued_at: now,
        expires_at: exp,
        device_name: &device_name,
        device_limit: limit,
    };
    let audit = AuditEvent {
        actor_user_id: Some(&user_id),
        target_user_id: Some(&user_id),
        target: Some(&jti),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::LicenseMinted)
    };
    // Signed before the transaction: the slot is already known, and the
    // (single, on SQLite) writer should not wait on cryptography.
    let (list_id, idx) = state.slots.next(&state.store).await?;
    let claims = LicenseClaims {
        iss: origin,
        aud: Audience::One(state.settings.audience.clone()),
        sub: user_id.clone(),
        iat: now,
        nbf: Some(now),
        exp,
        jti: jti.clone(),
        ent,
        cnf: Confirmation {
            jkt: proof.jkt.clone(),
        },
        status: Some(StatusClaim {
            status_list: StatusRef {
                idx: u64::try_from(idx).map_err(anyhow::Error::from)?,
                uri: state.settings.status_list_uri(list_id),
            },
        }),
        cks,
        name: Some(profile.username),
        chk: Some(state.settings.check_in_secs),
    };
    let token =
        sign_jwt(&keyring.active.key, &kid, LICENSE_TYP, &claims).map_err(anyhow::Error::from)?;
    let proof_expires = replay_horizon(&state, &proof);
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
            return Err(dpop_error(&state, At::TokenEndpoint, &DpopError::Replayed))
        }
        Err(MintError::Revoked) => return Err(AppError::not_signed_in()),
        Err(MintError::DeviceLimit(max, active)) => {
            return Err(AppError::DeviceLimit {
                max,
                devices: active
                    .into_iter()
                    .map(|(id, name, last_sync)| crate::error::DeviceSummary {
                        id,
                        name,
                        last_sync: crate::http::rfc3339(last_sync),
                    })
                    .collect(),
            })
        }
        Err(MintError::Store(err)) => return Err(err.into()),
    };
    crate::metrics::license_minted();
    let mut response = (
        StatusCode::CREATED,
        Json(License {
            license: token,
            expires_at: Time(exp),
        }),
    )
        .into_response();
    if let Some(key) = &state.dpop_nonce {
        if let Ok(v) = HeaderValue::from_str(&key.issue(now)) {
            response.headers_mut().insert("dpop-nonce", v);
        }
    }
    Ok(response)
}

/// How many devices the account may have at once: the most any of its
/// entitlements allows (each its grant's `max_devices`, or `default`);
/// unlimited when one of them is, and without entitlements (nothing to share).
fn device_limit(
    entitlements: &[crate::store::entitlements::Entitlement],
    default: Option<i64>,
) -> Option<i64> {
    let mut limit = None;
    for e in entitlements {
        let max = e.max_devices.or(default)?;
        limit = Some(limit.map_or(max, |l: i64| l.max(max)));
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::device_limit;
    use crate::store::entitlements::Entitlement;

    fn ent(max_devices: Option<i64>) -> Entitlement {
        Entitlement {
            name: "premium".into(),
            expires_at: None,
            granted_at: 0,
            max_devices,
        }
    }

    #[test]
    fn the_device_limit_is_the_largest_an_entitlement_allows() {
        assert_eq!(device_limit(&[], Some(3)), None, "nothing to share");
        assert_eq!(device_limit(&[ent(None)], None), None, "unset: unlimited");
        assert_eq!(device_limit(&[ent(None)], Some(3)), Some(3));
        assert_eq!(
            device_limit(&[ent(Some(2)), ent(Some(5))], Some(3)),
            Some(5)
        );
        assert_eq!(device_limit(&[ent(Some(2)), ent(None)], Some(3)), Some(3));
        assert_eq!(device_limit(&[ent(Some(2)), ent(None)], None), None);
    }
}
