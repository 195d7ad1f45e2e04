//! Group commit: one writer task per database drains the queued hot-path
//! writes (DPoP replay ids, mints, audit rows) and commits them together in
//! one transaction, so the `BEGIN`/`COMMIT`, the WAL append (or flush) and the
//! hop to the database are shared by the whole batch.
//!
//! Durability is unchanged: a caller is answered only after the transaction
//! holding its write has committed. One item cannot fail its neighbours: DPoP
//! ids are checked for duplicates inside the batch and inserted with one
//! multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id`, and each mint runs
//! its own statements (checks and inserts) under a savepoint that is rolled
//! back alone when the mint is refused. If the transaction itself fails (the
//! database is unreachable, SQLite is locked), every item of the batch gets
//! that error, and nothing of it was written.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};

use super::audit::bind_event;
use super::audit::AuditEvent;
use super::audit::OwnedAuditEvent;
use super::licenses::{
    bind_device, bind_license, mint_statements, shift_params, MintError, NewLicense, OwnedLicense,
};
use super::{Backend, Error, Result, Store};
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

/// Most items committed in one transaction.
const MAX_BATCH: usize = 256;

/// A write the group-commit task can take.
pub(crate) enum Item {
    /// Spends a DPoP proof id (premium calls).
    Proof { id: String, expires_at: i64 },
    /// Spends the proof, re-checks the sign-in and records the license with its audit row.
    Mint(Box<MintItem>),
    /// An audit row that goes with no other change.
    Audit(Box<OwnedAuditEvent>, i64),
    /// One statement that cannot be refused by the data (session and
    /// ceremony rows); answered with the rows it affected.
    Exec(&'static str, Vec<Arg>),
    /// A sign-in: rotates the session, records the passkey's use when it
    /// changed and writes the audit row, all under one savepoint.
    SignIn(Box<SignInItem>),
}

/// A parameter of an [`Item::Exec`] statement.
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

pub(crate) struct MintItem {
    pub proof_id: String,
    pub proof_expires_at: i64,
    pub slot: (i64, i64),
    pub license: OwnedLicense,
    pub audit: OwnedAuditEvent,
}

/// A sign-in waiting in the queue (see [`super::sessions::ROTATE_INTO_SIGN_IN`]).
pub(crate) struct SignInItem {
    pub old_hash: String,
    pub new_hash: String,
    pub ceremony_id: String,
    pub user_id: String,
    pub login_id: String,
    pub credential_id: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub data: String,
    pub expires_at: i64,
    pub credential_use: Option<super::credentials::CredentialUse>,
    pub audit: OwnedAuditEvent,
    pub at: i64,
}

/// How one item ended, once its batch committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// An `Exec` statement ran and changed this many rows.
    Rows(u64),
    /// The DPoP proof id was already spent (before or earlier in the batch).
    Replay,
    /// The mint's sign-in (session, passkey, user) no longer stands.
    Revoked,
    /// The account already has this many active devices: `(limit, [(jkt, name, last sync)])`.
    DeviceLimit(i64, Vec<(String, String, i64)>),
    /// A sign-in's session no longer holds its ceremony.
    CeremonyGone,
    /// A sign-in's passkey was revoked or its user disabled.
    PasskeyGone,
    /// A sign-in's passkey counter did not move forward.
    CounterRegressed,
}

struct Job {
    item: Item,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The queue into the writer task. Cloned with the store; the task ends when
/// the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Queue(mpsc::UnboundedSender<Job>);

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl Queue {
    /// Starts the writer task over the write pool.
    ///
    /// On SQLite the task runs on a thread of its own: a batch is a series of
    /// round trips to the connection's thread, and on the request threads each
    /// answer would wait behind requests' signature checks before the next
    /// statement could go. On PostgreSQL the connection's socket belongs to the
    /// request threads' runtime, so the task stays there.
    pub(crate) fn start(writer: Backend<SqlitePool, PgPool>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        match writer {
            Backend::Sqlite(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let spawned = runtime.and_then(|runtime| {
                    std::thread::Builder::new()
                        .name("latchkey-writer".into())
                        .spawn(move || runtime.block_on(run(writer, rx)))
                });
                if let Err(err) = spawned {
                    // Without a thread every write is refused (the queue is closed).
                    tracing::error!(error = %err, "cannot start the database writer thread");
                }
            }
            Backend::Postgres(_) => {
                tokio::spawn(run(writer, rx));
            }
        }
        Self(tx)
    }

    /// Queues `item` and waits until its batch has committed.
    pub(crate) async fn submit(&self, item: Item) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job { item, reply })
            .map_err(|_| Error::Unavailable("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the database writer has stopped".into()))?
    }
}

