//! Self-service for the signed-in user: profile, passkeys, signing out.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_sessions::Session;

use super::clean_name;
use super::session::SignedIn;
use crate::app::{rfc3339, AppJson, AppState, ClientInfo};
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

fn no_store(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) async fn me(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response> {
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
pub(super) struct Rename {
    name: String,
}

pub(super) async fn rename_passkey(
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

pub(super) async fn remove_passkey(
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

pub(super) async fn logout(session: Session) -> Result<Response> {
    session.flush().await?;
    Ok(signed_out())
}

pub(super) async fn logout_everywhere(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response> {
    state.store.end_user_sessions(&signed_in.user_id).await?;
    signed_in.session.flush().await?;
    Ok(signed_out())
}
