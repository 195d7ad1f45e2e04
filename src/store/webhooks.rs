//! The event-webhook outbox. Rows are written by a database trigger on the
//! audit log (migration 0005), so an event exists exactly when the change it
//! reports committed. Delivery claims an endpoint with a lease, so with
//! several instances on one database each endpoint has one sender at a time
//! and its messages go out one by one, in order.

use super::audit::{insert_event, AuditEvent};
use super::{on_writer, read, transaction, Result, Store};

/// A message waiting for (or done with) delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub endpoint_id: String,
    pub msg_id: String,
    /// The audit event's name.
    pub event: String,
    pub at: i64,
    pub user_id: Option<String>,
    pub target: Option<String>,
    pub status: String,
    pub attempts: i64,
    /// Milliseconds.
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

const COLUMNS: &str = "id, endpoint_id, msg_id, event, at, user_id, target, status, attempts, \
                       next_attempt_at, last_status, last_error, delivered_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub active: bool,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub pending: i64,
    pub failed: i64,
}

/// How one attempt went.
pub enum Attempt<'a> {
    Delivered {
        status: i64,
        at: i64,
    },
    /// Try again at `retry_at` (ms), or give up with `None`.
    Failed {
        status: Option<i64>,
        error: &'a str,
        retry_at: Option<i64>,
    },
}

impl Store {
    /// Records which endpoints are configured now: new ones start receiving
    /// events, ones no longer configured stop (their rows stay for the log).
    pub async fn sync_webhook_endpoints(&self, configured: &[(String, String)]) -> Result<()> {
        transaction!(self, tx => {
            sqlx::query("UPDATE webhook_endpoints SET active = FALSE").execute(&mut *tx).await?;
            for (id, url) in configured {
                sqlx::query("INSERT INTO webhook_endpoints (id, url, active) VALUES ($1, $2, TRUE) \
                             ON CONFLICT (id) DO UPDATE SET active = TRUE, url = excluded.url")
                    .bind(id).bind(url).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// Takes (or renews) the right to deliver to `endpoint` until `until_ms`;
    /// false while another instance holds it, or when the endpoint is disabled.
    pub async fn claim_webhook_endpoint(
        &self,
        endpoint: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let sql = "UPDATE webhook_endpoints SET lease_owner = $2, lease_until = $4 \
                   WHERE id = $1 AND active AND disabled_at IS NULL \
                   AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)";
        let n = on_writer!(self, p => sqlx::query(sql).bind(endpoint).bind(owner).bind(now_ms).bind(until_ms)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn release_webhook_endpoint(&self, endpoint: &str, owner: &str) -> Result<()> {
        let sql = "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2";
        on_writer!(self, p => sqlx::query(sql).bind(endpoint).bind(owner).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The oldest undelivered message of an endpoint: the only one that may go next.
    pub async fn next_webhook_message(&self, endpoint: &str) -> Result<Option<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_outbox WHERE endpoint_id = $1 AND status = 'pending' ORDER BY id LIMIT 1"
        );
        Ok(read!(self, p => sqlx::query_as(&sql).bind(endpoint).fetch_optional(p).await)?)
    }

    /// Deletes delivered and given-up messages whose event is older than
    /// `before` (seconds); pending ones stay whatever their age, so nothing
    /// waiting is lost and the order per endpoint is kept.
    pub async fn prune_webhook_log(&self, before: i64) -> Result<u64> {
        let sql = format!(
            "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox \
                   WHERE status <> 'pending' AND at < $1 ORDER BY id LIMIT {})",
            super::PRUNE_BATCH
        );
        super::prune_in_batches(|| async {
            Ok(on_writer!(self, p => sqlx::query(&sql).bind(before).execute(p).await.map(|r| r.rows_affected()))?)
        })
        .await
    }

    /// Records an attempt, if `owner` still holds the endpoint's lease.
    pub async fn record_webhook_attempt(
        &self,
        id: i64,
        owner: &str,
        attempt: Attempt<'_>,
    ) -> Result<bool> {
        let held = "EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = webhook_outbox.endpoint_id AND e.lease_owner = $2)";
        let n = match attempt {
            Attempt::Delivered { status, at } => {
                let sql = format!("UPDATE webhook_outbox SET status = 'delivered', attempts = attempts + 1, last_status = $3, \
                                   last_error = NULL, delivered_at = $4 WHERE id = $1 AND status = 'pending' AND {held}");
                on_writer!(self, p => sqlx::query(&sql).bind(id).bind(owner).bind(status).bind(at)
                    .execute(p).await.map(|r| r.rows_affected()))?
            }
            Attempt::Failed {
                status,
                error,
                retry_at,
            } => {
                let sql = format!("UPDATE webhook_outbox SET attempts = attempts + 1, last_status = $3, last_error = $4, \
                                   status = CASE WHEN $5 IS NULL THEN 'failed' ELSE 'pending' END, \
                                   next_attempt_at = COALESCE($5, next_attempt_at) \
                                   WHERE id = $1 AND status = 'pending' AND {held}");
                on_writer!(self, p => sqlx::query(&sql).bind(id).bind(owner).bind(status).bind(error).bind(retry_at)
                    .execute(p).await.map(|r| r.rows_affected()))?
            }
        };
        Ok(n == 1)
    }

    /// Disables (`Some(reason)`) or re-enables (`None`) an endpoint, with its audit row.
    pub async fn set_webhook_endpoint_disabled(
        &self,
        endpoint: &str,
        reason: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<bool> {
        let changed = transaction!(self, tx => {
            let n = match reason {
                Some(reason) => sqlx::query("UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3, \
                                             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND disabled_at IS NULL")
                    .bind(endpoint).bind(now).bind(reason).execute(&mut *tx).await?.rows_affected(),
                None => sqlx::query("UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL \
                                     WHERE id = $1 AND disabled_at IS NOT NULL")
                    .bind(endpoint).execute(&mut *tx).await?.rows_affected(),
            };
            if n == 1 {
                insert_event!(audit, now).execute(&mut *tx).await?;
            }
            n == 1
        });
        Ok(changed)
    }

    /// Every endpoint ever configured, with its queue.
    pub async fn webhook_endpoints(&self) -> Result<Vec<EndpointRow>> {
        let sql = "SELECT e.id, e.url, e.active, e.disabled_at, e.disabled_reason, \
                   (SELECT COUNT(*) FROM webhook_outbox o WHERE o.endpoint_id = e.id AND o.status = 'pending') AS pending, \
                   (SELECT COUNT(*) FROM webhook_outbox o WHERE o.endpoint_id = e.id AND o.status = 'failed') AS failed \
                   FROM webhook_endpoints e ORDER BY e.url, e.id";
        Ok(read!(self, p => sqlx::query_as(sql).fetch_all(p).await)?)
    }

    /// The delivery log, newest first; `before` is the cursor (an id).
    pub async fn webhook_deliveries(
        &self,
        endpoint: Option<&str>,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_outbox WHERE ($1 IS NULL OR endpoint_id = $1) \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        Ok(read!(self, p => sqlx::query_as(&sql)
            .bind(endpoint).bind(status).bind(before).bind(limit).fetch_all(p).await)?)
    }
}
