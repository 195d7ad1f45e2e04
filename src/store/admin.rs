//! Queries behind the admin API: listing, counting, detail.

use super::entitlements::Entitlement;
use super::{dispatch, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub username_key: String,
    pub display_name: String,
    pub role: String,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub passkeys: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub users: i64,
    pub admins: i64,
    pub disabled_users: i64,
    pub passkeys: i64,
    pub active_licenses: i64,
    pub revoked_licenses: i64,
    pub open_sessions: i64,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl Store {
    /// Users whose username contains `query` (or whose id is `query`), by
    /// username, after the cursor (a username key).
    pub async fn search_users(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserSummary>, sqlx::Error> {
        let pattern = query.map(|q| format!("%{}%", like_escape(&super::users::username_key(q))));
        let sql = "SELECT u.id, u.username, u.username_key, u.display_name, u.role, u.disabled_at, u.created_at, \
                   (SELECT COUNT(*) FROM credentials c WHERE c.user_id = u.id AND c.revoked_at IS NULL) AS passkeys \
                   FROM users u WHERE ($1 IS NULL OR u.username_key LIKE $1 ESCAPE '\\' OR u.id = $2) \
                   AND ($3 IS NULL OR u.username_key > $3) ORDER BY u.username_key LIMIT $4";
        dispatch!(self.reader(), p => sqlx::query_as::<_, UserSummary>(sql)
            .bind(pattern.as_deref()).bind(query).bind(after).bind(limit).fetch_all(p).await)
    }

    pub async fn counts(&self, now: i64) -> Result<Counts, sqlx::Error> {
        let one = |sql: &'static str| async move {
            dispatch!(self.reader(), p => sqlx::query_scalar::<_, i64>(sql).bind(now).fetch_one(p).await)
        };
        Ok(Counts {
            users: one("SELECT COUNT(*) FROM users WHERE $1 IS NOT NULL").await?,
            admins: one("SELECT COUNT(*) FROM users WHERE role = 'admin' AND $1 IS NOT NULL")
                .await?,
            disabled_users: one(
                "SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL AND $1 IS NOT NULL",
            )
            .await?,
            passkeys: one(
                "SELECT COUNT(*) FROM credentials WHERE revoked_at IS NULL AND $1 IS NOT NULL",
            )
            .await?,
            active_licenses: one(
                "SELECT COUNT(*) FROM licenses WHERE revoked_at IS NULL AND expires_at > $1",
            )
            .await?,
            revoked_licenses: one(
                "SELECT COUNT(*) FROM licenses WHERE revoked_at IS NOT NULL AND expires_at > $1",
            )
            .await?,
            open_sessions: one(
                "SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL AND expires_at > $1",
            )
            .await?,
        })
    }

    /// `(day number, event, count)` of audit events since `since` (Unix seconds).
    pub async fn daily_events(&self, since: i64) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        let sql = "SELECT at / 86400 AS day, event, COUNT(*) FROM audit_log WHERE at >= $1 \
                   AND event IN ('signin.success', 'license.minted', 'license.revoked', 'passkey.revoked', \
                   'entitlement.removed', 'user.disabled') GROUP BY at / 86400, event";
        dispatch!(self.reader(), p => sqlx::query_as::<_, (i64, String, i64)>(sql).bind(since).fetch_all(p).await)
    }

    /// Every credential of a user, revoked ones included, oldest first.
    pub async fn all_credentials(
        &self,
        user_id: &str,
    ) -> Result<Vec<super::credentials::Credential>, sqlx::Error> {
        let sql = "SELECT id, user_id, name, passkey, public_jwk, counter, aaguid, backup_eligible, backup_state, \
                   created_at, last_used_at, revoked_at FROM credentials WHERE user_id = $1 ORDER BY created_at, id";
        dispatch!(self.reader(), p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await)
    }

    /// Every entitlement of a user, expired ones included.
    pub async fn all_entitlements(&self, user_id: &str) -> Result<Vec<Entitlement>, sqlx::Error> {
        let sql = "SELECT name, expires_at, granted_at FROM entitlements WHERE user_id = $1 ORDER BY name";
        dispatch!(self.reader(), p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await)
    }

    /// Active admins (not disabled).
    pub async fn admin_count(&self) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL";
        dispatch!(self.reader(), p => sqlx::query_scalar(sql).fetch_one(p).await)
    }
}
