//! Admin: finding users and changing them (entitlements, role, disabled).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::Admin;
use super::{limit, no_such_user, record, user_json};
use crate::admin::cli::valid_entitlement;
use crate::app::{no_store, rfc3339, AppJson, AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::store::licenses::RoleChange;
use crate::store::now;

#[derive(Deserialize)]
pub(crate) struct UserQuery {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    summary = "Search users",
    params(("q" = Option<String>, Query, description = "part of a username, or a user id"), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")),
    responses(
        (status = 200, description = "A page of users", body = crate::openapi::UserPage),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<UserQuery>,
) -> Result<Response> {
    let limit = limit(q.limit);
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut rows = state
        .store
        .search_users(query, q.cursor.as_deref(), limit + 1)
        .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|u| u.username_key.clone())
    });
    let users: Vec<Value> = rows
        .iter()
        .map(|u| json!({"id": u.id, "username": u.username, "display_name": u.display_name, "role": u.role,
                        "disabled": u.disabled_at.is_some(), "created_at": rfc3339(u.created_at), "passkeys": u.passkeys}))
        .collect();
    Ok(no_store(
        json!({"users": users, "next_cursor": next.flatten()}),
    ))
}

#[utoipa::path(
    get,
    path = "/api/admin/users/{id}",
    tag = "admin",
    summary = "A user with passkeys, licenses, entitlements and sessions",
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "The user", body = crate::openapi::UserDetail),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn user_detail(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response> {
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    let now = now();
    let passkeys: Vec<Value> = state
        .store
        .all_credentials(&id)
        .await?
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "name": c.name, "aaguid": c.aaguid, "created_at": rfc3339(c.created_at),
                "last_used_at": c.last_used_at.map(rfc3339), "backup_eligible": c.backup_eligible,
                "backup_state": c.backup_state, "revoked_at": c.revoked_at.map(rfc3339),
            })
        })
        .collect();
    let licenses: Vec<Value> = state.store.user_licenses(&id).await?.iter().map(|l| {
        let status = if l.revoked_at.is_some() { "revoked" } else if l.expires_at <= now { "expired" } else { "active" };
        let entitlements: Value = serde_json::from_str(&l.entitlements).unwrap_or(Value::Array(Vec::new()));
        json!({"jti": l.jti, "device_jkt": l.device_jkt, "issued_at": rfc3339(l.issued_at), "expires_at": rfc3339(l.expires_at),
               "status": status, "revoked_at": l.revoked_at.map(rfc3339), "revoked_reason": l.revoked_reason,
               "entitlements": entitlements, "status_list": {"id": l.list_id, "idx": l.idx}})
    }).collect();
    let entitlements: Vec<Value> = state.store.all_entitlements(&id).await?.iter().map(|e| json!({
        "name": e.name, "expires_at": e.expires_at.map(rfc3339), "granted_at": rfc3339(e.granted_at),
        "active": e.expires_at.is_none_or(|t| t > now),
    })).collect();
    let sessions: Vec<Value> = state.store.open_sessions(&id, now).await?.iter().map(|s| json!({
        "id": s.id_hash.get(..16), "created_at": rfc3339(s.created_at), "expires_at": rfc3339(s.expires_at),
        "authenticated_at": s.authenticated_at.map(rfc3339), "credential_id": s.credential_id,
        "client_addr": s.client_addr, "user_agent": s.user_agent,
    })).collect();
    Ok(no_store(
        json!({"user": user_json(&user), "passkeys": passkeys, "licenses": licenses,
                       "entitlements": entitlements, "sessions": sessions}),
    ))
}

