//! Started WebAuthn ceremonies, kept server-side until they finish or expire.
//!
//! The session only holds the ceremony id; finishing deletes the row and gets
//! its state back in the same statement (`DELETE … RETURNING`), so only the
//! request whose delete removed it goes on: a ceremony can be finished once,
//! even by ten concurrent requests or on another instance. The writes go
//! through the group commit.

use super::batch::Arg;
use super::{read, Result, Store};

fn text(v: &str) -> Arg {
    Arg::Text(Some(v.to_owned()))
}

impl Store {
    pub async fn put_ceremony(
        &self,
        id: &str,
        kind: &str,
        state: &str,
        expires_at: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO ceremonies (id, kind, state, expires_at) VALUES ($1, $2, $3, $4)";
        let args = vec![
            text(id),
            text(kind),
            text(state),
            Arg::Int(Some(expires_at)),
        ];
        self.exec_batched(sql, args).await?;
        Ok(())
    }

    /// Removes the ceremony and returns its state if it exists, is of `kind` and
    /// has not expired.
    pub async fn take_ceremony(&self, id: &str, kind: &str, now: i64) -> Result<Option<String>> {
        // One statement through the group commit decides who finishes: the
        // delete removes the row once, and a second finisher finds no row.
        let sql = "DELETE FROM ceremonies WHERE id = $1 \
                   RETURNING CASE WHEN kind = $2 AND expires_at > $3 THEN state END";
        let args = vec![text(id), text(kind), Arg::Int(Some(now))];
        Ok(self.take_batched(sql, args).await?.flatten())
    }

    /// Ceremonies not yet finished (expired ones included until upkeep deletes them).
    pub async fn pending_ceremonies(&self) -> Result<i64> {
        Ok(
            read!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM ceremonies").fetch_one(p).await)?,
        )
    }

    pub async fn drop_ceremony(&self, id: &str) -> Result<()> {
        self.exec_batched("DELETE FROM ceremonies WHERE id = $1", vec![text(id)])
            .await?;
        Ok(())
    }
}
