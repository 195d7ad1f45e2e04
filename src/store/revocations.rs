//! Revocation cascades and the account changes that can take access away.
//!
//! Each runs in one transaction that checks its rule (the last passkey, the
//! last enabled admin), makes the change, bumps the status-list versions so
//! that every instance rebuilds them, and writes the audit row: either all of
//! it happens or none of it.

use super::audit::{insert_event, AuditEvent};
use super::licenses::LicenseRow;
use super::users::Role;
use super::{lock_invariants, spend_confirmation, transaction, Result, Store};

pub(super) const BUMP_LISTS: &str = "UPDATE status_lists SET version = version + 1";

/// Enabled admins other than `$1`.
const OTHER_ADMINS: &str =
    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1";

/// Who may lose a passkey, and what must remain.
#[derive(Debug, Clone, Copy)]
pub struct PasskeyRules<'a> {
    /// The passkey must belong to this user (self-service); otherwise any owner.
    pub owner: Option<&'a str>,
    /// Refuse to remove the owner's last passkey (self-service keeps one).
    pub keep_one: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PasskeyRevocation {
    /// Revoked; the owner's user id.
    Revoked(String),
    /// No such active passkey (of that owner).
    NotFound,
    /// The owner's last passkey, and `keep_one` was asked.
    LastPasskey,
    /// The only enabled admin's last passkey.
    LastAdmin,
    /// The passkey confirmation it needed was already spent.
    Unconfirmed,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AccountChange {
    Changed,
    Unchanged,
    NoSuchUser,
    /// It would leave no enabled admin.
    LastAdmin,
    /// The passkey confirmation it needed was already spent.
    Unconfirmed,
}

/// The outcome of revoking a license or removing an entitlement.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal<T> {
    Done(T),
    NotFound,
    /// The passkey confirmation it needed was already spent.
    Unconfirmed,
}

/// The license-revocation condition for "carries the entitlement `$2`", exact
/// on the JSON array (never a `LIKE`: `%` and `_` would match other names).
pub(super) fn carries(sqlite: bool) -> &'static str {
    if sqlite {
        "EXISTS (SELECT 1 FROM json_each(licenses.entitlements) e WHERE e.value = $2)"
    } else {
        "jsonb_exists(CAST(licenses.entitlements AS jsonb), $2)"
    }
}

impl Store {
    /// Revokes one license and ends the sign-in it was minted under. The audit
    /// row names the license's owner as its target.
    pub async fn revoke_license(
        &self,
        jti: &str,
        reason: &str,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<Removal<LicenseRow>> {
        let select = format!(
            "SELECT {} FROM licenses WHERE jti = $1",
            super::licenses::COLUMNS
        );
        let found = transaction!(self, tx => {
            let row: Option<LicenseRow> = sqlx::query_as(&select).bind(jti).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                return Ok(Removal::NotFound);
            };
            if !spend_confirmation!(tx, spend, now) {
                return Ok(Removal::Unconfirmed);
            }
            {
                sqlx::query("UPDATE licenses SET revoked_at = $2, revoked_reason = $3 WHERE jti = $1 AND revoked_at IS NULL")
                    .bind(jti).bind(now).bind(reason).execute(&mut *tx).await?;
                if let Some(login) = &row.login_id {
                    sqlx::query("DELETE FROM sessions WHERE login_id = $1").bind(login).execute(&mut *tx).await?;
                }
                sqlx::query("UPDATE status_lists SET version = version + 1 WHERE id = $1")
                    .bind(row.list_id).execute(&mut *tx).await?;
                let event = AuditEvent { target_user_id: Some(&row.user_id), ..audit.clone() };
                insert_event!(event, now).execute(&mut *tx).await?;
            }
            Removal::Done(row)
        });
        Ok(found)
    }

    /// Revokes a passkey: it can no longer sign in, the sessions it opened end
    /// and the licenses minted under them are revoked. The rules are checked
    /// in the same transaction as the change, so two concurrent removals
    /// cannot both pass them.
    pub async fn revoke_credential(
        &self,
        id: &str,
        reason: &str,
        rules: PasskeyRules<'_>,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<PasskeyRevocation> {
        let outcome = transaction!(self, tx => {
            lock_invariants!(self, tx);
            let owner: Option<(String, String, Option<i64>)> = sqlx::query_as(
                "SELECT c.user_id, u.role, u.disabled_at FROM credentials c JOIN users u ON u.id = c.user_id \
                 WHERE c.id = $1 AND c.revoked_at IS NULL")
                .bind(id).fetch_optional(&mut *tx).await?;
            let Some((owner, role, disabled_at)) = owner.filter(|(o, ..)| rules.owner.is_none_or(|r| r == o.as_str())) else {
                return Ok(PasskeyRevocation::NotFound);
            };
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM credentials WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2")
                .bind(&owner).bind(id).fetch_one(&mut *tx).await?;
            if others == 0 && rules.keep_one {
                return Ok(PasskeyRevocation::LastPasskey);
            }
            if others == 0 && role == Role::Admin.as_str() && disabled_at.is_none() {
                let other_admins: i64 = sqlx::query_scalar(OTHER_ADMINS).bind(&owner).fetch_one(&mut *tx).await?;
                if other_admins == 0 {
                    return Ok(PasskeyRevocation::LastAdmin);
                }
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(PasskeyRevocation::Unconfirmed);
            }
            sqlx::query("UPDATE credentials SET revoked_at = $2, revoked_reason = $3 WHERE id = $1")
                .bind(id).bind(now).bind(reason).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM sessions WHERE credential_id = $1").bind(id).execute(&mut *tx).await?;
            // Found through the owner's licenses (`licenses_user`): the
            // passkey's column has no index of its own, which every mint would pay for.
            sqlx::query("UPDATE licenses SET revoked_at = $2, revoked_reason = $3 \
                         WHERE user_id = $4 AND credential_id = $1 AND revoked_at IS NULL")
                .bind(id).bind(now).bind(reason).bind(&owner).execute(&mut *tx).await?;
            sqlx::query(BUMP_LISTS).execute(&mut *tx).await?;
            let event = AuditEvent { target_user_id: Some(&owner), ..audit.clone() };
            insert_event!(event, now).execute(&mut *tx).await?;
            PasskeyRevocation::Revoked(owner)
        });
        Ok(outcome)
    }