#[derive(Deserialize)]
pub(crate) struct Grant {
    name: String,
    expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/entitlements",
    tag = "admin",
    summary = "Grant an entitlement",
    request_body = crate::openapi::Grant,
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 201, description = "Granted", body = crate::openapi::Granted),
        (status = 400, description = "Invalid name or expiry", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn grant(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(id): Path<String>,
    AppJson(body): AppJson<Grant>,
) -> Result<Response> {
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    if !valid_entitlement(&body.name) {
        return Err(AppError::bad_request(
            "invalid-entitlement",
            "entitlement names use a-z, 0-9 and - _ . : (at most 64 characters)",
        ));
    }
    let until = match body.expires_at.as_deref() {
        None | Some("") => None,
        Some(text) => Some(crate::admin::cli::parse_until(text).map_err(|_| {
            AppError::bad_request(
                "invalid-expiry",
                "expires_at must be an RFC 3339 time or a date",
            )
        })?),
    };
    if until.is_some_and(|t| t <= now()) {
        return Err(AppError::bad_request(
            "invalid-expiry",
            "expires_at is in the past",
        ));
    }
    state
        .store
        .grant_entitlement(&user.id, &body.name, until, now())
        .await?;
    record(
        &state,
        &admin,
        &client,
        "entitlement.granted",
        Some(&user.id),
        Some(&body.name),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "expires_at": until.map(rfc3339)})),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/entitlements/{name}",
    tag = "admin",
    summary = "Remove an entitlement; revokes the licenses carrying it",
    params(("id" = String, Path), ("name" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or entitlement", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_entitlement(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    admin.require_recent_sign_in(&state).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    if !state
        .store
        .remove_entitlement(&user.id, &name, now())
        .await?
    {
        return Err(AppError::not_found(
            "no-such-entitlement",
            "this user does not have that entitlement",
        ));
    }
    state.status.refresh(&state.store).await?;
    crate::metrics::revocation("entitlement");
    record(
        &state,
        &admin,
        &client,
        "entitlement.removed",
        Some(&user.id),
        Some(&name),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct RoleChangeRequest {
    role: String,
}

#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}",
    tag = "admin",
    summary = "Change a role (needs a recent sign-in)",
    request_body = crate::openapi::RoleChange,
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "The user", body = crate::openapi::User),
        (status = 400, description = "Invalid role", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_role(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(id): Path<String>,
    AppJson(body): AppJson<RoleChangeRequest>,
) -> Result<Response> {
    if !matches!(body.role.as_str(), "admin" | "user") {
        return Err(AppError::bad_request(
            "invalid-role",
            "role must be \"admin\" or \"user\"",
        ));
    }
    admin.require_recent_sign_in(&state).await?;
    match state.store.set_role(&id, &body.role).await? {
        RoleChange::Changed => {
            record(
                &state,
                &admin,
                &client,
                "user.role_changed",
                Some(&id),
                Some(&body.role),
            )
            .await?
        }
        RoleChange::Unchanged => {}
        RoleChange::LastAdmin => {
            return Err(AppError::conflict(
                "last-admin",
                "the last administrator cannot be demoted",
            ))
        }
        RoleChange::NoSuchUser => return Err(no_such_user()),
    }
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(no_store(user_json(&user)))
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/disable",
    tag = "admin",
    summary = "Disable a user: sessions end, licenses revoked, sign-in refused",
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    admin.require_recent_sign_in(&state).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    if user.role == "admin" && user.disabled_at.is_none() && state.store.admin_count().await? <= 1 {
        return Err(AppError::conflict(
            "last-admin",
            "the last administrator cannot be disabled",
        ));
    }
    state.store.set_user_disabled(&id, true, now()).await?;
    state.status.refresh(&state.store).await?;
    crate::metrics::revocation("user");
    record(&state, &admin, &client, "user.disabled", Some(&id), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/enable",
    tag = "admin",
    summary = "Re-enable a user",
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "Enabled"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable(
    State(state): State<AppState>,
    admin: Admin,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    state.store.set_user_disabled(&id, false, now()).await?;
    record(&state, &admin, &client, "user.enabled", Some(&id), None).await?;
    Ok(StatusCode::NO_CONTENT)
}
