//! Devices: a device is a device key (the `cnf.jkt` of its licenses), recorded
//! at its first license with a name from its browser and system. Its user
//! renames or removes it; an administrator removes it too. Removing revokes
//! the device's licenses and ends the sign-ins that minted them, so it locks
//! at its next sync and cannot simply mint again.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::ops::no_such_user;
use crate::apikeys::{Caller, LicensesRevoke, Scope};
use crate::error::{AppError, Result};
use crate::http::session::SignedIn;
use crate::http::{AppJson, AppPath, ClientInfo, Time};
use crate::passkey::stepup::{require_step_up, step_up_required};
use crate::passkey::{clean_name, NameText};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::devices::{DeviceRemoval, DeviceRow};
use crate::store::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rename, remove))
        .routes(routes!(admin_remove))
}

/// One of a user's devices.
#[derive(Serialize, ToSchema)]
pub struct DeviceInfo {
    /// The device key's JWK thumbprint (RFC 7638), as licenses carry it in `cnf.jkt`.
    id: String,
    name: String,
    first_seen: Time,
    /// The last license minted for it.
    last_sync: Time,
    /// Its licenses neither revoked nor expired.
    active_licenses: i64,
}

impl From<DeviceRow> for DeviceInfo {
    fn from(d: DeviceRow) -> Self {
        Self {
            id: d.jkt,
            name: d.name,
            first_seen: Time(d.first_seen),
            last_sync: Time(d.last_sync),
            active_licenses: d.active_licenses,
        }
    }
}

/// A user's devices, for `GET /api/me` and the admin user detail.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<DeviceInfo>> {
    Ok(state
        .store
        .devices(user_id, now())
        .await?
        .into_iter()
        .map(DeviceInfo::from)
        .collect())
}

fn no_such_device() -> AppError {
    AppError::not_found("no-such-device", "There is no such device on this account.")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    name: NameText,
}

#[utoipa::path(
    patch,
    path = "/api/me/devices/{id}",
    tag = "licenses",
    operation_id = "rename_device",
    summary = "Rename one of your devices",
    security(("session" = [])),
    request_body = Rename,
    params(("id" = String, Path, description = "device id (the key's JWK thumbprint)")),
    responses(
        (status = 204, description = "Renamed"),
        (status = 404, description = "No such device of yours", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename(
    State(state): State<AppState>,
    signed_in: SignedIn,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<Rename>,
) -> Result<StatusCode> {
    let name = clean_name("name", &body.name.0)?;
    if !state
        .store
        .rename_device(&signed_in.user_id, &id, &name)
        .await?
    {
        return Err(no_such_device());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/me/devices/{id}",
    tag = "licenses",
    operation_id = "remove_device",
    summary = "Remove one of your devices (needs a step-up): its licenses are revoked and the sign-ins that minted them end (it locks at its next sync)",
    security(("session" = [])),
    params(("id" = String, Path, description = "device id (the key's JWK thumbprint)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such device of yours", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`device-removals-exhausted`: `LATCHKEY_DEVICE_REMOVALS_PER_30D` reached", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    let user = signed_in.enabled_user(&state.store).await?;
    // A stolen session must not sign the owner's devices out or spend their removals.
    let spend = require_step_up(&state, &signed_in)?;
    let audit = AuditEvent {
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        target: Some(&id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::DeviceRemoved)
    };
    match state
        .store
        .remove_device(
            &user.id,
            &id,
            Some(state.settings.device_removals_per_30d),
            spend.as_deref(),
            &audit,
            now(),
        )
        .await?
    {
        DeviceRemoval::Removed => {}
        DeviceRemoval::NotFound => return Err(no_such_device()),
        DeviceRemoval::Unconfirmed => return Err(step_up_required()),
        DeviceRemoval::LimitReached => {
            return Err(AppError::conflict(
                "device-removals-exhausted",
                format!(
                    "You removed {} devices in the last 30 days, as many as allowed; ask support to remove this one.",
                    state.settings.device_removals_per_30d
                ),
            ))
        }
    }
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/devices/{device}",
    tag = "admin",
    operation_id = "admin_remove_device",
    summary = "Remove a user's device: its licenses are revoked",
    security(("session" = []), ("apikey" = ["licenses:revoke"])),
    params(("id" = String, Path, description = "user id"), ("device" = String, Path, description = "device id (the key's JWK thumbprint)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or device", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn admin_remove(
    State(state): State<AppState>,
    caller: Caller<LicensesRevoke>,
    client: ClientInfo,
    AppPath((id, device)): AppPath<(String, String)>,
) -> Result<StatusCode> {
    let actor = caller.actor(&client);
    actor.require(Some(Scope::LicensesRevoke))?;
    let spend = actor.confirm_destructive(&state.store).await?;
    state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    let audit = AuditEvent {
        target_user_id: Some(&id),
        target: Some(&device),
        ..actor.audit(Event::DeviceRemoved)
    };
    match state
        .store
        .remove_device(&id, &device, None, spend.as_deref(), &audit, now())
        .await?
    {
        DeviceRemoval::Removed => {}
        // Administrators are not limited (no limit was passed).
        DeviceRemoval::LimitReached => return Err(no_such_device()),
        DeviceRemoval::NotFound => return Err(no_such_device()),
        DeviceRemoval::Unconfirmed => return Err(crate::admin::reauthentication_required()),
    }
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
