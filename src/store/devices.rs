//! Devices: the device keys a user's licenses are bound to.

use super::audit::{insert_event, AuditEvent};
use super::revocations::BUMP_LISTS;
use super::{on_writer, read, spend_confirmation, transaction, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    /// The device key's JWK thumbprint (the licenses' `cnf.jkt`).
    pub jkt: String,
    pub name: String,
    pub first_seen: i64,
    pub last_sync: i64,
    /// Licenses for this device neither revoked nor expired.
    pub active_licenses: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeviceRemoval {
    Removed,
    NotFound,
    /// The passkey confirmation it needed was already spent.
    Unconfirmed,
    /// The user already removed as many devices as allowed in 30 days.
    LimitReached,
}

impl Store {
    /// A user's devices (not removed), oldest first.
    pub async fn devices(&self, user_id: &str, now: i64) -> Result<Vec<DeviceRow>> {
        let sql = "SELECT d.jkt, d.name, d.first_seen, d.last_sync, \
                   (SELECT COUNT(*) FROM licenses l WHERE l.user_id = d.user_id AND l.device_jkt = d.jkt \
                    AND l.revoked_at IS NULL AND l.expires_at > $2) AS active_licenses \
                   FROM devices d WHERE d.user_id = $1 AND d.removed_at IS NULL ORDER BY d.first_seen, d.jkt";
        Ok(read!(self, p => sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(p).await)?)
    }

    pub async fn rename_device(&self, user_id: &str, jkt: &str, name: &str) -> Result<bool> {
        let sql =
            "UPDATE devices SET name = $3 WHERE user_id = $1 AND jkt = $2 AND removed_at IS NULL";
        let done = on_writer!(self, p => sqlx::query(sql).bind(user_id).bind(jkt).bind(name)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Removes a device: its licenses are revoked (the status lists change),
    /// the sessions that minted them end, and it no longer counts; with its
    /// audit row, in one transaction.
    pub async fn remove_device(
        &self,
        user_id: &str,
        jkt: &str,
        removals_per_30d: Option<i64>,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<DeviceRemoval> {
        let outcome = transaction!(self, tx => {
            if let Some(allowed) = removals_per_30d {
                // The user's own removals, as the audit log (kept at least 30 days) has them.
                let recent: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM audit_log WHERE event = 'device.removed' AND target_user_id = $1 \
                     AND actor_user_id = $1 AND at > $2")
                    .bind(user_id).bind(now - 30 * 86_400).fetch_one(&mut *tx).await?;
                if recent >= allowed {
                    return Ok(DeviceRemoval::LimitReached);
                }
            }
            let removed = sqlx::query("UPDATE devices SET removed_at = $3 WHERE user_id = $1 AND jkt = $2 AND removed_at IS NULL")
                .bind(user_id).bind(jkt).bind(now).execute(&mut *tx).await?.rows_affected();
            if removed == 0 {
                return Ok(DeviceRemoval::NotFound);
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(DeviceRemoval::Unconfirmed);
            }
            // The sign-ins that minted for it end too, or the device would just mint again.
            sqlx::query("DELETE FROM sessions WHERE login_id IN (SELECT login_id FROM licenses \
                         WHERE user_id = $1 AND device_jkt = $2 AND login_id IS NOT NULL)")
                .bind(user_id).bind(jkt).execute(&mut *tx).await?;
            sqlx::query("UPDATE licenses SET revoked_at = $3, revoked_reason = 'device removed' \
                         WHERE user_id = $1 AND device_jkt = $2 AND revoked_at IS NULL")
                .bind(user_id).bind(jkt).bind(now).execute(&mut *tx).await?;
            sqlx::query(BUMP_LISTS).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            DeviceRemoval::Removed
        });
        Ok(outcome)
    }
}
