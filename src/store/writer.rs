//! SQLite's side of the group commit ([`super::batch`]): each batch runs on
//! the writer thread's own `rusqlite` connection, statement by statement,
//! with the statements prepared once and kept.
//!
//! Through sqlx every statement was a round trip to the connection's worker
//! thread (about five per batch of mints, each waking two threads, plus the
//! multi-row statements built and prepared for each batch size). Here a
//! statement is a function call on the thread that holds the batch, so an
//! item can afford single-row statements under a savepoint of its own: a
//! refused item rolls back alone, the same way for every kind of item.
//!
//! Transactions on the sqlx write pool (registrations, admin changes, pruning)
//! write to the same file. The writer holds the write turn
//! ([`super::Store::write_turn`]) while a batch is open, so the two take
//! turns in the order they asked instead of racing for SQLite's lock.

use std::sync::LazyLock;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{CachedStatement, Connection, OptionalExtension};
use sqlx::sqlite::SqliteConnectOptions;

use super::audit::OwnedAuditEvent;
use super::batch::{first_uses, Arg, Item, MintItem, Outcome, SignInItem};
use super::{Error, Result};

/// The writer's connection to the file of `opts`, set up as sqlx sets up its
/// own (foreign keys, WAL, `synchronous = NORMAL`, the busy timeout).
pub(super) fn open(opts: &SqliteConnectOptions) -> rusqlite::Result<Connection> {
    let conn = super::readers::open_file(opts)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        super::readers::WRITER_AUTOCHECKPOINT,
    )?;
    // SQLite's default page cache (2 MiB), kept across the writer's own
    // commits; a larger one bought no speed in a trial and cost its size in
    // resident memory.
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Commits `items` in one transaction; one outcome per item, in order. An
/// item that fails (refused, or a statement error of its own) is rolled back
/// alone; if the transaction cannot begin or commit, nothing of it was
/// written and the error is the batch's.
pub(super) fn commit(conn: &Connection, items: &[&Item]) -> Result<Vec<Result<Outcome>>> {
    run(conn, "BEGIN IMMEDIATE")?;
    let results = items_in(conn, items);
    let committed = match results {
        Ok(results) => run(conn, "COMMIT").map(|()| results),
        Err(err) => Err(err),
    };
    if committed.is_err() && !conn.is_autocommit() {
        if let Err(err) = run(conn, "ROLLBACK") {
            tracing::warn!(error = %err, "rolling back a failed batch");
        }
    }
    committed.map_err(Error::from)
}

/// The outcomes of `items`, in the open transaction. `Err` only when the
/// database fails in a way that ends the whole batch (busy, I/O, full disk).
fn items_in(conn: &Connection, items: &[&Item]) -> rusqlite::Result<Vec<Result<Outcome>>> {
    let mut results: Vec<Result<Outcome>> = (0..items.len()).map(|_| Ok(Outcome::Done)).collect();
    let (firsts, repeats) = first_uses(items);
    for i in repeats {
        results[i] = Ok(Outcome::Replay);
    }
    for (i, id, expires_at) in firsts {
        if !spend_proof(conn, id, expires_at)? {
            results[i] = Ok(Outcome::Replay);
        }
    }
    for (i, item) in items.iter().enumerate() {
        results[i] = match item {
            Item::Proof { .. } => continue,
            // One statement changes all or nothing: no savepoint needed.
            Item::Audit(event, at) => {
                settle(insert_event(conn, event, *at).map(|()| Outcome::Done))?
            }
            Item::Exec(sql, args) => settle(exec(conn, sql, args))?,
            Item::Mint(mint) => under_savepoint(conn, |conn| mint_in(conn, mint))?,
            Item::SignIn(sign_in) => under_savepoint(conn, |conn| sign_in_in(conn, sign_in))?,
        };
    }
    Ok(results)
}

/// Runs `item` under a savepoint, kept when it answers `Done`, rolled back
/// otherwise (a refusal or an error).
fn under_savepoint(
    conn: &Connection,
    item: impl FnOnce(&Connection) -> rusqlite::Result<Outcome>,
) -> rusqlite::Result<Result<Outcome>> {
    run(conn, "SAVEPOINT item")?;
    let done = item(conn);
    if !matches!(done, Ok(Outcome::Done)) {
        run(conn, "ROLLBACK TO item")?;
    }
    run(conn, "RELEASE item")?;
    settle(done)
}

