//! Administration: the admin API (JSON, admins only) and the command line.

pub(crate) mod activity;
pub mod cli;
mod guard;
pub(crate) mod revoke;
pub(crate) mod users;

use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::app::{rfc3339, AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::store::audit::AuditEvent;
use crate::store::now;
use crate::store::users::User;
use guard::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/overview", get(activity::overview))
        .route("/api/admin/users", get(users::list_users))
        .route(
            "/api/admin/users/{id}",
            get(users::user_detail).patch(users::change_role),
        )
        .route("/api/admin/users/{id}/entitlements", post(users::grant))
        .route(
            "/api/admin/users/{id}/entitlements/{name}",
            delete(users::remove_entitlement),
        )
        .route("/api/admin/users/{id}/disable", post(users::disable))
        .route("/api/admin/users/{id}/enable", post(users::enable))
        .route(
            "/api/admin/credentials/{id}",
            delete(revoke::revoke_credential),
        )
        .route(
            "/api/admin/licenses/{jti}/revoke",
            post(revoke::revoke_license),
        )
        .route("/api/admin/audit", get(activity::audit))
}

fn no_such_user() -> AppError {
    AppError::not_found("no-such-user", "there is no user with this id")
}

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "username": u.username, "display_name": u.display_name, "role": u.role,
           "disabled": u.disabled_at.is_some(), "created_at": rfc3339(u.created_at)})
}

async fn record(
    state: &AppState,
    admin: &Admin,
    client: &ClientInfo,
    event: &str,
    target_user: Option<&str>,
    target: Option<&str>,
) -> Result<()> {
    let e = AuditEvent {
        event,
        actor_user_id: Some(&admin.user.id),
        target_user_id: target_user,
        target,
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: None,
    };
    state.store.audit(&e, now()).await?;
    Ok(())
}

fn limit(requested: Option<i64>) -> i64 {
    requested.unwrap_or(50).clamp(1, 200)
}
