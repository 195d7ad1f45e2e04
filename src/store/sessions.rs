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

use super::batch::{Arg, Item, Outcome, SignInItem};
use super::credentials::CredentialUse;
use rusqlite::OptionalExtension;

use super::{hot_read, read, transaction, Backend, Result, Store};

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

pub fn id_hash(id: &Id) -> String {
    let digest = Sha256::digest(id.to_string().as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest)
}

/// A session's data while it lasts (a hot read: every signed-in request).
pub(super) const LOAD: &str =
    "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2";

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
        let sql = LOAD;
        let hash = id_hash(session_id);
        let now = super::now();
        // A hot read: every signed-in request makes it.
        let row: Option<(String, i64)> = hot_read!(self.store,
            c => c.prepare_cached(sql)?
                .query_row(rusqlite::params![hash, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional(),
            p => sqlx::query_as(sql).bind(&hash).bind(now).fetch_optional(p).await)
        .map_err(backend)?;
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

/// Turns the session that started a sign-in into the signed-in one, in one
/// statement: a new id (so a cookie planted before sign-in is worth nothing
/// after it) and the sign-in's columns and data. It only goes ahead while the
/// old session still holds the ceremony (`$12`, a random id), so a ceremony
/// finishes once, and while the passkey is active and its user enabled, so a
/// revocation that lands during the ceremony wins.
pub(crate) const ROTATE_INTO_SIGN_IN: &str =
    "UPDATE sessions SET id_hash = $2, user_id = $3, login_id = $4, credential_id = $5, \
     authenticated_at = $6, client_addr = $7, user_agent = $8, data = $9, expires_at = $10, created_at = $11 \
     WHERE id_hash = $1 AND expires_at > $11 AND data LIKE '%' || $12 || '%' \
     AND EXISTS (SELECT 1 FROM credentials c JOIN users u ON u.id = c.user_id \
                 WHERE c.id = $5 AND c.user_id = $3 AND c.revoked_at IS NULL AND u.disabled_at IS NULL)";

/// The passkey `$1` of user `$2`, if it is active and its user enabled: after a
/// refused rotation, whether the ceremony or the passkey is what went.
pub(crate) const PASSKEY_ACTIVE: &str =
    "SELECT c.id FROM credentials c JOIN users u ON u.id = c.user_id \
     WHERE c.id = $1 AND c.user_id = $2 AND c.revoked_at IS NULL AND u.disabled_at IS NULL";

/// Runs a sign-in's statements (`$s`: a [`SignInItem`]) on `$tx`, under a
/// savepoint the caller rolls back when it is refused: the session rotation,
/// the passkey's use when it changed, and the audit row. Evaluates to
/// `Result<Outcome>`: `Done`, `CeremonyGone`, `PasskeyGone` or `CounterRegressed`.
macro_rules! sign_in_statements {
    ($tx:ident, $s:expr) => {{
        let s: &$crate::store::batch::SignInItem = $s;
        let run = async {
            let rotated = sqlx::query($crate::store::sessions::ROTATE_INTO_SIGN_IN)
                .bind(&s.old_hash)
                .bind(&s.new_hash)
                .bind(&s.user_id)
                .bind(&s.login_id)
                .bind(&s.credential_id)
                .bind(s.at)
                .bind(&s.client_addr)
                .bind(&s.user_agent)
                .bind(&s.data)
                .bind(s.expires_at)
                .bind(s.at)
                .bind(&s.ceremony_id)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            if rotated == 0 {
                let active: Option<String> =
                    sqlx::query_scalar($crate::store::sessions::PASSKEY_ACTIVE)
                        .bind(&s.credential_id)
                        .bind(&s.user_id)
                        .fetch_optional(&mut *$tx)
                        .await?;
                return Ok(if active.is_some() {
                    $crate::store::batch::Outcome::CeremonyGone
                } else {
                    $crate::store::batch::Outcome::PasskeyGone
                });
            }
            if let Some(used) = &s.credential_use {
                let counter = i64::from(used.counter);
                let recorded = sqlx::query($crate::store::credentials::RECORD_USE)
                    .bind(&s.credential_id)
                    .bind(counter)
                    .bind(&used.passkey)
                    .bind(used.backup_state)
                    .bind(used.at)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
                if recorded == 0 {
                    let stored: Option<(Option<i64>, i64)> =
                        sqlx::query_as($crate::store::credentials::STORED_USE)
                            .bind(&s.credential_id)
                            .fetch_optional(&mut *$tx)
                            .await?;
                    return Ok(
                        match $crate::store::credentials::refused_use(counter, stored) {
                            $crate::store::credentials::UseOutcome::CounterRegressed => {
                                $crate::store::batch::Outcome::CounterRegressed
                            }
                            _ => $crate::store::batch::Outcome::PasskeyGone,
                        },
                    );
                }
            }
            let e = s.audit.borrowed();
            $crate::store::audit::insert_event!(e, s.at)
                .execute(&mut *$tx)
                .await?;
            Ok::<_, $crate::store::Error>($crate::store::batch::Outcome::Done)
        };
        run.await
    }};
}
pub(crate) use sign_in_statements;

/// A sign-in to commit with [`Store::sign_in`].
pub struct NewSignIn<'a> {
    /// The session that started the ceremony (the request's cookie).
    pub old_id: &'a Id,
    /// The signed-in session's id (the response's cookie).
    pub new_id: &'a Id,
    /// The ceremony this sign-in finishes, still held by the old session.
    pub ceremony_id: &'a str,
    pub user_id: &'a str,
    pub login_id: &'a str,
    pub credential_id: &'a str,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The signed-in session's data, as tower-sessions keeps it.
    pub data: String,
    pub expires_at: i64,
    /// The passkey's new counter and state, when they changed.
    pub credential_use: Option<CredentialUse>,
    pub audit: &'a super::audit::AuditEvent<'a>,
    pub at: i64,
}

/// How [`Store::sign_in`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    Done,
    /// The session no longer holds the ceremony: finished already, replaced or expired.
    CeremonyGone,
    /// The passkey was revoked or its user disabled meanwhile.
    PasskeyGone,
    /// The passkey's counter did not move forward.
    CounterRegressed,
}

