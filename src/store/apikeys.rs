//! API keys for machines: only a hash of each secret is kept.

use super::audit::{insert_event, AuditEvent};
use super::{on_writer, read, spend_confirmation, transaction, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub hint: String,
    /// Space-separated scope names.
    pub scopes: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyRevocation {
    Revoked,
    NotFound,
    /// The admin's passkey confirmation was already spent.
    Unconfirmed,
}

/// A key about to be stored.
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub secret_hash: &'a str,
    pub hint: &'a str,
    pub scopes: &'a str,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str =
    "id, name, hint, scopes, created_by, created_at, expires_at, last_used_at, revoked_at";

/// Last use is written at most this often per key (seconds), so a busy key
/// does not turn every read into a write.
const LAST_USE_PRECISION: i64 = 60;

impl Store {
    /// Stores a key with its audit row, spending the admin's passkey
    /// confirmation (`spend`) in the same transaction; false, and nothing
    /// stored, when that confirmation was already spent.
    pub async fn create_api_key(
        &self,
        key: NewApiKey<'_>,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<bool> {
        let sql = "INSERT INTO api_keys (id, name, secret_hash, hint, scopes, created_by, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let stored = transaction!(self, tx => {
            if !spend_confirmation!(tx, spend, now) {
                return Ok(false);
            }
            sqlx::query(sql).bind(key.id).bind(key.name).bind(key.secret_hash).bind(key.hint)
                .bind(key.scopes).bind(key.created_by).bind(now).bind(key.expires_at)
                .execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            true
        });
        Ok(stored)
    }

    /// Every key, newest first (revoked ones included, for the record).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id");
        Ok(read!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?)
    }

    /// The key whose secret hashes to `secret_hash`, if it is neither revoked
    /// nor expired at `now`; records the use.
    pub async fn use_api_key(&self, secret_hash: &str, now: i64) -> Result<Option<ApiKeyRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        );
        let row: Option<ApiKeyRow> = read!(self, p => sqlx::query_as(&sql)
            .bind(secret_hash).bind(now).fetch_optional(p).await)?;
        if let Some(key) = &row {
            if key
                .last_used_at
                .is_none_or(|t| now - t >= LAST_USE_PRECISION)
            {
                let touch = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1";
                on_writer!(self, p => sqlx::query(touch).bind(&key.id).bind(now)
                    .execute(p).await.map(|r| r.rows_affected()))?;
            }
        }
        Ok(row)
    }

    /// Revokes a key, spending the admin's confirmation with it.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<KeyRevocation> {
        let revoked = transaction!(self, tx => {
            let live: Option<(String,)> = sqlx::query_as("SELECT id FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
                .bind(id).fetch_optional(&mut *tx).await?;
            if live.is_none() {
                return Ok(KeyRevocation::NotFound);
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(KeyRevocation::Unconfirmed);
            }
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
                .bind(id).bind(now).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            KeyRevocation::Revoked
        });
        Ok(revoked)
    }
}
