//! Queries behind the admin API: listing, counting, detail.

use super::audit::Event;
use super::users::{Role, User, UserRow};
use super::{read, Result, Store};

/// A user in a list, with the cursor key and their number of passkeys.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub user: User,
    pub username_key: String,
    pub passkeys: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    user: UserRow,
    username_key: String,
    passkeys: i64,
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
    /// Users whose username key contains `query.0` (a username key, see
    /// `crate::usernames::lookup_key`) or whose id is `query.1`, by username
    /// key, and whose external id is `external_id` when given, after the
    /// cursor (a username key).
    pub async fn search_users(
        &self,
        query: Option<(&str, &str)>,
        external_id: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserSummary>> {
        let pattern = query.map(|(key, _)| format!("%{}%", like_escape(key)));
        let id = query.map(|(_, id)| id);
        let sql = "SELECT u.id, u.username, u.username_key, u.display_name, u.role, u.disabled_at, u.created_at, u.external_id, \
                   (SELECT COUNT(*) FROM credentials c WHERE c.user_id = u.id AND c.revoked_at IS NULL) AS passkeys \
                   FROM users u WHERE ($1 IS NULL OR u.username_key LIKE $1 ESCAPE '\\' OR u.id = $2) \
                   AND ($3 IS NULL OR u.username_key > $3) AND ($5 IS NULL OR u.external_id = $5) \
                   ORDER BY u.username_key LIMIT $4";
        let rows: Vec<SummaryRow> = read!(self, p => sqlx::query_as(sql)
            .bind(pattern.as_deref()).bind(id).bind(after).bind(limit).bind(external_id).fetch_all(p).await)?;
        rows.into_iter()
            .map(|r| {
                Ok(UserSummary {
                    user: r.user.try_into()?,
                    username_key: r.username_key,
                    passkeys: r.passkeys,
                })
            })
            .collect()
    }

    pub async fn counts(&self, now: i64) -> Result<Counts> {
        let one = |sql: &'static str| async move {
            Ok::<i64, super::Error>(
                read!(self, p => sqlx::query_scalar::<_, i64>(sql).bind(now).fetch_one(p).await)?,
            )
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

    /// `(day number, event, count)` of the given audit events since `since` (Unix seconds).
    pub async fn daily_events(
        &self,
        since: i64,
        events: &[Event],
    ) -> Result<Vec<(i64, Event, i64)>> {
        let sql = "SELECT at / 86400 AS day, event, COUNT(*) FROM audit_log WHERE at >= $1 \
                   GROUP BY at / 86400, event";
        let rows: Vec<(i64, String, i64)> =
            read!(self, p => sqlx::query_as(sql).bind(since).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(day, event, n)| Some((day, Event::parse(&event)?, n)))
            .filter(|(_, event, _)| events.contains(event))
            .collect())
    }

    /// Enabled admins.
    pub async fn admin_count(&self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM users WHERE role = $1 AND disabled_at IS NULL";
        Ok(read!(self, p => sqlx::query_scalar(sql).bind(Role::Admin.as_str()).fetch_one(p).await)?)
    }
}
