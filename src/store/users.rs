//! Users and their roles.

use super::{dispatch, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

/// The key under which usernames are unique: case-insensitive.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

const COLUMNS: &str = "id, username, display_name, role, disabled_at, created_at";

impl Store {
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        dispatch!(self.reader(), p => sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(p).await)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1");
        let key = username_key(username);
        dispatch!(self.reader(), p => sqlx::query_as::<_, User>(&sql).bind(&key).fetch_optional(p).await)
    }

    /// Finds a user by username or by id (the CLI accepts either).
    pub async fn user_by_name_or_id(&self, user: &str) -> Result<Option<User>, sqlx::Error> {
        match self.user_by_username(user).await? {
            Some(found) => Ok(Some(found)),
            None => self.user_by_id(user).await,
        }
    }
}
