//! Users and their roles.

use super::audit::{insert_event, AuditEvent};
use super::{dispatch, is_unique_violation, transaction, Result, Store};

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
    id: String,
    username: String,
    display_name: String,
    role: String,
    disabled_at: Option<i64>,
    created_at: i64,
    external_id: Option<String>,
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

/// The key under which usernames are unique: case-insensitive.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

pub(super) const COLUMNS: &str =
    "id, username, display_name, role, disabled_at, created_at, external_id";

impl Store {
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> =
            dispatch!(self.reader(), p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1");
        let key = username_key(username);
        let row: Option<UserRow> =
            dispatch!(self.reader(), p => sqlx::query_as(&sql).bind(&key).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }

    /// Finds a user by username or by id (the CLI accepts either).
    pub async fn user_by_name_or_id(&self, user: &str) -> Result<Option<User>> {
        match self.user_by_username(user).await? {
            Some(found) => Ok(Some(found)),
            None => self.user_by_id(user).await,
        }
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
        let row: Option<UserRow> = dispatch!(self.reader(), p => sqlx::query_as(&sql).bind(external_id).fetch_optional(p).await)?;
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
