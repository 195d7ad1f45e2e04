//! Self-service for the signed-in user: profile, passkeys, signing out.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::stepup::{require_step_up, step_up_required};
use super::{clean_name, NameText};
use crate::error::{AppError, Result};
use crate::http::session::SignedIn;
use crate::http::{AppJson, AppPath, ClientInfo, Time};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::credentials::Credential;
use crate::store::now;
use crate::store::revocations::{PasskeyRevocation, PasskeyRules};
use crate::store::users::Role;

/// One of the signed-in user's passkeys.
#[derive(Serialize, ToSchema)]
pub(crate) struct PasskeyInfo {
    /// The credential id, base64url.
    id: String,
    name: String,
    created_at: Time,
    last_used_at: Option<Time>,
    /// The passkey can be synced to other devices (WebAuthn backup eligibility).
    backup_eligible: bool,
    /// The passkey is synced now.
    backup_state: bool,
    /// Who keeps the passkey ("Google Password Manager", "1Password"), known from its
    /// AAGUID; null when the authenticator does not say or is not on the list.
    provider: Option<String>,
}

impl From<&Credential> for PasskeyInfo {
    fn from(c: &Credential) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            created_at: Time(c.created_at),
            last_used_at: c.last_used_at.map(Time),
            backup_eligible: c.backup_eligible,
            backup_state: c.backup_state,
            provider: super::providers::provider_name(&c.aaguid).map(str::to_owned),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EntitlementInfo {
    name: String,
    /// Null for no expiry.
    expires_at: Option<Time>,
}

/// The signed-in user.
#[derive(Serialize, ToSchema)]
pub(crate) struct Me {
    user_id: String,
    username: String,
    display_name: String,
    role: Role,
    entitlements: Vec<EntitlementInfo>,
    passkeys: Vec<PasskeyInfo>,
    /// The passkey this session signed in with.
    current_passkey: String,
    /// Unused recovery codes (`POST /api/me/recovery-codes` makes a new set).
    recovery_codes_left: usize,
    /// The devices (device keys) this account's licenses were minted for, oldest first.
    devices: Vec<crate::devices::DeviceInfo>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    name: NameText,
}

fn no_such_passkey() -> AppError {
    AppError::not_found("no-such-passkey", "You have no passkey with this id.")
}

#[utoipa::path(
    get,
    path = "/api/me",
    tag = "passkeys",
    operation_id = "me",
    summary = "The signed-in user",
    security(("session" = [])),
    responses(
        (status = 200, description = "The user, entitlements and passkeys", body = Me),
    )
)]
pub(crate) async fn me(State(state): State<AppState>, signed_in: SignedIn) -> Result<Json<Me>> {
    let user = signed_in.enabled_user(&state.store).await?;
    let entitlements = state
        .store
        .current_entitlements(&user.id, now())
        .await?
        .into_iter()
        .map(|e| EntitlementInfo {
            name: e.name,
            expires_at: e.expires_at.map(Time),
        })
        .collect();
    let passkeys = state
        .store
        .active_credentials(&user.id)
        .await?
        .iter()
        .map(PasskeyInfo::from)
        .collect();
    let recovery_codes_left = state.store.unused_recovery_codes(&user.id).await?.len();
    let devices = crate::devices::list(&state, &user.id).await?;
    Ok(Json(Me {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        entitlements,
        passkeys,
        current_passkey: signed_in.credential_id,
        recovery_codes_left,
        devices,
    }))
}

#[utoipa::path(
    patch,
    path = "/api/me/passkeys/{id}",
    tag = "passkeys",
    operation_id = "rename_passkey",
    summary = "Rename one of your passkeys",
    security(("session" = [])),
    request_body = Rename,
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 200, description = "Renamed", body = PasskeyInfo),
        (status = 404, description = "No such passkey of yours", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename_passkey(
    State(state): State<AppState>,
    signed_in: SignedIn,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<Rename>,
) -> Result<Json<PasskeyInfo>> {
    let name = clean_name("name", &body.name.0)?;
    if !state
        .store
        .rename_credential(&signed_in.user_id, &id, &name)
        .await?
    {
        return Err(no_such_passkey());
    }
    let credential = state
        .store
        .credential(&id)
        .await?
        .ok_or_else(no_such_passkey)?;
    Ok(Json(PasskeyInfo::from(&credential)))
}

#[utoipa::path(
    delete,
    path = "/api/me/passkeys/{id}",
    tag = "passkeys",
    operation_id = "remove_passkey",
    summary = "Remove one of your passkeys (needs a step-up; ends its sessions, revokes their licenses)",
    security(("session" = [])),
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such passkey of yours", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Your last passkey", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_passkey(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    let audit = AuditEvent {
        actor_user_id: Some(&signed_in.user_id),
        target: Some(&id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::PasskeyRemoved)
    };
    let rules = PasskeyRules {
        owner: Some(&signed_in.user_id),
        keep_one: true,
    };
    let spend = require_step_up(&state, &signed_in)?;
    match state
        .store
        .revoke_credential(
            &id,
            "removed by its owner",
            rules,
            spend.as_deref(),
            &audit,
            now(),
        )
        .await?
    {
        PasskeyRevocation::Revoked(_) => {}
        PasskeyRevocation::Unconfirmed => return Err(step_up_required()),
        PasskeyRevocation::NotFound => return Err(no_such_passkey()),
        PasskeyRevocation::LastPasskey | PasskeyRevocation::LastAdmin => {
            return Err(AppError::conflict(
                "last-passkey",
                "This is your only passkey; add another before removing it.",
            ))
        }
    }
    state.status.refresh(&state.store).await?;
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
    operation_id = "logout",
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
    operation_id = "logout_everywhere",
    summary = "Sign out of every session (needs a step-up)",
    security(("session" = [])),
    responses(
        (status = 204, description = "Every session ended"),
    )
)]
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response> {
    let spend = require_step_up(&state, &signed_in)?;
    state
        .store
        .end_user_sessions(&signed_in.user_id, spend.as_deref(), now())
        .await?
        .ok_or_else(step_up_required)?;
    signed_in.session.flush().await?;
    Ok(signed_out())
}
