//! Issued licenses, their status-list slots and DPoP proof replay.

use super::audit::{AuditEvent, OwnedAuditEvent};
use super::batch::{Item, MintItem, Outcome};
use super::{hot_read, is_unique_violation, on_writer, read, Error, Result, Store};

/// Entries per status list; a new list starts when one is full.
pub const LIST_CAPACITY: i64 = 1 << 20;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LicenseRow {
    pub jti: String,
    pub user_id: String,
    pub kid: String,
    pub device_jkt: String,
    pub login_id: Option<String>,
    pub credential_id: Option<String>,
    pub list_id: i64,
    pub idx: i64,
    pub entitlements: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

/// What the mint transaction needs to know about the license being issued.
pub struct NewLicense<'a> {
    pub jti: &'a str,
    pub user_id: &'a str,
    pub kid: &'a str,
    pub device_jkt: &'a str,
    pub login_id: &'a str,
    pub credential_id: &'a str,
    pub entitlements: &'a str,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The device's name if this mint is the first for its key (from the browser and system).
    pub device_name: &'a str,
    /// Devices the account may have at once; `None`: unlimited.
    pub device_limit: Option<i64>,
}

/// [`NewLicense`] owned, to wait in the group-commit queue.
pub(crate) struct OwnedLicense {
    pub jti: String,
    pub user_id: String,
    pub kid: String,
    pub device_jkt: String,
    pub login_id: String,
    pub credential_id: String,
    pub entitlements: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub device_name: String,
    pub device_limit: Option<i64>,
}

impl From<&NewLicense<'_>> for OwnedLicense {
    fn from(l: &NewLicense<'_>) -> Self {
        Self {
            jti: l.jti.to_owned(),
            user_id: l.user_id.to_owned(),
            kid: l.kid.to_owned(),
            device_jkt: l.device_jkt.to_owned(),
            login_id: l.login_id.to_owned(),
            credential_id: l.credential_id.to_owned(),
            entitlements: l.entitlements.to_owned(),
            issued_at: l.issued_at,
            expires_at: l.expires_at,
            device_name: l.device_name.to_owned(),
            device_limit: l.device_limit,
        }
    }
}

