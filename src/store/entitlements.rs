//! Per-user entitlements such as `premium`, with an optional expiry.

use super::audit::{insert_event, AuditEvent};
use super::{read, transaction, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entitlement {
    pub name: String,
    pub expires_at: Option<i64>,
    pub granted_at: i64,
    /// Devices it allows at once; `None`: the service's default.
    pub max_devices: Option<i64>,
}

impl Store {
    /// Grants (or re-grants with a new expiry and device limit) an entitlement, with its audit row.
    pub async fn grant_entitlement(
        &self,
        user_id: &str,
        name: &str,
        expires_at: Option<i64>,
        max_devices: Option<i64>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO entitlements (user_id, name, expires_at, granted_at, max_devices) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (user_id, name) DO UPDATE SET expires_at = excluded.expires_at, granted_at = excluded.granted_at, \
                   max_devices = excluded.max_devices";
        transaction!(self, tx => {
            sqlx::query(sql).bind(user_id).bind(name).bind(expires_at).bind(now).bind(max_devices).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// The entitlements in force at `now`, by name.
    pub async fn current_entitlements(&self, user_id: &str, now: i64) -> Result<Vec<Entitlement>> {
        let sql = "SELECT name, expires_at, granted_at, max_devices FROM entitlements \
                   WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY name";
        Ok(read!(self, p => sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(p).await)?)
    }

    /// Every entitlement of a user, expired ones included.
    pub async fn all_entitlements(&self, user_id: &str) -> Result<Vec<Entitlement>> {
        let sql = "SELECT name, expires_at, granted_at, max_devices FROM entitlements WHERE user_id = $1 ORDER BY name";
        Ok(read!(self, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await)?)
    }
}