async fn run(writer: Backend<SqlitePool, PgPool>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let items: Vec<&Item> = jobs.iter().map(|j| &j.item).collect();
        let outcome = match &writer {
            Backend::Sqlite(pool) => commit_sqlite(pool, &items).await,
            Backend::Postgres(pool) => commit_postgres(pool, &items).await,
        };
        crate::metrics::database("batch", started.elapsed());
        match outcome {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                // Nothing of the batch was written: everyone gets the failure.
                let err = shared(&err);
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(err.clone_shallow()));
                }
            }
        }
    }
}

/// What each member of a failed batch is told (the error is not `Clone`).
struct Shared {
    unavailable: bool,
    text: String,
}

fn shared(err: &Error) -> Shared {
    Shared {
        unavailable: matches!(err, Error::Unavailable(_)),
        text: err.to_string(),
    }
}

impl Shared {
    fn clone_shallow(&self) -> Error {
        if self.unavailable {
            Error::Unavailable(self.text.clone())
        } else {
            Error::Other(anyhow::anyhow!("{}", self.text))
        }
    }
}

/// The outcome of each proof item, by position: the first use of an id in
/// the batch is the one that may succeed, later ones are replays.
fn first_uses<'a>(items: &[&'a Item]) -> (Vec<(usize, &'a str, i64)>, Vec<usize>) {
    let mut seen = HashSet::new();
    let mut firsts = Vec::new();
    let mut repeats = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Item::Proof { id, expires_at } = item {
            if seen.insert(id.as_str()) {
                firsts.push((i, id.as_str(), *expires_at));
            } else {
                repeats.push(i);
            }
        }
    }
    (firsts, repeats)
}

/// Runs the items of one batch in the open transaction `$tx`; `$proofs` is an
/// expression that inserts the `firsts` proof ids and yields those inserted.
macro_rules! apply {
    ($tx:ident, $sqlite:expr, $items:expr, $firsts:ident => $proofs:expr, $results:ident => $bulk:expr) => {{
        let items: &[&Item] = $items;
        let mut results: Vec<Result<Outcome>> =
            (0..items.len()).map(|_| Ok(Outcome::Done)).collect();
        let ($firsts, repeats) = first_uses(items);
        for i in repeats {
            results[i] = Ok(Outcome::Replay);
        }
        if !$firsts.is_empty() {
            let inserted: HashSet<String> = $proofs.into_iter().collect();
            for (i, id, _) in &$firsts {
                if !inserted.contains(*id) {
                    results[*i] = Ok(Outcome::Replay);
                }
            }
        }
        // The items the backend took in bulk (`$bulk` sets their outcomes).
        let bulk: HashSet<usize> = {
            let $results = &mut results;
            $bulk
        };
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Proof { .. } => {}
                Item::Exec(sql, args) => {
                    // PostgreSQL aborts a transaction on any error: a savepoint
                    // keeps an unexpected failure to this statement. SQLite
                    // rolls back the failed statement only.
                    let rows = if $sqlite {
                        exec_query(sql, args)
                            .execute(&mut *$tx)
                            .await
                            .map(|r| r.rows_affected())
                    } else {
                        let mut sp = sqlx::Acquire::begin(&mut *$tx).await?;
                        let done = exec_query(sql, args)
                            .execute(&mut *sp)
                            .await
                            .map(|r| r.rows_affected());
                        if done.is_ok() {
                            sp.commit().await?;
                        } else {
                            sp.rollback().await?;
                        }
                        done
                    };
                    results[i] = rows.map(Outcome::Rows).map_err(Error::from);
                }
                Item::SignIn(sign_in) => {
                    let mut sp = sqlx::Acquire::begin(&mut *$tx).await?;
                    let done = super::sessions::sign_in_statements!(sp, sign_in);
                    if matches!(done, Ok(Outcome::Done)) {
                        sp.commit().await?;
                    } else {
                        sp.rollback().await?;
                    }
                    results[i] = done;
                }
                // Both backends insert a batch's audit rows in bulk.
                Item::Audit(..) => {}
                Item::Mint(mint) => {
                    // A savepoint per mint: a refused mint leaves nothing
                    // behind and its neighbours commit.
                    if bulk.contains(&i) {
                        continue;
                    }
                    let mut sp = sqlx::Acquire::begin(&mut *$tx).await?;
                    let done = mint_statements!(sp, mint, $sqlite);
                    if done.is_ok() {
                        sp.commit().await?;
                    } else {
                        sp.rollback().await?;
                    }
                    results[i] = mint_outcome(done);
                }
            }
        }
        results
    }};
}