/// The statements of one mint on PostgreSQL, run in the open transaction (or
/// savepoint) `$tx` for the [`super::batch::MintItem`] `$m`; evaluates to
/// `Result<(), MintError>`. SQLite's writer runs the same checks in the same
/// order ([`super::writer`]). A precondition of minting (a limit, a check)
/// belongs in both: a refusal rolls back this mint alone.
macro_rules! mint_statements {
    ($tx:ident, $m:expr) => {{
        let m: &$crate::store::batch::MintItem = $m;
        let license = &m.license;
        let (list_id, idx) = m.slot;
        let run = async {
            if let Some(max) = license.device_limit {
                // Two new devices minting at once must not both fit: the user
                // row is locked first.
                sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                    .bind(&license.user_id)
                    .execute(&mut *$tx)
                    .await?;
                let known: Option<Option<i64>> =
                    sqlx::query_scalar($crate::store::licenses::DEVICE_REMOVED_AT)
                        .bind(&license.user_id)
                        .bind(&license.device_jkt)
                        .fetch_optional(&mut *$tx)
                        .await?;
                if !matches!(known, Some(None)) {
                    let active: Vec<(String, String, i64)> = sqlx::query_as(
                        $crate::store::licenses::ACTIVE_DEVICES,
                    )
                    .bind(&license.user_id)
                    .fetch_all(&mut *$tx)
                    .await?;
                    if i64::try_from(active.len()).unwrap_or(i64::MAX) >= max {
                        return Err($crate::store::licenses::MintError::DeviceLimit(max, active));
                    }
                }
            }
            let fresh = sqlx::query(
                "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&m.proof_id)
            .bind(m.proof_expires_at)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if fresh == 0 {
                return Err($crate::store::licenses::MintError::Replay);
            }
            // On PostgreSQL the rows are share-locked, so a concurrent revocation
            // waits for this transaction and then sees (and revokes) the new license.
            let valid: Option<String> = sqlx::query_scalar(&$crate::store::licenses::still_valid_sql(false))
            .bind(&license.login_id)
            .bind(&license.user_id)
            .fetch_optional(&mut *$tx)
            .await?;
            if valid.is_none() {
                return Err($crate::store::licenses::MintError::Revoked);
            }
            $crate::store::licenses::bind_license!(
                sqlx::query($crate::store::licenses::INSERT_LICENSE),
                license,
                (list_id, idx)
            )
            .execute(&mut *$tx)
            .await?;
            $crate::store::licenses::bind_device!(sqlx::query($crate::store::licenses::UPSERT_DEVICE), license)
                .execute(&mut *$tx)
                .await?;
            let audit = m.audit.borrowed();
            $crate::store::audit::insert_event!(audit, license.issued_at)
                .execute(&mut *$tx)
                .await?;
            Ok(())
        };
        run.await
    }};
}
pub(crate) use mint_statements;

/// A mint's device, if known: when it was removed (`NULL`: active).
pub(crate) const DEVICE_REMOVED_AT: &str =
    "SELECT removed_at FROM devices WHERE user_id = $1 AND jkt = $2";

/// A user's active devices `(jkt, name, last_sync)`, oldest first (the device limit's check).
pub(crate) const ACTIVE_DEVICES: &str =
    "SELECT jkt, name, last_sync FROM devices WHERE user_id = $1 AND removed_at IS NULL ORDER BY first_seen, jkt";

/// Binds a license's eleven values, in [`INSERT_LICENSE`]'s order.
macro_rules! bind_license {
    ($q:expr, $license:expr, $slot:expr) => {
        $q.bind(&$license.jti)
            .bind(&$license.user_id)
            .bind(&$license.kid)
            .bind(&$license.device_jkt)
            .bind(&$license.login_id)
            .bind(&$license.credential_id)
            .bind($slot.0)
            .bind($slot.1)
            .bind(&$license.entitlements)
            .bind($license.issued_at)
            .bind($license.expires_at)
    };
}
pub(crate) use bind_license;

/// The device of a mint: recorded at its first mint, synced at each; a
/// removed one comes back. [`bind_device!`] binds its parameters.
pub(crate) const UPSERT_DEVICE: &str =
    "INSERT INTO devices (user_id, jkt, name, first_seen, last_sync) VALUES ($1, $2, $3, $4, $4) \
     ON CONFLICT (user_id, jkt) DO UPDATE SET last_sync = excluded.last_sync, removed_at = NULL";

macro_rules! bind_device {
    ($q:expr, $license:expr) => {
        $q.bind(&$license.user_id)
            .bind(&$license.device_jkt)
            .bind(&$license.device_name)
            .bind($license.issued_at)
    };
}
pub(crate) use bind_device;

pub(crate) const INSERT_LICENSE: &str =
    "INSERT INTO licenses (jti, user_id, kid, device_jkt, login_id, credential_id, list_id, idx, \
     entitlements, issued_at, expires_at, revoked_at, revoked_reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)";

/// `sql` with each `$N` parameter renumbered `$(N + by)`, so that it can follow
/// other statements in one query that shares their argument list.
pub(crate) fn shift_params(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A mint without a device limit on PostgreSQL, as one statement in a
/// transaction of its own: the same checks and writes as
/// [`mint_statements!`], in one round trip instead of seven. The sign-in is
/// re-checked with its rows share-locked (a revocation under way is waited
/// for and wins); the proof id is spent only if it stands; the license, its
/// device and its audit row are written only if the proof id was fresh. Its
/// row says whether the proof was already spent (when the statement
/// started), whether the sign-in stands, and whether the license went in;
/// [`Store::mint_alone`] binds it.
static MINT_IN_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH valid AS ({valid}), \
         spent AS (SELECT 1 FROM dpop_proofs WHERE id = $3), \
         proof AS (INSERT INTO dpop_proofs (id, expires_at) SELECT $3, $4 \
                   WHERE EXISTS (SELECT 1 FROM valid) AND NOT EXISTS (SELECT 1 FROM spent) \
                   ON CONFLICT (id) DO NOTHING RETURNING id), \
         license AS ({license} RETURNING jti), \
         device AS ({device}), \
         audit AS ({audit}) \
         SELECT EXISTS (SELECT 1 FROM spent), EXISTS (SELECT 1 FROM valid), EXISTS (SELECT 1 FROM license)",
        valid = still_valid_sql(false),
        license = insert_where(INSERT_LICENSE, 4, "EXISTS (SELECT 1 FROM proof)"),
        device = insert_where(UPSERT_DEVICE, 15, "EXISTS (SELECT 1 FROM license)"),
        audit = insert_where(super::audit::INSERT_EVENT, 19, "EXISTS (SELECT 1 FROM license)"),
    )
});

