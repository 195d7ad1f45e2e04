//! Per-user entitlements such as `premium`, with an optional expiry.

use super::{dispatch, Store};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Entitlement {
    pub name: String,
    pub expires_at: Option<i64>,
    pub granted_at: i64,
}

impl Store {
    /// Grants (or re-grants with a new expiry) an entitlement.
    pub async fn grant_entitlement(
        &self,
        user_id: &str,
        name: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO entitlements (user_id, name, expires_at, granted_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (user_id, name) DO UPDATE SET expires_at = excluded.expires_at, granted_at = excluded.granted_at";
        dispatch!(self.writer(), p => sqlx::query(sql).bind(user_id).bind(name).bind(expires_at).bind(now)
            .execute(p).await.map(|_| ()))
    }

    /// The entitlements in force at `now`, by name.
    pub async fn current_entitlements(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<Entitlement>, sqlx::Error> {
        let sql = "SELECT name, expires_at, granted_at FROM entitlements \
                   WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY name";
        dispatch!(self.reader(), p => sqlx::query_as::<_, Entitlement>(sql).bind(user_id).bind(now).fetch_all(p).await)
    }
}