/// An item's result: a failure that concerns the whole database (locked by
/// someone else, out of space, failing I/O) ends the batch; any other is the
/// item's alone.
fn settle(done: rusqlite::Result<Outcome>) -> rusqlite::Result<Result<Outcome>> {
    match done {
        Err(err)
            if err
                .sqlite_error_code()
                .is_some_and(super::error::unavailable) =>
        {
            Err(err)
        }
        other => Ok(other.map_err(Error::from)),
    }
}

/// Runs a statement without parameters or rows (transaction control).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Spends a DPoP proof id: false when it was spent before (a replay).
fn spend_proof(conn: &Connection, id: &str, expires_at: i64) -> rusqlite::Result<bool> {
    let sql =
        "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
    Ok(execute(conn, sql, &[text(id), int(expires_at)])? == 1)
}

/// An [`Item::Exec`] statement: the rows it changed.
fn exec(conn: &Connection, sql: &str, args: &[Arg]) -> rusqlite::Result<Outcome> {
    let values: Vec<ToSqlOutput<'_>> = args
        .iter()
        .map(|arg| match arg {
            Arg::Text(v) => opt_text(v.as_deref()),
            Arg::Int(v) => v.map_or(NULL, int),
        })
        .collect();
    Ok(Outcome::Rows(execute(conn, sql, &values)? as u64))
}

/// [`super::licenses::still_valid_sql`] for SQLite, built once.
static STILL_VALID: LazyLock<String> = LazyLock::new(|| super::licenses::still_valid_sql(true));

/// A mint's statements (see [`super::licenses::mint_statements`], the same
/// checks in the same order).
fn mint_in(conn: &Connection, m: &MintItem) -> rusqlite::Result<Outcome> {
    let license = &m.license;
    if let Some(max) = license.device_limit {
        // BEGIN IMMEDIATE already serialises writers: two new devices minting
        // at once cannot both fit.
        let known: Option<Option<i64>> = conn
            .prepare_cached(super::licenses::DEVICE_REMOVED_AT)?
            .query_row([&license.user_id, &license.device_jkt], |r| r.get(0))
            .optional()?;
        if !matches!(known, Some(None)) {
            let active = conn
                .prepare_cached(super::licenses::ACTIVE_DEVICES)?
                .query_map([&license.user_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, String, i64)>>>()?;
            if i64::try_from(active.len()).unwrap_or(i64::MAX) >= max {
                return Ok(Outcome::DeviceLimit(max, active));
            }
        }
    }
    if !spend_proof(conn, &m.proof_id, m.proof_expires_at)? {
        return Ok(Outcome::Replay);
    }
    let valid = conn
        .prepare_cached(&STILL_VALID)?
        .query_row([&license.login_id, &license.user_id], |_| Ok(()))
        .optional()?;
    if valid.is_none() {
        return Ok(Outcome::Revoked);
    }
    execute(
        conn,
        super::licenses::INSERT_LICENSE,
        &[
            text(&license.jti),
            text(&license.user_id),
            text(&license.kid),
            text(&license.device_jkt),
            text(&license.login_id),
            text(&license.credential_id),
            int(m.slot.0),
            int(m.slot.1),
            text(&license.entitlements),
            int(license.issued_at),
            int(license.expires_at),
        ],
    )?;
    execute(
        conn,
        super::licenses::UPSERT_DEVICE,
        &[
            text(&license.user_id),
            text(&license.device_jkt),
            text(&license.device_name),
            int(license.issued_at),
        ],
    )?;
    insert_event(conn, &m.audit, license.issued_at)?;
    Ok(Outcome::Done)
}

/// A sign-in's statements (see [`super::sessions::sign_in_statements`], the
/// same statements in the same order).
fn sign_in_in(conn: &Connection, s: &SignInItem) -> rusqlite::Result<Outcome> {
    let rotated = execute(
        conn,
        super::sessions::ROTATE_INTO_SIGN_IN,
        &[
            text(&s.old_hash),
            text(&s.new_hash),
            text(&s.user_id),
            text(&s.login_id),
            text(&s.credential_id),
            int(s.at),
            opt_text(s.client_addr.as_deref()),
            opt_text(s.user_agent.as_deref()),
            text(&s.data),
            int(s.expires_at),
            int(s.at),
            text(&s.ceremony_id),
        ],
    )?;
    if rotated == 0 {
        let active = conn
            .prepare_cached(super::sessions::PASSKEY_ACTIVE)?
            .query_row([&s.credential_id, &s.user_id], |_| Ok(()))
            .optional()?;
        return Ok(if active.is_some() {
            Outcome::CeremonyGone
        } else {
            Outcome::PasskeyGone
        });
    }
    if let Some(used) = &s.credential_use {
        let counter = i64::from(used.counter);
        let recorded = execute(
            conn,
            super::credentials::RECORD_USE,
            &[
                text(&s.credential_id),
                int(counter),
                text(&used.passkey),
                int(i64::from(used.backup_state)),
                int(used.at),
            ],
        )?;
        if recorded == 0 {
            let stored: Option<(Option<i64>, i64)> = conn
                .prepare_cached(super::credentials::STORED_USE)?
                .query_row([&s.credential_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            return Ok(match super::credentials::refused_use(counter, stored) {
                super::credentials::UseOutcome::CounterRegressed => Outcome::CounterRegressed,
                _ => Outcome::PasskeyGone,
            });
        }
    }
    insert_event(conn, &s.audit, s.at)?;
    Ok(Outcome::Done)
}

/// Records one audit row ([`super::audit::INSERT_EVENT`]).
fn insert_event(conn: &Connection, event: &OwnedAuditEvent, at: i64) -> rusqlite::Result<()> {
    let e = event.borrowed();
    let clip = |v| opt_text(super::audit::clip(v));
    execute(
        conn,
        super::audit::INSERT_EVENT,
        &[
            int(at),
            text(e.event.as_str()),
            clip(e.actor_user_id),
            clip(e.target_user_id),
            clip(e.target),
            clip(e.client_addr),
            clip(e.user_agent),
            clip(e.detail),
            clip(e.actor_key_id),
            clip(e.actor_key_name),
        ],
    )
    .map(drop)
}

/// The names SQLite gives PostgreSQL-style parameters, by number.
const PARAMS: [&str; 12] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12",
];

/// Runs the statement `sql` (prepared once per connection) with `values`
/// bound by name ([`bind`]); the rows it changed.
fn execute(conn: &Connection, sql: &str, values: &[ToSqlOutput<'_>]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    stmt.raw_execute()
}

/// Binds `values` to parameters `$1`, `$2`, … of `stmt` by name: the SQL is
/// shared with PostgreSQL, where a parameter may appear out of order or more
/// than once, and SQLite numbers named parameters by first appearance.
fn bind(stmt: &mut CachedStatement<'_>, values: &[ToSqlOutput<'_>]) -> rusqlite::Result<()> {
    if values.len() > PARAMS.len() || values.len() != stmt.parameter_count() {
        return Err(rusqlite::Error::InvalidParameterCount(
            values.len(),
            stmt.parameter_count(),
        ));
    }
    for (name, value) in PARAMS.iter().zip(values) {
        let index = stmt
            .parameter_index(name)?
            .ok_or_else(|| rusqlite::Error::InvalidParameterName((*name).to_owned()))?;
        stmt.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

const NULL: ToSqlOutput<'static> = ToSqlOutput::Owned(Value::Null);

fn text(v: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()))
}

fn opt_text(v: Option<&str>) -> ToSqlOutput<'_> {
    v.map_or(NULL, text)
}

fn int(v: i64) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(Value::Integer(v))
}

