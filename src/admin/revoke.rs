//! Admin: revoking passkeys and licenses.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::guard::Admin;
use super::{no_such_user, record};
use crate::app::{AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::store::now;

#[utoipa::path(
    delete,
    path = "/api/admin/credentials/{id}",
    tag = "admin",
    summary = "Revoke a passkey: its sessions end and their licenses are revoked",
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active passkey", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin's last passkey", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_credential(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    admin.require_recent_sign_in(&state).await?;
    let credential = state
        .store
        .credential(&id)
        .await?
        .filter(|c| c.revoked_at.is_none())
        .ok_or_else(|| {
            AppError::not_found("no-such-passkey", "there is no active passkey with this id")
        })?;
    let owner = state
        .store
        .user_by_id(&credential.user_id)
        .await?
        .ok_or_else(no_such_user)?;
    if owner.role == "admin"
        && owner.disabled_at.is_none()
        && state.store.admin_count().await? <= 1
        && state.store.active_credentials(&owner.id).await?.len() <= 1
    {
        return Err(AppError::conflict(
            "last-admin",
            "this is the last administrator's last passkey",
        ));
    }
    state
        .store
        .revoke_credential(&id, "revoked by an administrator", now())
        .await?;
    state.status.refresh(&state.store).await?;
    crate::metrics::revocation("passkey");
    record(
        &state,
        &admin,
        &client,
        "passkey.revoked",
        Some(&owner.id),
        Some(&id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/licenses/{jti}/revoke",
    tag = "admin",
    summary = "Revoke a license and end the session it was minted under",
    params(("jti" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_license(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(jti): Path<String>,
) -> Result<StatusCode> {
    admin.require_recent_sign_in(&state).await?;
    let license = state
        .store
        .revoke_license(&jti, "revoked by an administrator", now())
        .await?
        .ok_or_else(|| {
            AppError::not_found("no-such-license", "there is no license with this id")
        })?;
    state.status.refresh(&state.store).await?;
    crate::metrics::revocation("license");
    record(
        &state,
        &admin,
        &client,
        "license.revoked",
        Some(&license.user_id),
        Some(&jti),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