impl Store {
    /// Commits a sign-in in one write through the group commit: the session
    /// rotation, the passkey's use (only when its counter or state changed)
    /// and the audit row, all or nothing.
    pub async fn sign_in(&self, s: NewSignIn<'_>) -> Result<SignInOutcome> {
        let item = SignInItem {
            old_hash: id_hash(s.old_id),
            new_hash: id_hash(s.new_id),
            ceremony_id: s.ceremony_id.to_owned(),
            user_id: s.user_id.to_owned(),
            login_id: s.login_id.to_owned(),
            credential_id: s.credential_id.to_owned(),
            client_addr: s.client_addr.map(str::to_owned),
            user_agent: s.user_agent.map(str::to_owned),
            data: s.data,
            expires_at: s.expires_at,
            credential_use: s.credential_use,
            audit: s.audit.into(),
            at: s.at,
        };
        Ok(
            match self.submit_write(Item::SignIn(Box::new(item))).await? {
                Outcome::Done => SignInOutcome::Done,
                Outcome::CounterRegressed => SignInOutcome::CounterRegressed,
                Outcome::PasskeyGone => SignInOutcome::PasskeyGone,
                _ => SignInOutcome::CeremonyGone,
            },
        )
    }

    /// Takes the ceremony `key` with id `ceremony_id` out of session `id`'s
    /// record; `false` if the record no longer holds it (finished by a
    /// concurrent request, replaced or ended), so a ceremony finishes once.
    pub async fn take_session_ceremony(
        &self,
        id: &Id,
        key: &str,
        ceremony_id: &str,
    ) -> Result<bool> {
        let sql = match self.writer() {
            Backend::Sqlite(_) => {
                "UPDATE sessions SET data = json_remove(data, '$.\"' || $2 || '\"') \
                 WHERE id_hash = $1 AND json_extract(data, '$.\"' || $2 || '\".id') = $3"
            }
            Backend::Postgres(_) => {
                "UPDATE sessions SET data = (data::jsonb - $2)::text \
                 WHERE id_hash = $1 AND data::jsonb -> $2 ->> 'id' = $3"
            }
        };
        let args = vec![
            Arg::Text(Some(id_hash(id))),
            Arg::Text(Some(key.to_owned())),
            Arg::Text(Some(ceremony_id.to_owned())),
        ];
        Ok(self.exec_batched(sql, args).await? == 1)
    }

    /// Keeps a started ceremony (`kept`, JSON) under `key` in the session
    /// record, in one write: into session `existing` if it is still there
    /// (an anonymous one then lives at least until `anonymous_expires_at`),
    /// else into a new anonymous session whose id is returned.
    pub async fn keep_ceremony(
        &self,
        existing: Option<&Id>,
        key: &str,
        kept: serde_json::Value,
        anonymous_expires_at: i64,
        now: i64,
    ) -> Result<Option<Id>> {
        if let Some(id) = existing {
            let sql = match self.writer() {
                Backend::Sqlite(_) => {
                    "UPDATE sessions SET data = json_set(data, '$.\"' || $2 || '\"', json($3)), \
                     expires_at = CASE WHEN user_id IS NULL THEN max(expires_at, $5) ELSE expires_at END \
                     WHERE id_hash = $1 AND expires_at > $4"
                }
                Backend::Postgres(_) => {
                    "UPDATE sessions SET data = jsonb_set(data::jsonb, ARRAY[$2], $3::jsonb)::text, \
                     expires_at = CASE WHEN user_id IS NULL THEN GREATEST(expires_at, $5) ELSE expires_at END \
                     WHERE id_hash = $1 AND expires_at > $4"
                }
            };
            let args = vec![
                Arg::Text(Some(id_hash(id))),
                Arg::Text(Some(key.to_owned())),
                Arg::Text(Some(kept.to_string())),
                Arg::Int(Some(now)),
                Arg::Int(Some(anonymous_expires_at)),
            ];
            if self.exec_batched(sql, args).await? == 1 {
                return Ok(None);
            }
        }
        let sql =
            "INSERT INTO sessions (id_hash, data, expires_at, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (id_hash) DO NOTHING";
        let mut data = serde_json::Map::new();
        data.insert(key.to_owned(), kept);
        let data = serde_json::Value::Object(data).to_string();
        // A 128-bit random id colliding is astronomically unlikely; pick another if it does.
        for _ in 0..4 {
            let id = Id::default();
            let args = vec![
                Arg::Text(Some(id_hash(&id))),
                Arg::Text(Some(data.clone())),
                Arg::Int(Some(anonymous_expires_at)),
                Arg::Int(Some(now)),
            ];
            if self.exec_batched(sql, args).await? == 1 {
                return Ok(Some(id));
            }
        }
        Err(super::Error::Other(anyhow::anyhow!(
            "could not allocate a session id"
        )))
    }

    /// Sessions nobody has signed in to (each holds ceremonies only) that
    /// have not expired: what the cap on pending ceremonies counts.
    pub async fn anonymous_sessions(&self, now: i64) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM sessions WHERE user_id IS NULL AND expires_at > $1";
        Ok(read!(self, p => sqlx::query_scalar(sql).bind(now).fetch_one(p).await)?)
    }
}
