//! Per-user entitlements such as `premium`, with an optional expiry.

use super::audit::{insert_event, AuditEvent};
use super::{dispatch, transaction, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entitlement {
    pub name: String,
    pub expires_at: Option<i64>,
    pub granted_at: i64,
}

impl Store {
    /// Grants (or re-grants with a new expiry) an entitlement, with its audit row.
    pub async fn grant_entitlement(
        &self,
        user_id: &str,
        name: &str,
        expires_at: Option<i64>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO entitlements (user_id, name, expires_at, granted_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (user_id, name) DO UPDATE SET expires_at = excluded.expires_at, granted_at = excluded.granted_at";
        transaction!(self, tx => {
            sqlx::query(sql).bind(user_id).bind(name).bind(expires_at).bind(now).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// The entitlements in force at `now`, by name.
    pub async fn current_entitlements(&self, user_id: &str, now: i64) -> Result<Vec<Entitlement>> {
        let sql = "SELECT name, expires_at, granted_at FROM entitlements \
                   WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY name";
        Ok(
            dispatch!(self.reader(), p => sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(p).await)?,
        )
    }

    /// Every entitlement of a user, expired ones included.
    pub async fn all_entitlements(&self, user_id: &str) -> Result<Vec<Entitlement>> {
        let sql = "SELECT name, expires_at, granted_at FROM entitlements WHERE user_id = $1 ORDER BY name";
        Ok(dispatch!(self.reader(), p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await)?)
    }
}