/// `INSERT … VALUES (…) rest` as `INSERT … SELECT … WHERE condition rest`,
/// its parameters shifted by `by`.
fn insert_where(sql: &str, by: usize, condition: &str) -> String {
    let sql = shift_params(sql, by);
    let Some(open) = sql.find("VALUES (") else {
        return sql;
    };
    let start = open + "VALUES (".len();
    let end = sql[start..].find(')').map_or(sql.len(), |at| start + at);
    format!(
        "{}SELECT {} WHERE {condition}{}",
        &sql[..open],
        &sql[start..end],
        &sql[(end + 1).min(sql.len())..]
    )
}

impl Store {
    /// A mint alone in its transaction on PostgreSQL (see [`MINT_IN_ONE`]);
    /// one with a device limit runs [`mint_statements!`] (its check reads
    /// rows the insert depends on, with the user row locked first).
    pub(crate) async fn mint_alone(&self, pool: &sqlx::PgPool, m: &MintItem) -> Result<Outcome> {
        let license = &m.license;
        if license.device_limit.is_some() {
            let mut tx = pool.begin().await?;
            let done = mint_statements!(tx, m);
            if done.is_ok() {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            return super::batch::mint_outcome(done);
        }
        let q = sqlx::query_as::<_, (bool, bool, bool)>(&MINT_IN_ONE)
            .bind(&license.login_id)
            .bind(&license.user_id)
            .bind(&m.proof_id)
            .bind(m.proof_expires_at);
        let q = bind_license!(q, license, m.slot);
        let q = bind_device!(q, license);
        let audit = m.audit.borrowed();
        let (spent, valid, minted) = super::audit::bind_event!(q, audit, license.issued_at)
            .fetch_one(pool)
            .await?;
        Ok(if minted {
            Outcome::Done
        } else if spent || valid {
            // Spent before, or by a concurrent request since this statement began.
            Outcome::Replay
        } else {
            Outcome::Revoked
        })
    }
}

/// The re-check that the sign-in behind a mint still stands.
pub(crate) fn still_valid_sql(sqlite: bool) -> String {
    let lock = if sqlite { "" } else { " FOR SHARE OF s, c, u" };
    format!(
        "SELECT s.login_id FROM sessions s JOIN credentials c ON c.id = s.credential_id \
         JOIN users u ON u.id = s.user_id \
         WHERE s.login_id = $1 AND s.user_id = $2 AND c.revoked_at IS NULL AND u.disabled_at IS NULL LIMIT 1{lock}"
    )
}

#[derive(Debug)]
pub enum MintError {
    /// The DPoP proof was seen before.
    Replay,
    /// The session, passkey or user was ended, revoked or disabled meanwhile.
    Revoked,
    /// A new device beyond the limit: the limit, and the active devices
    /// `(jkt, name, last_sync)`, oldest first.
    DeviceLimit(i64, Vec<(String, String, i64)>),
    Store(Error),
}

impl From<sqlx::Error> for MintError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

pub(super) const COLUMNS: &str =
    "jti, user_id, kid, device_jkt, login_id, credential_id, list_id, idx, entitlements, \
                       issued_at, expires_at, revoked_at, revoked_reason";

/// Whether a license is neither revoked nor its user disabled (a hot read: every premium call).
pub(super) const LICENSE_IN_FORCE: &str =
    "SELECT COUNT(*) FROM licenses l JOIN users u ON u.id = l.user_id \
     WHERE l.jti = $1 AND l.revoked_at IS NULL AND u.disabled_at IS NULL";

impl Store {
    /// Records a DPoP proof id; false when it was already used (a replay).
    /// Goes through the group commit: answered once its batch has committed.
    pub async fn use_dpop_proof(&self, proof_id: &str, expires_at: i64) -> Result<bool> {
        let item = Item::Proof {
            id: proof_id.to_owned(),
            expires_at,
        };
        Ok(self.queue.submit(item).await? == Outcome::Done)
    }

