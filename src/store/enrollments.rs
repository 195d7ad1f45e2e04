//! Users made through the admin API, and the one-time codes with which they
//! add their first passkey; recovery links, the same codes for an existing user.

use super::audit::{insert_event, AuditEvent};
use super::users::{User, UserRow, COLUMNS};
use super::{read, spend_confirmation, transaction, Result, Store};

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

    /// The user an unused, unexpired enrollment code is for, and, for a
    /// recovery link, whether it revokes the user's other passkeys.
    pub async fn enrollment_user(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<(User, Option<bool>)>> {
        let sql = format!(
            "SELECT {} FROM users WHERE id = (SELECT user_id FROM enrollments \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2) AND disabled_at IS NULL",
            COLUMNS.split(", ").map(|c| format!("users.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row: Option<UserRow> = read!(self, p => sqlx::query_as(&sql).bind(code_hash).bind(now).fetch_optional(p).await)?;
        let Some(user) = row.map(User::try_from).transpose()? else {
            return Ok(None);
        };
        let kind: Option<(String, bool)> = read!(self, p => sqlx::query_as("SELECT purpose, revoke_others FROM enrollments WHERE token_hash = $1")
            .bind(code_hash).fetch_optional(p).await)?;
        let recovery = kind.and_then(|(purpose, revoke)| (purpose == RECOVERY).then_some(revoke));
        Ok(Some((user, recovery)))
    }

    /// Issues a recovery link for an existing, enabled user: a new code that
    /// replaces their unused ones, spending the admin's confirmation, with its
    /// audit row, in one transaction.
    pub async fn issue_recovery(
        &self,
        link: &RecoveryLink<'_>,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<Recovery> {
        let outcome = transaction!(self, tx => {
            let user: Option<(Option<i64>,)> = sqlx::query_as("SELECT disabled_at FROM users WHERE id = $1")
                .bind(link.user_id).fetch_optional(&mut *tx).await?;
            match user {
                None => return Ok(Recovery::NoSuchUser),
                Some((Some(_),)) => return Ok(Recovery::Disabled),
                Some((None,)) => {}
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(Recovery::Unconfirmed);
            }
            sqlx::query("DELETE FROM enrollments WHERE user_id = $1 AND used_at IS NULL")
                .bind(link.user_id).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO enrollments (token_hash, user_id, expires_at, purpose, revoke_others) VALUES ($1, $2, $3, $4, $5)")
                .bind(link.code_hash).bind(link.user_id).bind(link.expires_at).bind(RECOVERY).bind(link.revoke_others)
                .execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            Recovery::Issued
        });
        Ok(outcome)
    }
}

/// The `purpose` of an enrollment code that is a recovery link.
pub const RECOVERY: &str = "recovery";

/// A recovery link to store.
pub struct RecoveryLink<'a> {
    pub user_id: &'a str,
    /// SHA-256 of the code.
    pub code_hash: &'a str,
    pub expires_at: i64,
    /// Revoke the user's other passkeys, sessions and licenses when it is used.
    pub revoke_others: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    Issued,
    NoSuchUser,
    Disabled,
    /// The admin's passkey confirmation was already spent.
    Unconfirmed,
}
