//! The append-only audit log of security events and admin actions.

use super::{dispatch, Store};

/// One event to record.
#[derive(Debug, Default, Clone)]
pub struct AuditEvent<'a> {
    pub event: &'a str,
    pub actor_user_id: Option<&'a str>,
    pub target_user_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: Option<&'a str>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub actor_user_id: Option<String>,
    pub target_user_id: Option<String>,
    pub target: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// The insert query for one event, bound and ready to run on any executor.
macro_rules! insert_event {
    ($e:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (at, event, actor_user_id, target_user_id, target, client_addr, user_agent, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind($now)
        .bind($e.event)
        .bind($e.actor_user_id)
        .bind($e.target_user_id)
        .bind($e.target)
        .bind($e.client_addr)
        .bind($e.user_agent)
        .bind($e.detail)
    };
}
pub(crate) use insert_event;

impl Store {
    pub async fn audit(&self, e: &AuditEvent<'_>, now: i64) -> Result<(), sqlx::Error> {
        dispatch!(self.writer(), p => insert_event!(e, now).execute(p).await.map(|_| ()))
    }

    /// Newest first; `before` is the cursor (an id from the previous page).
    pub async fn audit_page(
        &self,
        user_id: Option<&str>,
        event: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, sqlx::Error> {
        let sql = "SELECT id, at, event, actor_user_id, target_user_id, target, client_addr, user_agent, detail \
                   FROM audit_log WHERE ($1 IS NULL OR target_user_id = $1 OR actor_user_id = $1) \
                   AND ($2 IS NULL OR event = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4";
        dispatch!(self.reader(), p => sqlx::query_as::<_, AuditRow>(sql)
            .bind(user_id).bind(event).bind(before).bind(limit).fetch_all(p).await)
    }
}
