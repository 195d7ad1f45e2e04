//! Administration: the admin API (JSON, admins only) and the operations it
//! shares with the command line.

pub mod accounts;
mod activity;
mod changes;
mod create;
mod guard;
pub mod ops;
mod recovery;
mod revoke;
mod users;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::Time;
use crate::state::AppState;
use crate::store::users::{Role, User};

pub use guard::{reauthentication_required, Admin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(activity::overview))
        .routes(routes!(users::list_users, create::create_user))
        .routes(routes!(users::user_detail, changes::change_user))
        .routes(routes!(recovery::issue))
        .routes(routes!(changes::grant))
        .routes(routes!(changes::remove_entitlement))
        .routes(routes!(changes::disable))
        .routes(routes!(changes::enable))
        .routes(routes!(revoke::revoke_credential))
        .routes(routes!(revoke::revoke_license))
        .routes(routes!(activity::audit))
}

/// A user as the admin API shows them.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserInfo {
    id: String,
    username: String,
    display_name: String,
    role: Role,
    disabled: bool,
    created_at: Time,
    /// Your id for this user, or the payment customer id; null when not set.
    external_id: Option<String>,
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            disabled: u.disabled_at.is_some(),
            created_at: Time(u.created_at),
            external_id: u.external_id.clone(),
        }
    }
}

/// A page size: 1 to 200, 50 when not given.
fn limit(requested: Option<i64>) -> crate::error::Result<i64> {
    match requested {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(n),
        Some(_) => Err(crate::error::AppError::bad_request(
            "invalid-query",
            "limit must be from 1 to 200.",
        )),
    }
}
