//! Revocation reaching offline apps: the signed status lists, served from the
//! cache in [`crate::state::status`].

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, Result};
use crate::http::AppPath;
use crate::state::AppState;
use crate::store::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status_list))
}

#[utoipa::path(
    get,
    path = "/api/status-lists/{id}",
    tag = "licenses",
    operation_id = "status_list",
    summary = "A signed status list (application/statuslist+jwt)",
    params(("id" = String, Path, description = "list id, a positive number")),
    responses(
        (status = 200, description = "Status list token; ETag and Cache-Control from ttl", body = String, content_type = "application/statuslist+jwt"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such list", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn status_list(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let not_found = || {
        AppError::not_found(
            "no-such-status-list",
            "There is no status list with this id.",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let built = state
        .status
        .get(&state, id, now())
        .await?
        .ok_or_else(not_found)?;
    let cache_control = format!("public, max-age={}", state.settings.status_list_ttl_secs);
    let mut response = if headers.get(header::IF_NONE_MATCH) == Some(&built.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/statuslist+jwt"),
            )],
            built.body.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, built.etag.clone());
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(response)
}
