//! Passkeys (WebAuthn credentials) and the users they belong to.

use super::audit::{insert_event, AuditEvent};
use super::users::User;
use rusqlite::OptionalExtension;

use super::{hot_read, is_unique_violation, on_writer, read, transaction, Error, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub passkey: String,
    pub public_jwk: String,
    pub counter: i64,
    pub aaguid: String,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Added while the session had just proved a passkey, or the account's first.
    pub added_with_step_up: bool,
}

/// A row of [`Store::credential_with_owner`].
#[derive(sqlx::FromRow)]
struct OwnedCredential {
    #[sqlx(flatten)]
    credential: Credential,
    owner_username: String,
    owner_display_name: String,
    owner_role: String,
    owner_disabled_at: Option<i64>,
    owner_created_at: i64,
    owner_external_id: Option<String>,
}

/// A credential ready to be stored.
pub struct NewCredential<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub passkey: &'a str,
    pub public_jwk: &'a str,
    pub counter: i64,
    pub aaguid: &'a str,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub added_with_step_up: bool,
    /// The hashed enrollment code this first passkey of a user made by an
    /// administrator spends (in the same transaction).
    pub enrollment: Option<&'a str>,
    /// The hashed recovery code this passkey of an existing user spends (in
    /// the same transaction).
    pub recovery_code: Option<&'a str>,
}

/// A user created together with their first passkey.
pub struct NewUser<'a> {
    pub id: &'a str,
    /// As shown.
    pub username: &'a str,
    pub username_key: &'a str,
    pub username_skeleton: &'a str,
    pub display_name: &'a str,
}

/// Why a registration could not be stored.
#[derive(Debug)]
pub enum RegisterError {
    UsernameTaken,
    CredentialExists,
    /// The passkey confirmation it was started under was already spent.
    Unconfirmed,
    /// The enrollment code was used, expired or withdrawn meanwhile.
    EnrollmentGone,
    Store(Error),
}

impl From<sqlx::Error> for RegisterError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

const COLUMNS: &str = "id, user_id, name, passkey, public_jwk, counter, aaguid, backup_eligible, \
                       backup_state, created_at, last_used_at, revoked_at, added_with_step_up";

/// A passkey's [`COLUMNS`] (in that order), then its owner's.
pub(super) static WITH_OWNER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns: Vec<String> = COLUMNS
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect();
    format!(
        "SELECT {}, u.username AS owner_username, u.display_name AS owner_display_name, \
         u.role AS owner_role, u.disabled_at AS owner_disabled_at, u.created_at AS owner_created_at, \
         u.external_id AS owner_external_id \
         FROM credentials c JOIN users u ON u.id = c.user_id WHERE c.id = $1",
        columns.join(", ")
    )
});

/// How a sign-in's counter compared with the stored one.
#[derive(Debug, PartialEq, Eq)]
pub enum UseOutcome {
    Recorded,
    /// A non-zero counter that did not increase: a possible cloned authenticator.
    CounterRegressed,
    /// Revoked, removed or its user disabled since the ceremony started.
    Gone,
}

impl Store {
    /// Stores a passkey, creating its user first when `new_user` is given (or
    /// spending the enrollment code, hashed, of a user made without one), with
    /// its audit row, in one transaction: all rows exist afterwards or none does.
    pub async fn register_credential(
        &self,
        user_id: &str,
        new_user: Option<NewUser<'_>>,
        cred: NewCredential<'_>,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<(), RegisterError> {
        // Either uniqueness rule (the key, the skeleton) makes it a taken name.
        let user_sql =
            "INSERT INTO users (id, username, username_key, username_skeleton, display_name, role, created_at) \
                        VALUES ($1, $2, $3, $4, $5, 'user', $6) ON CONFLICT DO NOTHING";
        let cred_sql = format!(
            "INSERT INTO credentials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11) \
             ON CONFLICT (id) DO NOTHING"
        );
        transaction!(self, tx => {
            if !super::spend_confirmation!(tx, spend, now) {
                return Err(RegisterError::Unconfirmed);
            }
            if let Some(user) = &new_user {
                let inserted = sqlx::query(user_sql)
                    .bind(user.id)
                    .bind(user.username)
                    .bind(user.username_key)
                    .bind(user.username_skeleton)
                    .bind(user.display_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    return Err(RegisterError::UsernameTaken);
                }
            }
            if let Some(code) = cred.enrollment {
                let spent = sqlx::query("UPDATE enrollments SET used_at = $3 WHERE token_hash = $1 AND user_id = $2 \
                                         AND used_at IS NULL AND expires_at > $3")
                    .bind(code).bind(user_id).bind(now).execute(&mut *tx).await?.rows_affected();
                if spent == 0 {
                    return Err(RegisterError::EnrollmentGone);
                }
                // A recovery link may end everything the user had before, together with this passkey.
                let revoke_others: bool = sqlx::query_scalar("SELECT revoke_others FROM enrollments WHERE token_hash = $1")
                    .bind(code).fetch_one(&mut *tx).await?;
                if revoke_others {
                    let reason = "account recovered";
                    sqlx::query("UPDATE credentials SET revoked_at = $2, revoked_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                        .bind(user_id).bind(now).bind(reason).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
                    sqlx::query("UPDATE licenses SET revoked_at = $2, revoked_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                        .bind(user_id).bind(now).bind(reason).execute(&mut *tx).await?;
                    sqlx::query(super::revocations::BUMP_LISTS).execute(&mut *tx).await?;
                }
            }
            if let Some(code) = cred.recovery_code {
                let spent = sqlx::query("UPDATE recovery_codes SET used_at = $3 WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL")
                    .bind(code).bind(user_id).bind(now).execute(&mut *tx).await?.rows_affected();
                if spent == 0 {
                    return Err(RegisterError::EnrollmentGone);
                }
            }
            let inserted = sqlx::query(&cred_sql)
                .bind(cred.id)
                .bind(user_id)
                .bind(cred.name)
                .bind(cred.passkey)
                .bind(cred.public_jwk)
                .bind(cred.counter)
                .bind(cred.aaguid)
                .bind(cred.backup_eligible)
                .bind(cred.backup_state)
                .bind(now)
                .bind(cred.added_with_step_up)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { RegisterError::CredentialExists } else { e.into() })?
                .rows_affected();
            if inserted == 0 {
                return Err(RegisterError::CredentialExists);
            }
            insert_event!(audit, now).execute(&mut *tx).await?;
        });
        Ok(())
    }

    pub async fn credential(&self, id: &str) -> Result<Option<Credential>> {
        let sql = format!("SELECT {COLUMNS} FROM credentials WHERE id = $1");
        Ok(read!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
    }

    /// A passkey with the user it belongs to, in one query (a sign-in's finish
    /// needs both).
    pub async fn credential_with_owner(&self, id: &str) -> Result<Option<(Credential, User)>> {
        let sql = WITH_OWNER.as_str();
        // A hot read: every sign-in's finish.
        let row: Option<OwnedCredential> = hot_read!(self,
            c => c.prepare_cached(sql)?.query_row([id], |r| Ok(OwnedCredential {
                credential: Credential {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    name: r.get(2)?,
                    passkey: r.get(3)?,
                    public_jwk: r.get(4)?,
                    counter: r.get(5)?,
                    aaguid: r.get(6)?,
                    backup_eligible: r.get(7)?,
                    backup_state: r.get(8)?,
                    created_at: r.get(9)?,
                    last_used_at: r.get(10)?,
                    revoked_at: r.get(11)?,
                    added_with_step_up: r.get(12)?,
                },
                owner_username: r.get(13)?,
                owner_display_name: r.get(14)?,
                owner_role: r.get(15)?,
                owner_disabled_at: r.get(16)?,
                owner_created_at: r.get(17)?,
                owner_external_id: r.get(18)?,
            })).optional(),
            p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let owner = User::try_from(super::users::UserRow {
            id: row.credential.user_id.clone(),
            username: row.owner_username,
            display_name: row.owner_display_name,
            role: row.owner_role,
            disabled_at: row.owner_disabled_at,
            created_at: row.owner_created_at,
            external_id: row.owner_external_id,
        })?;
        Ok(Some((row.credential, owner)))
    }

    /// A user's passkeys that still work, oldest first.
    pub async fn active_credentials(&self, user_id: &str) -> Result<Vec<Credential>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM credentials WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id"
        );
        Ok(read!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await)?)
    }

