//! Liveness and readiness probes for load balancers and orchestrators.

use std::time::Duration;

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::store::Store;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "The process is up",
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain")
    )
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "The database can take writes",
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn readyz(State(store): State<Store>) -> Result<&'static str> {
    tokio::time::timeout(Duration::from_secs(1), store.ping())
        .await
        .map_err(|_| AppError::Unavailable("database ping timed out".into()))??;
    Ok("ready")
}
