//! License signing keys: public half in clear, private half sealed under the KEK.

use super::audit::{insert_event, AuditEvent};
use super::{read, transaction, Backend, Error, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// The latest `exp` of a license signed with this key (0 if none).
    pub signed_until: i64,
    /// When it starts signing (before that it is only announced).
    pub signs_from: i64,
}

impl Store {
    /// Every key, newest first, with how long licenses signed by it stay valid.
    pub async fn signing_keys(&self) -> Result<Vec<KeyRow>> {
        let sql = "SELECT k.kid, k.public_key, k.sealed_private, k.created_at, k.retired_at, \
                   COALESCE((SELECT MAX(l.expires_at) FROM licenses l WHERE l.kid = k.kid), 0) AS signed_until, \
                   COALESCE(k.signs_from, k.created_at) AS signs_from \
                   FROM signing_keys k ORDER BY k.generation DESC";
        Ok(read!(self, p => sqlx::query_as(sql).fetch_all(p).await)?)
    }

    /// Stores a new signing key (published now, signing from `signs_from`), with
    /// its audit row when an operator made it (the first key of a fresh database has none).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_signing_key(
        &self,
        kid: &str,
        public_key: &[u8],
        sealed_private: &[u8],
        audit: Option<&AuditEvent<'_>>,
        now: i64,
        signs_from: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO signing_keys (kid, generation, public_key, sealed_private, created_at, signs_from) \
                   VALUES ($1, (SELECT COALESCE(MAX(generation), 0) + 1 FROM signing_keys), $2, $3, $4, $5)";
        transaction!(self, tx => {
            sqlx::query(sql).bind(kid).bind(public_key).bind(sealed_private).bind(now).bind(signs_from).execute(&mut *tx).await?;
            if let Some(audit) = audit {
                insert_event!(audit, now).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// Retires a key, with its audit row; false when there is no such unretired key.
    pub async fn retire_signing_key(
        &self,
        kid: &str,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<bool> {
        let sql = "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
        let retired = transaction!(self, tx => {
            let n = sqlx::query(sql).bind(kid).bind(now).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                insert_event!(audit, now).execute(&mut *tx).await?;
            }
            n == 1
        });
        Ok(retired)
    }

    /// A cheap fingerprint of the key table, to notice changes made by other instances.
    pub async fn signing_keys_version(&self) -> Result<(i64, i64, i64)> {
        let sql = "SELECT COUNT(*), COALESCE(MAX(generation), 0), CAST(COALESCE(SUM(COALESCE(retired_at, 0)), 0) + COALESCE(SUM(COALESCE(signs_from, 0)), 0) AS BIGINT) FROM signing_keys";
        Ok(read!(self, p => sqlx::query_as(sql).fetch_one(p).await)?)
    }

    /// Whether the database holds any signing key; safe before migrations (a
    /// database without the table holds none), so start-up can decide about
    /// the KEK before writing anything.
    pub async fn has_signing_keys(&self) -> Result<bool> {
        let table = match self.writer() {
            Backend::Sqlite(p) => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'signing_keys'",
            )
            .fetch_one(p)
            .await?
                > 0,
            Backend::Postgres(p) => {
                sqlx::query_scalar::<_, bool>("SELECT to_regclass('signing_keys') IS NOT NULL")
                    .fetch_one(p)
                    .await?
            }
        };
        if !table {
            return Ok(false);
        }
        let n: i64 = read!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(p).await)?;
        Ok(n > 0)
    }

    /// Replaces the sealed private half of every signing key, all in one
    /// transaction: `resealed` holds `(kid, sealed now, sealed anew)` for each
    /// key, oldest first. If the table no longer matches (a key added, or one
    /// sealed differently meanwhile) nothing changes and `Conflict` is returned.
    pub async fn reseal_signing_keys(
        &self,
        resealed: &[(String, Vec<u8>, Vec<u8>)],
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<()> {
        let changed = || {
            Error::Conflict(
                "the signing keys changed while they were re-encrypted; run the command again"
                    .into(),
            )
        };
        transaction!(self, tx => {
            // PostgreSQL: no key may be added or changed by another instance
            // until this commits (SQLite's BEGIN IMMEDIATE already excludes writers).
            if !self.is_sqlite() {
                sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(&mut *tx).await?;
            if usize::try_from(count).ok() != Some(resealed.len()) {
                return Err(changed());
            }
            for (kid, old, new) in resealed {
                let n = sqlx::query("UPDATE signing_keys SET sealed_private = $3 WHERE kid = $1 AND sealed_private = $2")
                    .bind(kid).bind(old).bind(new).execute(&mut *tx).await?.rows_affected();
                if n != 1 {
                    return Err(changed());
                }
            }
            insert_event!(audit, now).execute(&mut *tx).await?;
        });
        Ok(())
    }
}