    /// Reserves `size` consecutive status-list indexes for one instance to
    /// hand out: `(list id, first index, end index)`. Minting then needs no
    /// shared counter row, which every mint would otherwise queue on. Indexes
    /// of a block an instance never uses stay 0 (valid) forever: harmless.
    pub async fn reserve_status_block(&self, size: i64, now: i64) -> Result<(i64, i64, i64)> {
        let take = "UPDATE status_lists SET next_idx = next_idx + $1 \
                    WHERE id = (SELECT MAX(id) FROM status_lists) AND next_idx + $1 <= capacity \
                    RETURNING id, next_idx - $1";
        let open = "INSERT INTO status_lists (id, next_idx, capacity, created_at) \
                    VALUES (COALESCE((SELECT MAX(id) FROM status_lists), 0) + 1, $1, $2, $3) \
                    RETURNING id, CAST(0 AS BIGINT)";
        let mut attempts = 0;
        loop {
            let taken: Option<(i64, i64)> =
                on_writer!(self, p => sqlx::query_as(take).bind(size).fetch_optional(p).await)?;
            if let Some((list, first)) = taken {
                return Ok((list, first, first + size));
            }
            // The current list is full (or there is none): open the next one.
            let opened: Result<(i64, i64), sqlx::Error> = on_writer!(self, p => sqlx::query_as(open)
                .bind(size).bind(LIST_CAPACITY).bind(now).fetch_one(p).await);
            match opened {
                Ok((list, first)) => return Ok((list, first, first + size)),
                // Another instance opened it at the same moment: take from that one.
                Err(err) if is_unique_violation(&err) && attempts < 3 => attempts += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// In one transaction (a savepoint of a group commit, see [`super::batch`]):
    /// spends the DPoP proof id, re-checks that the sign-in behind the request
    /// still stands, and records the license (already signed for its
    /// status-list slot) with its audit row. Nothing is written unless all of
    /// it succeeds, and the caller is answered once it has committed.
    pub async fn mint_license(
        &self,
        proof_id: &str,
        proof_expires_at: i64,
        (list_id, idx): (i64, i64),
        license: NewLicense<'_>,
        audit: &AuditEvent<'_>,
    ) -> Result<(), MintError> {
        let item = super::batch::MintItem {
            proof_id: proof_id.to_owned(),
            proof_expires_at,
            slot: (list_id, idx),
            license: OwnedLicense::from(&license),
            audit: OwnedAuditEvent::from(audit),
        };
        match self.submit_write(Item::Mint(Box::new(item))).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::Replay) => Err(MintError::Replay),
            Ok(Outcome::Revoked) => Err(MintError::Revoked),
            Ok(Outcome::DeviceLimit(max, active)) => Err(MintError::DeviceLimit(max, active)),
            Ok(other) => Err(MintError::Store(super::Error::Other(anyhow::anyhow!(
                "a mint was answered {other:?}"
            )))),
            Err(err) => Err(MintError::Store(err)),
        }
    }

    pub async fn license(&self, jti: &str) -> Result<Option<LicenseRow>> {
        let sql = format!("SELECT {COLUMNS} FROM licenses WHERE jti = $1");
        Ok(read!(self, p => sqlx::query_as(&sql).bind(jti).fetch_optional(p).await)?)
    }

    /// Whether a license may be honoured online right now: not revoked, its
    /// user not disabled.
    pub async fn license_in_force(&self, jti: &str) -> Result<bool> {
        let n: i64 = hot_read!(self,
            c => c.prepare_cached(LICENSE_IN_FORCE)?.query_row([jti], |r| r.get(0)),
            p => sqlx::query_scalar(LICENSE_IN_FORCE).bind(jti).fetch_one(p).await)?;
        Ok(n == 1)
    }

    pub async fn user_licenses(&self, user_id: &str) -> Result<Vec<LicenseRow>> {
        let sql = format!("SELECT {COLUMNS} FROM licenses WHERE user_id = $1 ORDER BY issued_at DESC, jti LIMIT 200");
        Ok(read!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await)?)
    }

    /// The revoked indexes of one status list, and its size so far.
    pub async fn status_list_bits(&self, list_id: i64) -> Result<Option<(i64, Vec<i64>)>> {
        let size: Option<i64> = read!(self, p => sqlx::query_scalar("SELECT capacity FROM status_lists WHERE id = $1")
            .bind(list_id).fetch_optional(p).await)?;
        let Some(size) = size else { return Ok(None) };
        let sql = "SELECT idx FROM licenses WHERE list_id = $1 AND revoked_at IS NOT NULL";
        let revoked: Vec<i64> =
            read!(self, p => sqlx::query_scalar(sql).bind(list_id).fetch_all(p).await)?;
        Ok(Some((size, revoked)))
    }

    /// `(id, version)` of every status list, to notice revocations made elsewhere.
    pub async fn status_list_versions(&self) -> Result<Vec<(i64, i64)>> {
        Ok(
            read!(self, p => sqlx::query_as("SELECT id, version FROM status_lists ORDER BY id").fetch_all(p).await)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::shift_params;

    #[test]
    fn parameters_are_renumbered_and_nothing_else_changes() {
        assert_eq!(
            shift_params("VALUES ($1, $2, $10) WHERE a = '$' AND b = $3", 11),
            "VALUES ($12, $13, $21) WHERE a = '$' AND b = $14"
        );
        assert_eq!(shift_params("no parameters", 5), "no parameters");
    }
}