/// How a mint's statements ended, as the item's outcome.
fn mint_outcome(done: std::result::Result<(), MintError>) -> Result<Outcome> {
    match done {
        Ok(()) => Ok(Outcome::Done),
        Err(MintError::Replay) => Ok(Outcome::Replay),
        Err(MintError::Revoked) => Ok(Outcome::Revoked),
        Err(MintError::DeviceLimit(max, active)) => Ok(Outcome::DeviceLimit(max, active)),
        Err(MintError::Store(e)) => Err(e),
    }
}

/// The query of an [`Item::Exec`], for either database.
fn exec_query<'q, DB: sqlx::Database>(
    sql: &'static str,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::query::<DB>(sql);
    for arg in args {
        q = match arg {
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Int(v) => q.bind(*v),
        };
    }
    q
}

async fn commit_sqlite(pool: &SqlitePool, items: &[&Item]) -> Result<Vec<Result<Outcome>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let results = apply!(tx, true, items, firsts => {
        let mut ids = Vec::with_capacity(firsts.len());
        // 2 parameters a row, well under SQLite's limit of 32,766.
        for chunk in firsts.chunks(MAX_BATCH) {
            let mut sql = String::from("INSERT INTO dpop_proofs (id, expires_at) VALUES ");
            for n in 0..chunk.len() {
                if n > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${})", 2 * n + 1, 2 * n + 2));
            }
            sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for (_, id, exp) in chunk {
                q = q.bind(*id).bind(*exp);
            }
            ids.extend(q.fetch_all(&mut *tx).await?);
        }
        ids
    }, results => bulk_sqlite(&mut tx, items, results).await?);
    tx.commit().await?;
    Ok(results)
}

