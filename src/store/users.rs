//! Users and their roles.

use super::audit::{insert_event, AuditEvent};
use super::{hot_read, is_unique_violation, on_writer, read, transaction, Result, Store};

/// What a user may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            other => Err(super::Error::Other(anyhow::anyhow!(
                "unknown role {other:?} in the database"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    /// The business's own id for this user (or its payment customer id).
    pub external_id: Option<String>,
}

impl User {
    pub fn is_enabled_admin(&self) -> bool {
        self.role == Role::Admin && self.disabled_at.is_none()
    }
}

/// A user row as stored; `role` is text in the database.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    pub(super) id: String,
    pub(super) username: String,
    pub(super) display_name: String,
    pub(super) role: String,
    pub(super) disabled_at: Option<i64>,
    pub(super) created_at: i64,
    pub(super) external_id: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = super::Error;
    fn try_from(row: UserRow) -> Result<Self> {
        Ok(Self {
            role: Role::parse(&row.role)?,
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            disabled_at: row.disabled_at,
            created_at: row.created_at,
            external_id: row.external_id,
        })
    }
}

pub(super) const COLUMNS: &str =
    "id, username, display_name, role, disabled_at, created_at, external_id";

impl Store {
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> =
            read!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }

    /// The user whose username has this key (see `crate::usernames`).
    pub async fn user_by_username_key(&self, key: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1");
        let row: Option<UserRow> =
            read!(self, p => sqlx::query_as(&sql).bind(key).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }

    /// For a sign-in with a username, in one read: the enabled user whose
    /// username has this key, and the ids of their passkeys that still work,
    /// oldest first; `None` when there is no such enabled user.
    pub async fn sign_in_candidates(&self, key: &str) -> Result<Option<(String, Vec<String>)>> {
        let sql = "SELECT u.id, c.id FROM users u \
                   LEFT JOIN credentials c ON c.user_id = u.id AND c.revoked_at IS NULL \
                   WHERE u.username_key = $1 AND u.disabled_at IS NULL ORDER BY c.created_at, c.id";
        // A hot read: every sign-in's start.
        let rows: Vec<(String, Option<String>)> = hot_read!(self,
            c => c.prepare_cached(sql)?
                .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect(),
            p => sqlx::query_as(sql).bind(key).fetch_all(p).await)?;
        let Some((user_id, _)) = rows.first() else {
            return Ok(None);
        };
        let user_id = user_id.clone();
        Ok(Some((
            user_id,
            rows.into_iter().filter_map(|(_, c)| c).collect(),
        )))
    }

    /// Whether some user's username has this confusable skeleton.
    pub async fn username_skeleton_taken(&self, skeleton: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM users WHERE username_skeleton = $1";
        let n: i64 = read!(self, p => sqlx::query_scalar(sql).bind(skeleton).fetch_one(p).await)?;
        Ok(n > 0)
    }

    /// Finds a user by username key or by id (the CLI accepts either).
    pub async fn user_by_key_or_id(&self, key: &str, id: &str) -> Result<Option<User>> {
        match self.user_by_username_key(key).await? {
            Some(found) => Ok(Some(found)),
            None => self.user_by_id(id).await,
        }
    }

    /// Users made before usernames had skeletons: `(id, username, username_key)`.
    pub async fn users_without_skeleton(&self) -> Result<Vec<(String, String, String)>> {
        let sql = "SELECT id, username, username_key FROM users WHERE username_skeleton IS NULL \
                   ORDER BY created_at, id";
        Ok(read!(self, p => sqlx::query_as(sql).fetch_all(p).await)?)
    }

    /// Gives an existing user their normalised key and skeleton. False, and
    /// nothing changed, when another user already has that key or skeleton.
    pub async fn set_username_identity(&self, id: &str, key: &str, skeleton: &str) -> Result<bool> {
        let sql = "UPDATE users SET username_key = $2, username_skeleton = $3 WHERE id = $1 \
                   AND NOT EXISTS (SELECT 1 FROM users o WHERE o.id <> $1 \
                   AND (o.username_key = $2 OR o.username_skeleton = $3))";
        let n = on_writer!(self, p => sqlx::query(sql).bind(id).bind(key).bind(skeleton)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Makes skeletons unique once every user has one (idempotent).
    pub async fn require_unique_skeletons(&self) -> Result<()> {
        let sql =
            "CREATE UNIQUE INDEX IF NOT EXISTS users_username_skeleton ON users(username_skeleton)";
        on_writer!(self, p => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// How setting an external id went.
#[derive(Debug, PartialEq, Eq)]
pub enum ExternalIdChange {
    Changed,
    Unchanged,
    NoSuchUser,
    /// Another user already carries it.
    Taken,
}

impl Store {
    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE external_id = $1");
        let row: Option<UserRow> =
            read!(self, p => sqlx::query_as(&sql).bind(external_id).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }

    /// Sets (or with `None` clears) a user's external id, with its audit row.
    /// Uniqueness is the database's: two users racing for one id cannot both win.
    pub async fn set_external_id(
        &self,
        user_id: &str,
        external_id: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<ExternalIdChange> {
        let outcome = transaction!(self, tx => {
            let current: Option<(Option<String>,)> = sqlx::query_as("SELECT external_id FROM users WHERE id = $1")
                .bind(user_id).fetch_optional(&mut *tx).await?;
            let Some((current,)) = current else {
                return Ok(ExternalIdChange::NoSuchUser);
            };
            if current.as_deref() == external_id {
                return Ok(ExternalIdChange::Unchanged);
            }
            let updated = sqlx::query("UPDATE users SET external_id = $2 WHERE id = $1")
                .bind(user_id).bind(external_id).execute(&mut *tx).await;
            match updated {
                Err(err) if is_unique_violation(&err) => return Ok(ExternalIdChange::Taken),
                other => other?,
            };
            insert_event!(audit, now).execute(&mut *tx).await?;
            ExternalIdChange::Changed
        });
        Ok(outcome)
    }
}
