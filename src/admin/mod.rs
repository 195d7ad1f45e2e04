//! Administration: the admin API (JSON, admins only) and the command line.

pub(crate) mod api;
pub mod cli;
mod guard;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/overview", get(api::overview))
        .route("/api/admin/users", get(api::list_users))
        .route(
            "/api/admin/users/{id}",
            get(api::user_detail).patch(api::change_role),
        )
        .route("/api/admin/users/{id}/entitlements", post(api::grant))
        .route(
            "/api/admin/users/{id}/entitlements/{name}",
            delete(api::remove_entitlement),
        )
        .route("/api/admin/users/{id}/disable", post(api::disable))
        .route("/api/admin/users/{id}/enable", post(api::enable))
        .route(
            "/api/admin/credentials/{id}",
            delete(api::revoke_credential),
        )
        .route(
            "/api/admin/licenses/{jti}/revoke",
            post(api::revoke_license),
        )
        .route("/api/admin/audit", get(api::audit))
}