async fn commit_postgres(pool: &PgPool, items: &[&Item]) -> Result<Vec<Result<Outcome>>> {
    let mut tx = pool.begin().await?;
    let results = apply!(tx, false, items, firsts => {
        let ids: Vec<&str> = firsts.iter().map(|(_, id, _)| *id).collect();
        let exps: Vec<i64> = firsts.iter().map(|(_, _, exp)| *exp).collect();
        sqlx::query_scalar::<_, String>(
            "INSERT INTO dpop_proofs (id, expires_at) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(ids)
        .bind(exps)
        .fetch_all(&mut *tx)
        .await?
    }, _results => bulk_postgres(&mut tx, items).await?);
    tx.commit().await?;
    Ok(results)
}

/// On SQLite, the batch's mints without a device limit and its audit rows,
/// with multi-row statements: one spends the mints' proof ids where their
/// sign-ins still stand, then one each inserts the licenses, the devices and
/// the audit rows. Each statement is a round trip to the connection's thread,
/// so a batch of mints costs about five of them, where each mint alone took
/// seven. Returns the items taken; their outcomes are set in `results`.
async fn bulk_sqlite(
    conn: &mut SqliteConnection,
    items: &[&Item],
    results: &mut [Result<Outcome>],
) -> Result<HashSet<usize>> {
    let mut taken = HashSet::new();
    let mut proof_ids = HashSet::new();
    let mut mints: Vec<(usize, &MintItem)> = Vec::new();
    let mut audits: Vec<(&OwnedAuditEvent, i64)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Mint(m) if m.license.device_limit.is_none() => {
                taken.insert(i);
                // The general path would find a proof id spent earlier in
                // the same batch; here a repeat is a replay before any SQL.
                if proof_ids.insert(m.proof_id.as_str()) {
                    mints.push((i, m));
                } else {
                    results[i] = Ok(Outcome::Replay);
                }
            }
            Item::Audit(event, at) => {
                taken.insert(i);
                audits.push((event, *at));
            }
            _ => {}
        }
    }
    // Largest row: 11 parameters, so 256 rows stay far under SQLite's 32,766.
    let mut minted: Vec<&MintItem> = Vec::with_capacity(mints.len());
    for chunk in mints.chunks(MAX_BATCH) {
        let check = super::licenses::still_valid_sql(true)
            .replace("$1", "v.column3")
            .replace("$2", "v.column4");
        let sql = format!(
            "INSERT INTO dpop_proofs (id, expires_at) SELECT v.column1, v.column2 FROM (VALUES {}) AS v \
             WHERE EXISTS ({check}) ON CONFLICT (id) DO NOTHING RETURNING id",
            tuples(4, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for (_, m) in chunk {
            q = q
                .bind(&m.proof_id)
                .bind(m.proof_expires_at)
                .bind(&m.license.login_id)
                .bind(&m.license.user_id);
        }
        let spent: HashSet<String> = q.fetch_all(&mut *conn).await?.into_iter().collect();
        let refused: Vec<&str> = chunk
            .iter()
            .filter(|(_, m)| !spent.contains(&m.proof_id))
            .map(|(_, m)| m.proof_id.as_str())
            .collect();
        // A refused mint whose proof id is on record was a replay; otherwise
        // its sign-in no longer stands.
        let replayed: HashSet<String> = if refused.is_empty() {
            HashSet::new()
        } else {
            let sql = format!(
                "SELECT id FROM dpop_proofs WHERE id IN ({})",
                (1..=refused.len())
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for id in &refused {
                q = q.bind(*id);
            }
            q.fetch_all(&mut *conn).await?.into_iter().collect()
        };
        for (i, m) in chunk {
            results[*i] = if spent.contains(&m.proof_id) {
                minted.push(m);
                Ok(Outcome::Done)
            } else if replayed.contains(&m.proof_id) {
                Ok(Outcome::Replay)
            } else {
                Ok(Outcome::Revoked)
            };
        }
    }
    for chunk in minted.chunks(MAX_BATCH) {
        let sql = multi_row(super::licenses::INSERT_LICENSE, 11, chunk.len());
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = bind_license!(q, m.license, m.slot);
        }
        q.execute(&mut *conn).await?;
        // One row per device: a device minting twice in a batch syncs once.
        let mut seen = HashSet::new();
        let devices: Vec<&&MintItem> = chunk
            .iter()
            .filter(|m| seen.insert((m.license.user_id.as_str(), m.license.device_jkt.as_str())))
            .collect();
        let sql = multi_row(super::licenses::UPSERT_DEVICE, 4, devices.len());
        let mut q = sqlx::query(&sql);
        for m in devices {
            q = bind_device!(q, m.license);
        }
        q.execute(&mut *conn).await?;
        audits.extend(chunk.iter().map(|m| (&m.audit, m.license.issued_at)));
    }
    insert_audits!(conn, audits);
    Ok(taken)
}

/// Inserts audit rows `$audits` (`(&OwnedAuditEvent, at)`) on `$conn` with
/// multi-row statements (10 parameters a row: 2,560 for 256 rows, under
/// either database's limit).
macro_rules! insert_audits {
    ($conn:expr, $audits:expr) => {
        for chunk in $audits.chunks(MAX_BATCH) {
            let sql = multi_row(super::audit::INSERT_EVENT, 10, chunk.len());
            let mut q = sqlx::query(&sql);
            for (event, at) in chunk {
                let e = event.borrowed();
                q = bind_event!(q, e, *at);
            }
            q.execute(&mut *$conn).await?;
        }
    };
}
use insert_audits;

/// On PostgreSQL, a batch's audit rows in one multi-row statement (one round
/// trip to the server instead of one per row). Returns the items taken.
async fn bulk_postgres(conn: &mut PgConnection, items: &[&Item]) -> Result<HashSet<usize>> {
    let mut taken = HashSet::new();
    let mut audits: Vec<(&OwnedAuditEvent, i64)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Item::Audit(event, at) = item {
            taken.insert(i);
            audits.push((event, *at));
        }
    }
    insert_audits!(conn, audits);
    Ok(taken)
}

