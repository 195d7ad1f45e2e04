//! API keys for machines: `lk_…` secrets with scopes, made and revoked by
//! administrators (admin page or `latchkey apikey …`), accepted on the admin
//! routes their scopes allow.

mod auth;
pub mod ops;
mod routes;
mod scope;
pub mod secret;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use auth::{bearer, missing, ApiKey, Caller};
pub use scope::{
    AuditRead, EntitlementsWrite, HumanOnly, LicensesRevoke, Needs, Scope, UsersRead, UsersWrite,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::list, routes::create))
        .routes(routes!(routes::revoke))
        .routes(routes!(routes::current))
}
