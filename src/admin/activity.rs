//! Admin: the overview (counts, daily activity) and the audit log.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::Admin;
use super::limit;
use crate::app::{no_store, rfc3339, AppState};
use crate::error::{AppError, Result};
use crate::store::now;

#[utoipa::path(
    get,
    path = "/api/admin/overview",
    tag = "admin",
    summary = "Counts and 30 days of activity",
    responses(
        (status = 200, description = "Overview", body = crate::openapi::Overview),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn overview(State(state): State<AppState>, _admin: Admin) -> Result<Response> {
    let now = now();
    let counts = state.store.counts(now).await?;
    let today = now.div_euclid(86_400);
    let first = today - 29;
    let mut days: HashMap<i64, [i64; 3]> = HashMap::new();
    for (day, event, n) in state.store.daily_events(first * 86_400).await? {
        let slot = days.entry(day).or_default();
        match event.as_str() {
            "signin.success" => slot[0] += n,
            "license.minted" => slot[1] += n,
            _ => slot[2] += n,
        }
    }
    let daily: Vec<Value> = (first..=today)
        .map(|day| {
            let [signins, licenses, revocations] = days.get(&day).copied().unwrap_or_default();
            let date = rfc3339(day * 86_400).get(..10).unwrap_or_default().to_owned();
            json!({"day": date, "signins": signins, "licenses": licenses, "revocations": revocations})
        })
        .collect();
    Ok(no_store(json!({
        "counts": {
            "users": counts.users, "admins": counts.admins, "disabled_users": counts.disabled_users,
            "passkeys": counts.passkeys, "active_licenses": counts.active_licenses,
            "revoked_licenses": counts.revoked_licenses, "open_sessions": counts.open_sessions,
        },
        "daily": daily,
    })))
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    user: Option<String>,
    event: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "admin",
    summary = "The audit log, newest first",
    params(("user" = Option<String>, Query), ("event" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::AuditPage),
        (status = 400, description = "Invalid cursor", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a foreign Origin", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn audit(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let limit = limit(q.limit);
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AppError::bad_request("invalid-cursor", "cursor is not one this API gave out")
        })?),
    };
    let mut rows = state
        .store
        .audit_page(
            q.user.as_deref().filter(|s| !s.is_empty()),
            q.event.as_deref().filter(|s| !s.is_empty()),
            before,
            limit + 1,
        )
        .await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let events: Vec<Value> = rows.iter().map(|r| json!({
        "id": r.id, "at": rfc3339(r.at), "event": r.event, "actor_user_id": r.actor_user_id,
        "target_user_id": r.target_user_id, "target": r.target, "client_addr": r.client_addr,
        "user_agent": r.user_agent, "detail": r.detail,
    })).collect();
    Ok(no_store(json!({"events": events, "next_cursor": next})))
}