#[cfg(test)]
mod tests {
    /// The writes bind their values by name, so each must name exactly `$1`
    /// to `$n`, in any order; the reads bind by position, so each `$k` must
    /// also be the k-th parameter SQLite numbers (by first appearance).
    #[test]
    fn the_writers_statements_name_their_parameters_one_to_n() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::readers::tests::migrate(&conn);
        let by_name = [
            super::super::licenses::INSERT_LICENSE,
            super::super::licenses::UPSERT_DEVICE,
            super::super::sessions::ROTATE_INTO_SIGN_IN,
            super::super::credentials::RECORD_USE,
            super::super::audit::INSERT_EVENT,
        ];
        let by_position = [
            super::super::licenses::DEVICE_REMOVED_AT,
            super::super::licenses::ACTIVE_DEVICES,
            super::super::sessions::PASSKEY_ACTIVE,
            super::super::credentials::STORED_USE,
            super::STILL_VALID.as_str(),
        ];
        for (sql, in_order) in by_name
            .iter()
            .map(|sql| (*sql, false))
            .chain(by_position.iter().map(|sql| (*sql, true)))
        {
            let stmt = conn.prepare(sql).unwrap();
            let n = stmt.parameter_count();
            assert!((1..=super::PARAMS.len()).contains(&n), "{sql}");
            for (k, name) in super::PARAMS[..n].iter().enumerate() {
                let index = stmt.parameter_index(name).unwrap();
                assert!(index.is_some(), "{name} in {sql}");
                if in_order {
                    assert_eq!(index, Some(k + 1), "{name} in {sql}");
                }
            }
        }
    }
}
