//! Admin: the endpoints and their delivery log; re-enabling an endpoint that
//! answered 410.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::apikeys::{AuditRead, Caller, HumanOnly};
use crate::error::{AppError, Result};
use crate::http::{AppPath, AppQuery, ClientInfo, Time};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::now;

#[derive(Serialize, ToSchema)]
pub(crate) struct Endpoint {
    id: String,
    url: String,
    /// Still in LATCHKEY_WEBHOOK_URL.
    configured: bool,
    /// Set when the receiver answered 410 Gone; nothing is sent until re-enabled.
    disabled_at: Option<Time>,
    disabled_reason: Option<String>,
    pending: i64,
    failed: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Delivery {
    id: i64,
    endpoint_id: String,
    /// The `webhook-id` header: the same on every attempt.
    msg_id: String,
    /// The event type, e.g. `entitlement.granted`.
    #[serde(rename = "type")]
    kind: String,
    created_at: Time,
    status: DeliveryStatus,
    attempts: i64,
    /// When a pending message is tried next.
    next_attempt_at: Option<Time>,
    /// The receiver's last HTTP status, if it answered.
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<Time>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryLog {
    endpoints: Vec<Endpoint>,
    deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatusFilter {
    Pending,
    Delivered,
    Failed,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// Only this endpoint.
    endpoint: Option<String>,
    /// Only messages in this state.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/admin/webhooks",
    tag = "admin",
    operation_id = "admin_webhook_deliveries",
    summary = "Event-webhook endpoints and their delivery log, newest first",
    security(("session" = []), ("apikey" = ["audit:read"])),
    params(LogQuery),
    responses(
        (status = 200, description = "Endpoints and a page of deliveries", body = DeliveryLog),
        (status = 400, description = "Invalid query or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a key without audit:read", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    _caller: Caller<AuditRead>,
    AppQuery(q): AppQuery<LogQuery>,
) -> Result<Json<DeliveryLog>> {
    let limit = match q.limit {
        None => 50,
        Some(n @ 1..=200) => n,
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid-query",
                "limit must be from 1 to 200.",
            ))
        }
    };
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AppError::bad_request(
                "invalid-cursor",
                "This cursor is not one this API gave out.",
            )
        })?),
    };
    let status = q.status.map(|s| match s {
        StatusFilter::Pending => "pending",
        StatusFilter::Delivered => "delivered",
        StatusFilter::Failed => "failed",
    });
    let endpoints = state
        .store
        .webhook_endpoints()
        .await?
        .into_iter()
        .map(|e| Endpoint {
            id: e.id,
            url: e.url,
            configured: e.active,
            disabled_at: e.disabled_at.map(Time),
            disabled_reason: e.disabled_reason,
            pending: e.pending,
            failed: e.failed,
        })
        .collect();
    let mut rows = state
        .store
        .webhook_deliveries(
            q.endpoint.as_deref().filter(|s| !s.is_empty()),
            status,
            before,
            limit + 1,
        )
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let deliveries = rows
        .into_iter()
        .map(|r| Delivery {
            kind: super::message::event_type(&r.event)
                .map_or(r.event.clone(), |(kind, _)| kind.to_owned()),
            status: match r.status.as_str() {
                "delivered" => DeliveryStatus::Delivered,
                "failed" => DeliveryStatus::Failed,
                _ => DeliveryStatus::Pending,
            },
            next_attempt_at: (r.status == "pending").then_some(Time(r.next_attempt_at / 1000)),
            id: r.id,
            endpoint_id: r.endpoint_id,
            msg_id: r.msg_id,
            created_at: Time(r.at),
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            delivered_at: r.delivered_at.map(Time),
        })
        .collect();
    Ok(Json(DeliveryLog {
        endpoints,
        deliveries,
        next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/api/admin/webhooks/{id}/enable",
    tag = "admin",
    operation_id = "admin_enable_webhook_endpoint",
    summary = "Resume sending to an endpoint that answered 410 Gone (admins only)",
    security(("session" = [])),
    params(("id" = String, Path, description = "endpoint id, ep_…")),
    responses(
        (status = 204, description = "Enabled; its pending messages go out in order"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or called with a key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such disabled endpoint", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable(
    State(state): State<AppState>,
    caller: Caller<HumanOnly>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    let actor = caller.actor(&client);
    let audit = AuditEvent {
        target: Some(&id),
        ..actor.audit(Event::WebhookEndpointEnabled)
    };
    if !state
        .store
        .set_webhook_endpoint_disabled(&id, None, &audit, now())
        .await?
    {
        return Err(AppError::not_found(
            "no-such-endpoint",
            "There is no disabled webhook endpoint with this id.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
