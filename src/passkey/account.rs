//! Self-service for the signed-in user: profile, passkeys, signing out.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::clean_name;
use super::session::SignedIn;
use crate::app::{no_store, rfc3339, AppJson, AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::store::audit::AuditEvent;
use crate::store::credentials::Credential;
use crate::store::now;

fn passkey_json(c: &Credential) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "created_at": rfc3339(c.created_at),
        "last_used_at": c.last_used_at.map(rfc3339),
        "backup_eligible": c.backup_eligible,
        "backup_state": c.backup_state,
    })
}

#[utoipa::path(
    get,
    path = "/api/me",
    tag = "passkeys",
    summary = "The signed-in user",
    responses(
        (status = 200, description = "The user, entitlements and passkeys", body = crate::openapi::Me),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn me(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response> {
    let user = state
        .store
        .user_by_id(&signed_in.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(AppError::not_signed_in)?;
    let entitlements: Vec<Value> = state
        .store
        .current_entitlements(&user.id, now())
        .await?
        .iter()
        .map(|e| json!({"name": e.name, "expires_at": e.expires_at.map(rfc3339)}))
        .collect();
    let passkeys: Vec<Value> = state
        .store
        .active_credentials(&user.id)
        .await?
        .iter()
        .map(passkey_json)
        .collect();
    Ok(no_store(json!({
        "user_id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "entitlements": entitlements,
        "passkeys": passkeys,
        "current_passkey": signed_in.credential_id,
    })))
}

#[derive(Deserialize)]
pub(crate) struct Rename {
    name: String,
}

#[utoipa::path(
    patch,
    path = "/api/me/passkeys/{id}",
    tag = "passkeys",
    summary = "Rename one of your passkeys",
    request_body = crate::openapi::Rename,
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 200, description = "Renamed", body = crate::openapi::Passkey),
        (status = 400, description = "Invalid name", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such passkey of yours", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename_passkey(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    AppJson(body): AppJson<Rename>,
) -> Result<Response> {
    let name = clean_name("name", &body.name)?;
    if !state
        .store
        .rename_credential(&signed_in.user_id, &id, &name)
        .await?
    {
        return Err(AppError::not_found(
            "no-such-passkey",
            "you have no passkey with this id",
        ));
    }
    let credential = state.store.credential(&id).await?.ok_or_else(|| {
        AppError::not_found("no-such-passkey", "you have no passkey with this id")
    })?;
    Ok(no_store(passkey_json(&credential)))
}

#[utoipa::path(
    delete,
    path = "/api/me/passkeys/{id}",
    tag = "passkeys",
    summary = "Remove one of your passkeys (ends its sessions, revokes their licenses)",
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such passkey of yours", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Your last passkey", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_passkey(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let active = state.store.active_credentials(&signed_in.user_id).await?;
    if !active.iter().any(|c| c.id == id) {
        return Err(AppError::not_found(
            "no-such-passkey",
            "you have no passkey with this id",
        ));
    }
    if active.len() == 1 {
        return Err(AppError::conflict(
            "last-passkey",
            "this is your only passkey; add another before removing it",
        ));
    }
    state
        .store
        .revoke_credential(&id, "removed by its owner", now())
        .await?;
    state.status.refresh(&state.store).await?;
    let event = AuditEvent {
        event: "passkey.removed",
        actor_user_id: Some(&signed_in.user_id),
        target_user_id: Some(&signed_in.user_id),
        target: Some(&id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: None,
    };
    state.store.audit(&event, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn signed_out() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            axum::http::HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\""),
        )],
    )
        .into_response()
}

#[utoipa::path(
    post,
    path = "/api/logout",
    tag = "passkeys",
    summary = "Sign out (deletes the session server-side)",
    responses(
        (status = 204, description = "Signed out; sends Clear-Site-Data"),
    )
)]
pub(crate) async fn logout(session: tower_sessions::Session) -> Result<Response> {
    session.flush().await?;
    Ok(signed_out())
}

#[utoipa::path(
    post,
    path = "/api/logout/everywhere",
    tag = "passkeys",
    summary = "Sign out of every session",
    responses(
        (status = 204, description = "Every session ended"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response> {
    state.store.end_user_sessions(&signed_in.user_id).await?;
    signed_in.session.flush().await?;
    Ok(signed_out())
}
