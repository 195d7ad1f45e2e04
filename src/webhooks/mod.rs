//! Event webhooks out, following the Standard Webhooks specification: a
//! durable outbox filled in the same transaction as each change, a sender per
//! endpoint with retries on a schedule, and the delivery log in the admin API.

mod log;
pub mod message;
mod sender;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use sender::{endpoint_id, start};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(log::deliveries))
        .routes(routes!(log::enable))
}
