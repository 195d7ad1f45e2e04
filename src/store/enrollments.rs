//! Users made through the admin API, and the one-time codes with which they
//! add their first passkey.

use super::audit::{insert_event, AuditEvent};
use super::users::{User, UserRow, COLUMNS};
use super::{dispatch, transaction, Result, Store};

/// A user to create without a passkey.
pub struct CreatedUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    /// Unique: the normalised key and the confusable skeleton (`crate::usernames`).
    pub username_key: &'a str,
    pub username_skeleton: &'a str,
    pub display_name: &'a str,
    pub external_id: Option<&'a str>,
    /// SHA-256 of the enrollment code, and until when it works.
    pub code_hash: &'a str,
    pub code_expires_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Creation {
    Created,
    UsernameTaken,
    ExternalIdTaken,
}

impl Store {
    /// Creates the user, their enrollment code and the audit row together.
    pub async fn create_user(
        &self,
        user: &CreatedUser<'_>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<Creation> {
        let outcome = transaction!(self, tx => {
            if let Some(external) = user.external_id {
                let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE external_id = $1")
                    .bind(external).fetch_optional(&mut *tx).await?;
                if taken.is_some() {
                    return Ok(Creation::ExternalIdTaken);
                }
            }
            // Either uniqueness rule (the key, the skeleton) makes it a taken name.
            let inserted = sqlx::query(
                "INSERT INTO users (id, username, username_key, username_skeleton, display_name, role, created_at, external_id) \
                 VALUES ($1, $2, $3, $4, $5, 'user', $6, $7) ON CONFLICT DO NOTHING")
                .bind(user.id).bind(user.username).bind(user.username_key).bind(user.username_skeleton)
                .bind(user.display_name).bind(now).bind(user.external_id)
                .execute(&mut *tx).await?.rows_affected();
            if inserted == 0 {
                return Ok(Creation::UsernameTaken);
            }
            sqlx::query("INSERT INTO enrollments (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                .bind(user.code_hash).bind(user.id).bind(user.code_expires_at).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            Creation::Created
        });
        Ok(outcome)
    }

    /// The user an unused, unexpired enrollment code is for.
    pub async fn enrollment_user(&self, code_hash: &str, now: i64) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {} FROM users WHERE id = (SELECT user_id FROM enrollments \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2) AND disabled_at IS NULL",
            COLUMNS.split(", ").map(|c| format!("users.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row: Option<UserRow> = dispatch!(self.reader(), p => sqlx::query_as(&sql).bind(code_hash).bind(now).fetch_optional(p).await)?;
        row.map(User::try_from).transpose()
    }
}
