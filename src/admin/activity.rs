//! Admin: the overview (counts, daily activity) and the audit log.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::limit;
use crate::apikeys::{AuditRead, Caller, UsersRead};
use crate::error::{AppError, Result};
use crate::http::{rfc3339, AppQuery, Time};
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::now;

#[derive(Serialize, ToSchema)]
pub(crate) struct Counts {
    users: i64,
    admins: i64,
    disabled_users: i64,
    passkeys: i64,
    active_licenses: i64,
    revoked_licenses: i64,
    open_sessions: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Day {
    /// `YYYY-MM-DD`, UTC.
    #[schema(format = Date)]
    day: String,
    signins: i64,
    licenses: i64,
    revocations: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Overview {
    counts: Counts,
    /// The last 30 days, oldest first.
    daily: Vec<Day>,
}

/// The events the daily chart counts, and in which column.
const CHARTED: &[(Event, usize)] = &[
    (Event::SigninSuccess, 0),
    (Event::LicenseMinted, 1),
    (Event::LicenseRevoked, 2),
    (Event::PasskeyRevoked, 2),
    (Event::EntitlementRemoved, 2),
    (Event::UserDisabled, 2),
];

#[utoipa::path(
    get,
    path = "/api/admin/overview",
    tag = "admin",
    operation_id = "admin_overview",
    summary = "Counts and 30 days of activity",
    security(("session" = []), ("apikey" = ["users:read"])),
    responses(
        (status = 200, description = "Overview", body = Overview),
    )
)]
pub(crate) async fn overview(
    State(state): State<AppState>,
    _caller: Caller<UsersRead>,
) -> Result<Json<Overview>> {
    let now = now();
    let c = state.store.counts(now).await?;
    let today = now.div_euclid(86_400);
    let first = today - 29;
    let events: Vec<Event> = CHARTED.iter().map(|(e, _)| *e).collect();
    let mut days: HashMap<i64, [i64; 3]> = HashMap::new();
    for (day, event, n) in state.store.daily_events(first * 86_400, &events).await? {
        if let Some((_, column)) = CHARTED.iter().find(|(e, _)| *e == event) {
            days.entry(day).or_default()[*column] += n;
        }
    }
    let daily = (first..=today)
        .map(|day| {
            let [signins, licenses, revocations] = days.get(&day).copied().unwrap_or_default();
            Day {
                day: rfc3339(day * 86_400)
                    .get(..10)
                    .unwrap_or_default()
                    .to_owned(),
                signins,
                licenses,
                revocations,
            }
        })
        .collect();
    Ok(Json(Overview {
        counts: Counts {
            users: c.users,
            admins: c.admins,
            disabled_users: c.disabled_users,
            passkeys: c.passkeys,
            active_licenses: c.active_licenses,
            revoked_licenses: c.revoked_licenses,
            open_sessions: c.open_sessions,
        },
        daily,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Events by or about this user id.
    user: Option<String>,
    /// Only this event.
    event: Option<Event>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    id: i64,
    at: Time,
    event: Event,
    actor_user_id: Option<String>,
    /// The API key that made the change, and its name.
    actor_key_id: Option<String>,
    actor_key_name: Option<String>,
    target_user_id: Option<String>,
    target: Option<String>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    events: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "admin",
    operation_id = "admin_audit_log",
    summary = "The audit log, newest first",
    security(("session" = []), ("apikey" = ["audit:read"])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Invalid query or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn audit(
    State(state): State<AppState>,
    _caller: Caller<AuditRead>,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let limit = limit(q.limit)?;
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AppError::bad_request(
                "invalid-cursor",
                "This cursor is not one this API gave out.",
            )
        })?),
    };
    let mut rows = state
        .store
        .audit_page(
            q.user.as_deref().filter(|s| !s.is_empty()),
            q.event,
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
    let events = rows
        .into_iter()
        .filter_map(|r| {
            Some(AuditEntry {
                event: Event::parse(&r.event)?,
                id: r.id,
                at: Time(r.at),
                actor_user_id: r.actor_user_id,
                actor_key_id: r.actor_key_id,
                actor_key_name: r.actor_key_name,
                target_user_id: r.target_user_id,
                target: r.target,
                client_addr: r.client_addr,
                user_agent: r.user_agent,
                detail: r.detail,
            })
        })
        .collect();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}