    /// Every credential of a user, revoked ones included, oldest first.
    pub async fn all_credentials(&self, user_id: &str) -> Result<Vec<Credential>> {
        let sql =
            format!("SELECT {COLUMNS} FROM credentials WHERE user_id = $1 ORDER BY created_at, id");
        Ok(read!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await)?)
    }

    /// Records a successful assertion. The counter only moves forward: a non-zero
    /// counter that is not above the stored one changes nothing (also when two
    /// sign-ins race), and a credential revoked meanwhile is not touched.
    pub async fn record_credential_use(
        &self,
        id: &str,
        counter: u32,
        passkey: &str,
        backup_state: bool,
        now: i64,
    ) -> Result<UseOutcome> {
        let counter = i64::from(counter);
        let updated = on_writer!(self, p => sqlx::query(RECORD_USE)
            .bind(id).bind(counter).bind(passkey).bind(backup_state).bind(now)
            .execute(p).await.map(|r| r.rows_affected()))?;
        if updated == 1 {
            return Ok(UseOutcome::Recorded);
        }
        let stored = self.credential(id).await?;
        Ok(refused_use(
            counter,
            stored.map(|c| (c.revoked_at, c.counter)),
        ))
    }

    pub async fn rename_credential(&self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let sql = "UPDATE credentials SET name = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";
        let done = on_writer!(self, p => sqlx::query(sql).bind(id).bind(user_id).bind(name)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}

/// Records a passkey's use: its new counter, state and backup state, only if
/// it is still active, its user enabled, and its counter moved forward (or
/// both are 0, a synced passkey). Parameters: id, counter, passkey JSON,
/// backup state, time.
pub(crate) const RECORD_USE: &str =
    "UPDATE credentials SET counter = $2, passkey = $3, backup_state = $4, last_used_at = $5 \
     WHERE id = $1 AND revoked_at IS NULL \
     AND ($2 > counter OR ($2 = 0 AND counter = 0)) \
     AND EXISTS (SELECT 1 FROM users u WHERE u.id = credentials.user_id AND u.disabled_at IS NULL)";

/// A passkey's `(revoked_at, counter)` as stored, for [`refused_use`].
pub(crate) const STORED_USE: &str = "SELECT revoked_at, counter FROM credentials WHERE id = $1";

/// Why [`RECORD_USE`] changed nothing, from the passkey as stored now
/// (`(revoked_at, counter)`, `None` if it is gone).
pub(crate) fn refused_use(counter: i64, stored: Option<(Option<i64>, i64)>) -> UseOutcome {
    match stored {
        Some((None, stored)) if counter != 0 && counter <= stored => UseOutcome::CounterRegressed,
        Some((None, stored)) if counter == 0 && stored > 0 => UseOutcome::CounterRegressed,
        _ => UseOutcome::Gone,
    }
}

/// A passkey's use to record with a sign-in (see [`RECORD_USE`]).
#[derive(Debug, Clone)]
pub struct CredentialUse {
    pub counter: u32,
    pub passkey: String,
    pub backup_state: bool,
    pub at: i64,
}
