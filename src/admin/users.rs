//! Admin: finding users and seeing everything about one.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ops::no_such_user;
use super::{limit, UserInfo};
use crate::apikeys::{Caller, UsersRead};
use crate::error::Result;
use crate::http::{AppPath, AppQuery, Time};
use crate::state::AppState;
use crate::store::now;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserQuery {
    /// Part of a username, or a user id.
    q: Option<String>,
    /// Exactly this external id.
    external_id: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserSummary {
    #[serde(flatten)]
    user: UserInfo,
    /// Active passkeys.
    passkeys: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserPage {
    users: Vec<UserSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    operation_id = "admin_list_users",
    summary = "Search users",
    security(("session" = []), ("apikey" = ["users:read"])),
    params(UserQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Invalid query", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _caller: Caller<UsersRead>,
    AppQuery(q): AppQuery<UserQuery>,
) -> Result<Json<UserPage>> {
    let limit = limit(q.limit)?;
    let raw = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let key = raw.map(crate::usernames::lookup_key);
    let query = raw.zip(key.as_deref()).map(|(raw, key)| (key, raw));
    let mut rows = state
        .store
        .search_users(
            query,
            q.external_id.as_deref().filter(|s| !s.is_empty()),
            q.cursor.as_deref(),
            limit + 1,
        )
        .await?;
    let next_cursor = (rows.len() as i64 > limit)
        .then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|u| u.username_key.clone())
        })
        .flatten();
    let users = rows
        .iter()
        .map(|u| UserSummary {
            user: UserInfo::from(&u.user),
            passkeys: u.passkeys,
        })
        .collect();
    Ok(Json(UserPage { users, next_cursor }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminPasskey {
    id: String,
    name: String,
    /// The authenticator model (AAGUID); all zeros when the authenticator does not say.
    aaguid: String,
    /// The provider named by the AAGUID ("Apple Passwords", "1Password"), if known.
    provider: Option<String>,
    created_at: Time,
    last_used_at: Option<Time>,
    backup_eligible: bool,
    backup_state: bool,
    revoked_at: Option<Time>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusSlot {
    /// The status list's id.
    id: i64,
    /// The license's index in it.
    idx: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LicenseState {
    Active,
    Revoked,
    Expired,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminLicense {
    jti: String,
    /// RFC 7638 thumbprint of the device key it is bound to.
    device_jkt: String,
    issued_at: Time,
    expires_at: Time,
    status: LicenseState,
    revoked_at: Option<Time>,
    revoked_reason: Option<String>,
    entitlements: Vec<String>,
    status_list: StatusSlot,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminEntitlement {
    name: String,
    expires_at: Option<Time>,
    granted_at: Time,
    active: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    /// A prefix of the session's hash (the cookie value is never stored).
    id: String,
    created_at: Time,
    expires_at: Time,
    authenticated_at: Option<Time>,
    credential_id: Option<String>,
    client_addr: Option<String>,
    user_agent: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserDetail {
    user: UserInfo,
    passkeys: Vec<AdminPasskey>,
    licenses: Vec<AdminLicense>,
    entitlements: Vec<AdminEntitlement>,
    sessions: Vec<SessionInfo>,
    devices: Vec<crate::devices::DeviceInfo>,
}

#[utoipa::path(
    get,
    path = "/api/admin/users/{id}",
    tag = "admin",
    operation_id = "admin_user_detail",
    summary = "A user with passkeys, licenses, entitlements and sessions",
    security(("session" = []), ("apikey" = ["users:read"])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "The user", body = UserDetail),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn user_detail(
    State(state): State<AppState>,
    _caller: Caller<UsersRead>,
    AppPath(id): AppPath<String>,
) -> Result<Json<UserDetail>> {
    let store = &state.store;
    let user = store.user_by_id(&id).await?.ok_or_else(no_such_user)?;
    let now = now();
    let passkeys = store
        .all_credentials(&id)
        .await?
        .into_iter()
        .map(|c| AdminPasskey {
            id: c.id,
            name: c.name,
            provider: crate::passkey::providers::provider_name(&c.aaguid).map(str::to_owned),
            aaguid: c.aaguid,
            created_at: Time(c.created_at),
            last_used_at: c.last_used_at.map(Time),
            backup_eligible: c.backup_eligible,
            backup_state: c.backup_state,
            revoked_at: c.revoked_at.map(Time),
        })
        .collect();
    let licenses = store
        .user_licenses(&id)
        .await?
        .into_iter()
        .map(|l| AdminLicense {
            status: match (l.revoked_at, l.expires_at <= now) {
                (Some(_), _) => LicenseState::Revoked,
                (None, true) => LicenseState::Expired,
                (None, false) => LicenseState::Active,
            },
            entitlements: serde_json::from_str(&l.entitlements).unwrap_or_default(),
            jti: l.jti,
            device_jkt: l.device_jkt,
            issued_at: Time(l.issued_at),
            expires_at: Time(l.expires_at),
            revoked_at: l.revoked_at.map(Time),
            revoked_reason: l.revoked_reason,
            status_list: StatusSlot {
                id: l.list_id,
                idx: l.idx,
            },
        })
        .collect();
    let entitlements = store
        .all_entitlements(&id)
        .await?
        .into_iter()
        .map(|e| AdminEntitlement {
            active: e.expires_at.is_none_or(|t| t > now),
            name: e.name,
            expires_at: e.expires_at.map(Time),
            granted_at: Time(e.granted_at),
        })
        .collect();
    let sessions = store
        .open_sessions(&id, now)
        .await?
        .into_iter()
        .map(|s| SessionInfo {
            id: s.id_hash.chars().take(16).collect(),
            created_at: Time(s.created_at),
            expires_at: Time(s.expires_at),
            authenticated_at: s.authenticated_at.map(Time),
            credential_id: s.credential_id,
            client_addr: s.client_addr,
            user_agent: s.user_agent,
        })
        .collect();
    let devices = crate::devices::list(&state, &id).await?;
    Ok(Json(UserDetail {
        user: UserInfo::from(&user),
        passkeys,
        licenses,
        entitlements,
        sessions,
        devices,
    }))
}
