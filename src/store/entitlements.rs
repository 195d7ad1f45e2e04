//! Per-user entitlements such as `premium`, with an optional expiry.

use super::audit::{insert_event, AuditEvent};
use super::{hot_read, read, transaction, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entitlement {
    pub name: String,
    pub expires_at: Option<i64>,
    pub granted_at: i64,
    /// Devices it allows at once; `None`: the service's default.
    pub max_devices: Option<i64>,
}

/// What a license mint needs to know of its user, read at once (see [`Store::mint_profile`]).
#[derive(Debug, Clone)]
pub struct MintProfile {
    pub username: String,
    /// The entitlements in force, by name.
    pub entitlements: Vec<Entitlement>,
    /// The public keys (JWK JSON) of the user's active passkeys, oldest first.
    pub passkey_jwks: Vec<String>,
}

/// A mint's reads in one query (a hot read): the enabled user's name, their
/// entitlements in force at `$2` and their active passkeys' public keys, as
/// one row shape `(part, text, three integers, order)`.
pub(super) const MINT_PROFILE: &str = "SELECT 0 AS part, username AS t, CAST(NULL AS BIGINT) AS a, CAST(NULL AS BIGINT) AS b, \
            CAST(NULL AS BIGINT) AS c, CAST(NULL AS BIGINT) AS o1, id AS o2 \
     FROM users WHERE id = $1 AND disabled_at IS NULL \
     UNION ALL \
     SELECT 1, name, expires_at, granted_at, max_devices, CAST(NULL AS BIGINT), name FROM entitlements \
     WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
     UNION ALL \
     SELECT 2, public_jwk, NULL, NULL, NULL, created_at, id FROM credentials \
     WHERE user_id = $1 AND revoked_at IS NULL \
     ORDER BY part, o1, o2";

impl Store {
    /// The enabled user's name, entitlements in force at `now` and active
    /// passkeys' public keys, in one query (one round trip where it was
    /// three); `None` if the user is gone or disabled.
    pub async fn mint_profile(&self, user_id: &str, now: i64) -> Result<Option<MintProfile>> {
        type Row = (i32, String, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = hot_read!(self,
            c => c.prepare_cached(MINT_PROFILE)?
                .query_map(rusqlite::params![user_id, now], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect(),
            p => sqlx::query_as::<_, (i32, String, Option<i64>, Option<i64>, Option<i64>, Option<i64>, String)>(MINT_PROFILE)
                .bind(user_id).bind(now).fetch_all(p).await
                .map(|rows| rows.into_iter().map(|(part, t, a, b, c, _, _)| (part, t, a, b, c)).collect()))?;
        let mut rows = rows.into_iter();
        let Some((0, username, ..)) = rows.next() else {
            return Ok(None);
        };
        let mut profile = MintProfile {
            username,
            entitlements: Vec::new(),
            passkey_jwks: Vec::new(),
        };
        for (part, text, a, b, c) in rows {
            match part {
                1 => profile.entitlements.push(Entitlement {
                    name: text,
                    expires_at: a,
                    granted_at: b.unwrap_or_default(),
                    max_devices: c,
                }),
                _ => profile.passkey_jwks.push(text),
            }
        }
        Ok(Some(profile))
    }

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
