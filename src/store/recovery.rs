//! Recovery codes: a user's one-time codes (stored hashed) and the wrong
//! guesses counted against an account and an address.

use super::audit::{insert_event, AuditEvent};
use super::{read, spend_confirmation, transaction, Result, Store};

impl Store {
    /// Replaces the user's recovery codes with `hashes`, spending the passkey
    /// confirmation it needs, with its audit row; false when that confirmation
    /// was already spent.
    pub async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        spend: Option<&str>,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<bool> {
        let done = transaction!(self, tx => {
            if !spend_confirmation!(tx, spend, now) {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
            for hash in hashes {
                sqlx::query("INSERT INTO recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)")
                    .bind(hash).bind(user_id).bind(now).execute(&mut *tx).await?;
            }
            insert_event!(audit, now).execute(&mut *tx).await?;
            true
        });
        Ok(done)
    }

    /// The hashes of a user's unused recovery codes.
    pub async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT code_hash FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL";
        Ok(read!(self, p => sqlx::query_scalar(sql).bind(user_id).fetch_all(p).await)?)
    }

    /// Wrong recovery codes since `since`: for the account, and from the address.
    pub async fn recovery_failures(
        &self,
        user_id: Option<&str>,
        client_addr: Option<&str>,
        since: i64,
    ) -> Result<(i64, i64)> {
        let by_user = "SELECT COUNT(*) FROM recovery_failures WHERE user_id = $1 AND at > $2";
        let by_addr = "SELECT COUNT(*) FROM recovery_failures WHERE client_addr = $1 AND at > $2";
        let user: i64 = match user_id {
            Some(id) => {
                read!(self, p => sqlx::query_scalar(by_user).bind(id).bind(since).fetch_one(p).await)?
            }
            None => 0,
        };
        let addr: i64 = match client_addr {
            Some(a) => {
                read!(self, p => sqlx::query_scalar(by_addr).bind(a).bind(since).fetch_one(p).await)?
            }
            None => 0,
        };
        Ok((user, addr))
    }

    /// Counts one wrong recovery code, with its audit row when `audit` is given.
    pub async fn record_recovery_failure(
        &self,
        user_id: Option<&str>,
        client_addr: Option<&str>,
        audit: Option<&AuditEvent<'_>>,
        now: i64,
    ) -> Result<()> {
        transaction!(self, tx => {
            sqlx::query("INSERT INTO recovery_failures (user_id, client_addr, at) VALUES ($1, $2, $3)")
                .bind(user_id).bind(client_addr).bind(now).execute(&mut *tx).await?;
            if let Some(audit) = audit {
                insert_event!(audit, now).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }
}
