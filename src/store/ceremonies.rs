//! Started WebAuthn ceremonies, kept server-side until they finish or expire.
//!
//! The session only holds the ceremony id; finishing takes the state out with
//! one `DELETE … RETURNING`, so a ceremony can be finished once, even by ten
//! concurrent requests or on another instance.

use super::{dispatch, Result, Store};

impl Store {
    pub async fn put_ceremony(
        &self,
        id: &str,
        kind: &str,
        state: &str,
        expires_at: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO ceremonies (id, kind, state, expires_at) VALUES ($1, $2, $3, $4)";
        dispatch!(self.writer(), p => sqlx::query(sql).bind(id).bind(kind).bind(state).bind(expires_at)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Removes the ceremony and returns its state if it exists, is of `kind` and
    /// has not expired.
    pub async fn take_ceremony(&self, id: &str, kind: &str, now: i64) -> Result<Option<String>> {
        let sql = "DELETE FROM ceremonies WHERE id = $1 RETURNING kind, state, expires_at";
        let row: Option<(String, String, i64)> =
            dispatch!(self.writer(), p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(row.and_then(|(k, state, exp)| (k == kind && exp > now).then_some(state)))
    }

    /// Ceremonies not yet finished (expired ones included until upkeep deletes them).
    pub async fn pending_ceremonies(&self) -> Result<i64> {
        Ok(
            dispatch!(self.reader(), p => sqlx::query_scalar("SELECT COUNT(*) FROM ceremonies").fetch_one(p).await)?,
        )
    }

    pub async fn drop_ceremony(&self, id: &str) -> Result<()> {
        dispatch!(self.writer(), p => sqlx::query("DELETE FROM ceremonies WHERE id = $1").bind(id)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