    /// Removes an entitlement and revokes the user's licenses that carry it;
    /// nothing changes when the user does not have it.
    pub async fn remove_entitlement(
        &self,
        user_id: &str,
        name: &str,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<Removal<()>> {
        let revoke = format!(
            "UPDATE licenses SET revoked_at = $3, revoked_reason = 'entitlement removed' \
             WHERE user_id = $1 AND revoked_at IS NULL AND {}",
            carries(self.is_sqlite())
        );
        let removed = transaction!(self, tx => {
            let n = sqlx::query("DELETE FROM entitlements WHERE user_id = $1 AND name = $2")
                .bind(user_id).bind(name).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(Removal::NotFound);
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(Removal::Unconfirmed);
            }
            sqlx::query(&revoke).bind(user_id).bind(name).bind(now).execute(&mut *tx).await?;
            sqlx::query(BUMP_LISTS).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            Removal::Done(())
        });
        Ok(removed)
    }

    /// Disables (or re-enables) a user. Disabling ends their sessions and
    /// revokes their licenses, and is refused for the last enabled admin.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<AccountChange> {
        let outcome = transaction!(self, tx => {
            lock_invariants!(self, tx);
            let user: Option<(String, Option<i64>)> = sqlx::query_as("SELECT role, disabled_at FROM users WHERE id = $1")
                .bind(user_id).fetch_optional(&mut *tx).await?;
            let Some((role, disabled_at)) = user else {
                return Ok(AccountChange::NoSuchUser);
            };
            if disabled_at.is_some() == disabled {
                return Ok(AccountChange::Unchanged);
            }
            if disabled {
                if role == Role::Admin.as_str() {
                    let other_admins: i64 = sqlx::query_scalar(OTHER_ADMINS).bind(user_id).fetch_one(&mut *tx).await?;
                    if other_admins == 0 {
                        return Ok(AccountChange::LastAdmin);
                    }
                }
                if !spend_confirmation!(tx, spend, now) {
                    return Ok(AccountChange::Unconfirmed);
                }
                sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1").bind(user_id).bind(now).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
                sqlx::query("UPDATE licenses SET revoked_at = $2, revoked_reason = 'user disabled' WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(user_id).bind(now).execute(&mut *tx).await?;
                sqlx::query(BUMP_LISTS).execute(&mut *tx).await?;
            } else {
                sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1").bind(user_id).execute(&mut *tx).await?;
            }
            insert_event!(audit, now).execute(&mut *tx).await?;
            AccountChange::Changed
        });
        Ok(outcome)
    }

    /// Changes a role; demoting the last enabled admin is refused.
    pub async fn set_role(
        &self,
        user_id: &str,
        role: Role,
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<AccountChange> {
        let outcome = transaction!(self, tx => {
            lock_invariants!(self, tx);
            let user: Option<(String, Option<i64>)> = sqlx::query_as("SELECT role, disabled_at FROM users WHERE id = $1")
                .bind(user_id).fetch_optional(&mut *tx).await?;
            let Some((current, disabled_at)) = user else {
                return Ok(AccountChange::NoSuchUser);
            };
            if current == role.as_str() {
                return Ok(AccountChange::Unchanged);
            }
            if current == Role::Admin.as_str() && disabled_at.is_none() {
                let other_admins: i64 = sqlx::query_scalar(OTHER_ADMINS).bind(user_id).fetch_one(&mut *tx).await?;
                if other_admins == 0 {
                    return Ok(AccountChange::LastAdmin);
                }
            }
            if !spend_confirmation!(tx, spend, now) {
                return Ok(AccountChange::Unconfirmed);
            }
            sqlx::query("UPDATE users SET role = $2 WHERE id = $1").bind(user_id).bind(role.as_str()).execute(&mut *tx).await?;
            insert_event!(audit, now).execute(&mut *tx).await?;
            AccountChange::Changed
        });
        Ok(outcome)
    }
}
