//! Users and their roles.

use super::{dispatch, Result, Store};

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
        })
    }
}

/// The key under which usernames are unique: case-insensitive.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

pub(super) const COLUMNS: &str = "id, username, display_name, role, disabled_at, created_at";

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