/// `rows` parenthesised tuples of `width` numbered parameters: `($1, $2), ($3, $4)`.
fn tuples(width: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A single-row `INSERT … VALUES (…) …` with parameters `$1` to `$width`,
/// made to insert `rows` rows: its tuple repeated, each time with the
/// parameters of the next row.
fn multi_row(sql: &str, width: usize, rows: usize) -> String {
    let Some(start) = sql.find("VALUES (").map(|at| at + "VALUES ".len()) else {
        return sql.to_owned();
    };
    let end = sql[start..]
        .find(')')
        .map_or(sql.len(), |at| start + at + 1);
    let tuple = &sql[start..end];
    let repeated: Vec<String> = (0..rows).map(|r| shift_params(tuple, r * width)).collect();
    format!("{}{}{}", &sql[..start], repeated.join(", "), &sql[end..])
}

impl Store {
    /// Queues a write for the group commit and waits until it has committed.
    ///
    /// On PostgreSQL a mint (or a sign-in) runs in the caller's task instead, in a transaction
    /// of its own on the pool (the same statements): there
    /// the pool runs mints side by side, where the one writer task would
    /// serialise them behind each batch's commit round trip.
    pub(crate) async fn submit_write(&self, item: Item) -> Result<Outcome> {
        match (&item, self.writer()) {
            // Alone in its transaction, a mint needs no savepoint: a refused one
            // rolls the transaction back (two round trips fewer than in a batch).
            (Item::Mint(mint), Backend::Postgres(pool)) => {
                let mut tx = pool.begin().await?;
                let done = mint_statements!(tx, mint, false);
                if done.is_ok() {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                mint_outcome(done)
            }
            // A sign-in alone is its own transaction: no savepoint needed.
            (Item::SignIn(sign_in), Backend::Postgres(pool)) => {
                let mut tx = pool.begin().await?;
                let done = super::sessions::sign_in_statements!(tx, sign_in);
                if matches!(done, Ok(Outcome::Done)) {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                done
            }
            _ => self.queue.submit(item).await,
        }
    }

    /// Runs one statement through the group commit; the rows it changed.
    ///
    /// On PostgreSQL a lone statement goes straight to the pool: there every
    /// statement of a batch needs a savepoint of its own, three round trips in
    /// series through the one writer, while the pool runs them side by side
    /// with the same durability (each commits before it answers).
    pub(crate) async fn exec_batched(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64> {
        if let Backend::Postgres(pool) = self.writer() {
            let done = exec_query::<sqlx::Postgres>(sql, &args)
                .execute(pool)
                .await?;
            return Ok(done.rows_affected());
        }
        match self.queue.submit(Item::Exec(sql, args)).await? {
            Outcome::Rows(n) => Ok(n),
            _ => Ok(0),
        }
    }
}

/// One write of [`Store::commit_together`].
pub enum Write<'a> {
    Proof(&'a str, i64),
    Mint {
        proof_id: &'a str,
        proof_expires_at: i64,
        slot: (i64, i64),
        license: NewLicense<'a>,
        audit: AuditEvent<'a>,
    },
    Audit(AuditEvent<'a>, i64),
}

impl Store {
    /// Commits `writes` as one batch of the group commit, exactly as the writer
    /// task does, but without the queue: tests use it to be sure that failing
    /// and succeeding writes share a batch. One outcome per write, in order.
    #[doc(hidden)]
    pub async fn commit_together(&self, writes: Vec<Write<'_>>) -> Result<Vec<Result<Outcome>>> {
        let items: Vec<Item> = writes
            .into_iter()
            .map(|w| match w {
                Write::Proof(id, expires_at) => Item::Proof {
                    id: id.to_owned(),
                    expires_at,
                },
                Write::Mint {
                    proof_id,
                    proof_expires_at,
                    slot,
                    license,
                    audit,
                } => Item::Mint(Box::new(MintItem {
                    proof_id: proof_id.to_owned(),
                    proof_expires_at,
                    slot,
                    license: OwnedLicense::from(&license),
                    audit: OwnedAuditEvent::from(&audit),
                })),
                Write::Audit(event, at) => Item::Audit(Box::new(OwnedAuditEvent::from(&event)), at),
            })
            .collect();
        let items: Vec<&Item> = items.iter().collect();
        match self.writer() {
            Backend::Sqlite(pool) => commit_sqlite(pool, &items).await,
            Backend::Postgres(pool) => commit_postgres(pool, &items).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{multi_row, tuples};

    #[test]
    fn a_single_row_insert_becomes_a_multi_row_one() {
        assert_eq!(tuples(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(
            multi_row(
                "INSERT INTO t (a, b, c) VALUES ($1, $2, $2, NULL) ON CONFLICT (a) DO NOTHING",
                2,
                3
            ),
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $2, NULL), ($3, $4, $4, NULL), ($5, $6, $6, NULL) \
             ON CONFLICT (a) DO NOTHING"
        );
    }
}
