//! License signing keys: public half in clear, private half sealed under the KEK.

use super::{dispatch, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// The latest `exp` of a license signed with this key (0 if none).
    pub signed_until: i64,
}

impl Store {
    /// Every key, newest first, with how long licenses signed by it stay valid.
    pub async fn signing_keys(&self) -> Result<Vec<KeyRow>, sqlx::Error> {
        let sql = "SELECT k.kid, k.public_key, k.sealed_private, k.created_at, k.retired_at, \
                   COALESCE((SELECT MAX(l.expires_at) FROM licenses l WHERE l.kid = k.kid), 0) AS signed_until \
                   FROM signing_keys k ORDER BY k.generation DESC";
        dispatch!(self.reader(), p => sqlx::query_as::<_, KeyRow>(sql).fetch_all(p).await)
    }

    pub async fn insert_signing_key(
        &self,
        kid: &str,
        public_key: &[u8],
        sealed_private: &[u8],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO signing_keys (kid, generation, public_key, sealed_private, created_at) \
                   VALUES ($1, (SELECT COALESCE(MAX(generation), 0) + 1 FROM signing_keys), $2, $3, $4)";
        dispatch!(self.writer(), p => sqlx::query(sql).bind(kid).bind(public_key).bind(sealed_private).bind(now)
            .execute(p).await.map(|_| ()))
    }

    pub async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
        let n = dispatch!(self.writer(), p => sqlx::query(sql).bind(kid).bind(now).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// A cheap fingerprint of the key table, to notice changes made by other instances.
    pub async fn signing_keys_version(&self) -> Result<(i64, i64, i64), sqlx::Error> {
        let sql = "SELECT COUNT(*), COALESCE(MAX(generation), 0), CAST(COALESCE(SUM(COALESCE(retired_at, 0)), 0) AS BIGINT) FROM signing_keys";
        dispatch!(self.reader(), p => sqlx::query_as::<_, (i64, i64, i64)>(sql).fetch_one(p).await)
    }
}
