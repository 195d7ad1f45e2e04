//! Admin: changing a user's entitlements, role, external id and whether they may sign in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ops::{self, no_such_user};
use super::UserInfo;
use crate::apikeys::{Caller, EntitlementsWrite, UsersWrite};
use crate::error::{AppError, Result};
use crate::http::{AppJson, AppPath, ClientInfo, Time};
use crate::state::AppState;
use crate::store::users::Role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grant {
    /// a-z, 0-9 and `- _ . :`, at most 64 characters.
    #[schema(pattern = "^[a-z0-9._:-]{1,64}$")]
    name: String,
    /// RFC 3339 time or a date (the end of that day, UTC); none for no expiry.
    #[serde(default)]
    expires_at: Option<String>,
    /// Devices it allows at once (1 to 10000); none for `LATCHKEY_MAX_DEVICES`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    max_devices: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Granted {
    name: String,
    expires_at: Option<Time>,
    max_devices: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/entitlements",
    tag = "admin",
    operation_id = "admin_grant_entitlement",
    summary = "Grant an entitlement",
    security(("session" = []), ("apikey" = ["entitlements:write"])),
    request_body = Grant,
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 201, description = "Granted", body = Granted),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or expiry", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn grant(
    State(state): State<AppState>,
    caller: Caller<EntitlementsWrite>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<Grant>,
) -> Result<(StatusCode, Json<Granted>)> {
    let until = match body.expires_at.as_deref() {
        None | Some("") => None,
        Some(text) => Some(ops::parse_until(text).ok_or_else(|| {
            AppError::Unprocessable(
                "invalid-expiry",
                "expires_at must be an RFC 3339 time or a date (YYYY-MM-DD).".into(),
            )
        })?),
    };
    ops::grant_entitlement(
        &state.store,
        &caller.actor(&client),
        &id,
        &body.name,
        until,
        body.max_devices,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Granted {
            name: body.name,
            expires_at: until.map(Time),
            max_devices: body.max_devices,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/entitlements/{name}",
    tag = "admin",
    operation_id = "admin_remove_entitlement",
    summary = "Remove an entitlement; revokes the licenses carrying it",
    security(("session" = []), ("apikey" = ["entitlements:write"])),
    params(("id" = String, Path, description = "user id"), ("name" = String, Path, description = "entitlement name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or entitlement", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_entitlement(
    State(state): State<AppState>,
    caller: Caller<EntitlementsWrite>,
    client: ClientInfo,
    AppPath((id, name)): AppPath<(String, String)>,
) -> Result<StatusCode> {
    ops::remove_entitlement(&state.store, &caller.actor(&client), &id, &name).await?;
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Some(None)` for an explicit `null`, `None` for an absent member.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    /// Only administrators signed in with a passkey change roles (needs a recent sign-in).
    #[serde(default)]
    role: Option<Role>,
    /// Your id for this user (or the payment customer id); null clears it. Unique.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[!-~]{1,255}$")]
    external_id: Option<Option<String>>,
}

#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}",
    tag = "admin",
    operation_id = "admin_change_user",
    summary = "Change a role (admins, recent sign-in) or the external id (admins, users:write keys)",
    security(("session" = []), ("apikey" = ["users:write"])),
    request_body = UserChange,
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "The user", body = UserInfo),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin, or the external id is another user's", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing to change, or an invalid external id", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_user(
    State(state): State<AppState>,
    caller: Caller<UsersWrite>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<UserChange>,
) -> Result<Json<UserInfo>> {
    let actor = caller.actor(&client);
    match (&body.role, &body.external_id) {
        (None, None) => {
            return Err(AppError::Unprocessable(
                "nothing-to-change",
                "Give a role or an external_id to change.".into(),
            ))
        }
        // Each is its own transaction: asking for both at once could leave one done.
        (Some(_), Some(_)) => {
            return Err(AppError::Unprocessable(
                "one-change-at-a-time",
                "Change the role and the external id in separate requests.".into(),
            ))
        }
        _ => {}
    }
    if let Some(role) = body.role {
        ops::set_role(&state.store, &actor, &id, role).await?;
    }
    if let Some(external_id) = &body.external_id {
        super::accounts::set_external_id(&state.store, &actor, &id, external_id.as_deref()).await?;
    }
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(Json(UserInfo::from(&user)))
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/disable",
    tag = "admin",
    operation_id = "admin_disable_user",
    summary = "Disable a user: sessions end, licenses revoked, sign-in refused",
    security(("session" = []), ("apikey" = ["users:write"])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable(
    State(state): State<AppState>,
    caller: Caller<UsersWrite>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    ops::set_disabled(&state.store, &caller.actor(&client), &id, true).await?;
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/enable",
    tag = "admin",
    operation_id = "admin_enable_user",
    summary = "Re-enable a user",
    security(("session" = []), ("apikey" = ["users:write"])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "Enabled"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable(
    State(state): State<AppState>,
    caller: Caller<UsersWrite>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    ops::set_disabled(&state.store, &caller.actor(&client), &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
