//! Server-side sessions for tower-sessions, in the same database.
//!
//! The cookie value is never stored: rows are keyed by its SHA-256, so a copy of
//! the database does not hand out live sessions. A few fields of the session
//! data are mirrored into columns so that sessions can be found and ended by
//! user, by sign-in and by passkey.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error as StoreError, Result as StoreResult};
use tower_sessions::SessionStore;

use super::batch::Arg;
use super::{read, transaction, Result, Store};

/// Session data keys that are mirrored into columns.
pub const USER_ID: &str = "user_id";
pub const LOGIN_ID: &str = "login_id";
pub const CREDENTIAL_ID: &str = "credential_id";
pub const AUTHENTICATED_AT: &str = "authenticated_at";
pub const CLIENT_ADDR: &str = "client_addr";
pub const USER_AGENT: &str = "user_agent";

/// The tower-sessions store over [`Store`].
#[derive(Debug, Clone)]
pub struct SessionDb {
    store: Store,
    /// Lifetime of a session nobody has signed in to (it only carries a
    /// ceremony), so anonymous starts cannot pile up sessions for days.
    anonymous_ttl: i64,
}

impl SessionDb {
    pub fn new(store: Store, anonymous_ttl: i64) -> Self {
        Self {
            store,
            anonymous_ttl,
        }
    }
}

fn id_hash(id: &Id) -> String {
    let digest = Sha256::digest(id.to_string().as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest)
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// An open session as an admin or the user sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionInfo {
    pub id_hash: String,
    pub login_id: Option<String>,
    pub credential_id: Option<String>,
    pub authenticated_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

struct Columns {
    user_id: Option<String>,
    login_id: Option<String>,
    credential_id: Option<String>,
    authenticated_at: Option<i64>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    data: String,
    expires_at: i64,
}

fn columns(record: &Record, anonymous_ttl: i64) -> StoreResult<Columns> {
    let text = |key: &str| {
        record
            .data
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(Columns {
        user_id: text(USER_ID),
        login_id: text(LOGIN_ID),
        credential_id: text(CREDENTIAL_ID),
        authenticated_at: record.data.get(AUTHENTICATED_AT).and_then(|v| v.as_i64()),
        client_addr: text(CLIENT_ADDR),
        user_agent: text(USER_AGENT),
        data: serde_json::to_string(&record.data).map_err(|e| StoreError::Encode(e.to_string()))?,
        expires_at: match text(USER_ID) {
            Some(_) => record.expiry_date.unix_timestamp(),
            None => record
                .expiry_date
                .unix_timestamp()
                .min(super::now() + anonymous_ttl),
        },
    })
}

#[async_trait]
impl SessionStore for SessionDb {
    async fn create(&self, record: &mut Record) -> StoreResult<()> {
        let sql = "INSERT INTO sessions (id_hash, user_id, login_id, credential_id, authenticated_at, \
                   client_addr, user_agent, data, expires_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id_hash) DO NOTHING";
        let c = columns(record, self.anonymous_ttl)?;
        let now = super::now();
        // A 128-bit random id colliding is astronomically unlikely; pick another if it does.
        for _ in 0..4 {
            let hash = id_hash(&record.id);
            let args = vec![
                Arg::Text(Some(hash)),
                Arg::Text(c.user_id.clone()),
                Arg::Text(c.login_id.clone()),
                Arg::Text(c.credential_id.clone()),
                Arg::Int(c.authenticated_at),
                Arg::Text(c.client_addr.clone()),
                Arg::Text(c.user_agent.clone()),
                Arg::Text(Some(c.data.clone())),
                Arg::Int(Some(c.expires_at)),
                Arg::Int(Some(now)),
            ];
            let inserted = self.store.exec_batched(sql, args).await.map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(StoreError::Backend(
            "could not allocate a session id".into(),
        ))
    }

    /// Updates an existing session only: a session ended meanwhile (sign out
    /// everywhere, a revoked passkey) stays ended even if a request that was
    /// already running tries to save it.
    async fn save(&self, record: &Record) -> StoreResult<()> {
        let sql = "UPDATE sessions SET user_id = $2, login_id = $3, credential_id = $4, authenticated_at = $5, \
                   client_addr = $6, user_agent = $7, data = $8, expires_at = $9 WHERE id_hash = $1";
        let c = columns(record, self.anonymous_ttl)?;
        let args = vec![
            Arg::Text(Some(id_hash(&record.id))),
            Arg::Text(c.user_id),
            Arg::Text(c.login_id),
            Arg::Text(c.credential_id),
            Arg::Int(c.authenticated_at),
            Arg::Text(c.client_addr),
            Arg::Text(c.user_agent),
            Arg::Text(Some(c.data)),
            Arg::Int(Some(c.expires_at)),
        ];
        self.store
            .exec_batched(sql, args)
            .await
            .map_err(backend)
            .map(|_| ())
    }

    async fn load(&self, session_id: &Id) -> StoreResult<Option<Record>> {
        let sql = "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2";
        let hash = id_hash(session_id);
        let row: Option<(String, i64)> = read!(self.store, p => sqlx::query_as(sql)
            .bind(&hash).bind(super::now()).fetch_optional(p).await.map_err(backend)?);
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data).map_err(|e| StoreError::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .map_err(|e| StoreError::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *session_id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, session_id: &Id) -> StoreResult<()> {
        let args = vec![Arg::Text(Some(id_hash(session_id)))];
        self.store
            .exec_batched("DELETE FROM sessions WHERE id_hash = $1", args)
            .await
            .map_err(backend)
            .map(|_| ())
    }
}

impl Store {
    /// Ends every session of a user (sign out everywhere), spending the
    /// passkey confirmation it needs in the same transaction; `None` when that
    /// confirmation was already spent.
    pub async fn end_user_sessions(
        &self,
        user_id: &str,
        spend: Option<&str>,
        now: i64,
    ) -> Result<Option<u64>> {
        let ended = transaction!(self, tx => {
            if !super::spend_confirmation!(tx, spend, now) {
                return Ok(None);
            }
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?.rows_affected()
        });
        Ok(Some(ended))
    }

    /// Whether a passkey confirmation was already spent by a change.
    pub async fn confirmation_spent(&self, id: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM spent_confirmations WHERE id = $1";
        let n: i64 = read!(self, p => sqlx::query_scalar(sql).bind(id).fetch_one(p).await)?;
        Ok(n > 0)
    }

    pub async fn open_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>> {
        let sql =
            "SELECT id_hash, login_id, credential_id, authenticated_at, created_at, expires_at, \
                   client_addr, user_agent FROM sessions WHERE user_id = $1 AND expires_at > $2 \
                   ORDER BY created_at DESC";
        Ok(read!(self, p => sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(p).await)?)
    }
}
