//! Group commit: one writer per database drains the queued hot-path writes
//! (DPoP replay ids, mints, sign-ins, session rows, audit rows) and commits
//! them together in one transaction, so the `BEGIN`/`COMMIT`, the WAL append
//! (or flush) and the hop to the database are shared by the whole batch.
//!
//! Durability is unchanged: a caller is answered only after the transaction
//! holding its write has committed. One item cannot fail its neighbours: DPoP
//! ids are checked for duplicates inside the batch, and each mint or sign-in
//! runs its own statements (checks and writes) under a savepoint that is
//! rolled back alone when it is refused. If the transaction itself fails (the
//! database is unreachable, SQLite is locked), every item of the batch gets
//! that error, and nothing of it was written.
//!
//! SQLite's batches run on a thread of their own with a `rusqlite` connection
//! ([`super::writer`]); PostgreSQL's in a task on the pool, below.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::audit::bind_event;
use super::audit::AuditEvent;
use super::audit::OwnedAuditEvent;
use super::licenses::{mint_statements, shift_params, MintError, NewLicense, OwnedLicense};
use super::{Backend, Error, Result, Store};

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

enum Job {
    /// One write, answered once its batch has committed.
    Write {
        item: Item,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    /// Writes committed as one batch of their own ([`Store::commit_together`]).
    Together {
        items: Vec<Item>,
        reply: oneshot::Sender<Result<Vec<Result<Outcome>>>>,
    },
    /// Ends the writer once the jobs queued before are done.
    Close(oneshot::Sender<()>),
}

/// The queue into the writer. Cloned with the store; the writer ends when
/// the last clone is dropped or [`Queue::close`] is called.
#[derive(Clone)]
pub(crate) struct Queue(mpsc::UnboundedSender<Job>);

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

/// Where a writer commits its batches.
pub(crate) enum Target {
    /// The database file of these options, on a connection of the writer's
    /// own, taking the write turn ([`Store::write_turn`]) for each batch.
    Sqlite(Box<SqliteConnectOptions>, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

/// A writer's state between batches.
enum Writer {
    Sqlite {
        conn: Option<rusqlite::Connection>,
        turn: Arc<tokio::sync::Mutex<()>>,
    },
    Postgres(PgPool),
}

impl Queue {
    /// Starts the writer.
    ///
    /// On SQLite it runs on a thread of its own: a batch is SQLite work from
    /// start to end, which on the request threads would wait behind their
    /// signature checks (and hold them up). On PostgreSQL the connections'
    /// sockets belong to the request threads' runtime, so the task stays there.
    pub(crate) fn start(target: Target) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        match target {
            Target::Sqlite(opts, turn) => {
                let conn = super::writer::open(&opts)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let writer = Writer::Sqlite {
                    conn: Some(conn),
                    turn,
                };
                std::thread::Builder::new()
                    .name("latchkey-writer".into())
                    .spawn(move || runtime.block_on(run(writer, rx)))?;
            }
            Target::Postgres(pool) => {
                tokio::spawn(run(Writer::Postgres(pool), rx));
            }
        }
        Ok(Self(tx))
    }

    /// Queues `item` and waits until its batch has committed.
    pub(crate) async fn submit(&self, item: Item) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job::Write { item, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Commits `items` as one batch of their own.
    async fn submit_together(&self, items: Vec<Item>) -> Result<Vec<Result<Outcome>>> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job::Together { items, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Finishes the writes queued so far, then stops the writer (on SQLite,
    /// closing its connection). Writes queued later are refused.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.0.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable("the database writer has stopped".into())
}

impl Writer {
    async fn commit(&mut self, items: &[&Item]) -> Result<Vec<Result<Outcome>>> {
        let started = std::time::Instant::now();
        let outcome = match self {
            Self::Sqlite { conn, turn } => match conn {
                Some(conn) => {
                    // The pool's writes wait while the batch is open.
                    let _turn = turn.lock().await;
                    super::writer::commit(conn, items)
                }
                None => Err(stopped()),
            },
            Self::Postgres(pool) => commit_postgres(pool, items).await,
        };
        crate::metrics::database("batch", started.elapsed());
        outcome
    }

    fn close(&mut self) {
        if let Self::Sqlite { conn, .. } = self {
            if let Some(Err((_, err))) = conn.take().map(rusqlite::Connection::close) {
                tracing::warn!(error = %err, "closing the database writer's connection");
            }
        }
    }
}

async fn run(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<(Item, oneshot::Sender<Result<Outcome>>)> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            match job {
                Job::Write { item, reply } => batch.push((item, reply)),
                Job::Together { items, reply } => {
                    commit_batch(&mut writer, &mut batch).await;
                    let items: Vec<&Item> = items.iter().collect();
                    let _ = reply.send(writer.commit(&items).await);
                }
                Job::Close(done) => {
                    commit_batch(&mut writer, &mut batch).await;
                    writer.close();
                    let _ = done.send(());
                    return;
                }
            }
        }
        commit_batch(&mut writer, &mut batch).await;
    }
    writer.close();
}

/// Commits the writes of `batch` (emptied) and answers each.
async fn commit_batch(
    writer: &mut Writer,
    batch: &mut Vec<(Item, oneshot::Sender<Result<Outcome>>)>,
) {
    if batch.is_empty() {
        return;
    }
    let items: Vec<&Item> = batch.iter().map(|(item, _)| item).collect();
    match writer.commit(&items).await {
        Ok(results) => {
            for ((_, reply), result) in batch.drain(..).zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            // Nothing of the batch was written: everyone gets the failure.
            let err = shared(&err);
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(err.clone_shallow()));
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
pub(super) fn first_uses<'a>(items: &[&'a Item]) -> (Vec<(usize, &'a str, i64)>, Vec<usize>) {
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

/// How a mint's statements ended, as the item's outcome.
pub(super) fn mint_outcome(done: std::result::Result<(), MintError>) -> Result<Outcome> {
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

/// Commits a batch on PostgreSQL: the proof ids and the audit rows with one
/// statement each, then each other item under a savepoint of its own
/// (PostgreSQL aborts a whole transaction on any error).
async fn commit_postgres(pool: &PgPool, items: &[&Item]) -> Result<Vec<Result<Outcome>>> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Result<Outcome>> = (0..items.len()).map(|_| Ok(Outcome::Done)).collect();
    let (firsts, repeats) = first_uses(items);
    for i in repeats {
        results[i] = Ok(Outcome::Replay);
    }
    if !firsts.is_empty() {
        let ids: Vec<&str> = firsts.iter().map(|(_, id, _)| *id).collect();
        let exps: Vec<i64> = firsts.iter().map(|(_, _, exp)| *exp).collect();
        let inserted: HashSet<String> = sqlx::query_scalar::<_, String>(
            "INSERT INTO dpop_proofs (id, expires_at) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(ids)
        .bind(exps)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        for (i, id, _) in &firsts {
            if !inserted.contains(*id) {
                results[*i] = Ok(Outcome::Replay);
            }
        }
    }
    let audits: Vec<(&OwnedAuditEvent, i64)> = items
        .iter()
        .filter_map(|item| match item {
            Item::Audit(event, at) => Some((&**event, *at)),
            _ => None,
        })
        .collect();
    insert_audits(&mut tx, &audits).await?;
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Proof { .. } | Item::Audit(..) => {}
            Item::Exec(sql, args) => {
                let mut sp = sqlx::Acquire::begin(&mut *tx).await?;
                let done = exec_query(sql, args)
                    .execute(&mut *sp)
                    .await
                    .map(|r| r.rows_affected());
                if done.is_ok() {
                    sp.commit().await?;
                } else {
                    sp.rollback().await?;
                }
                results[i] = done.map(Outcome::Rows).map_err(Error::from);
            }
            Item::SignIn(sign_in) => {
                let mut sp = sqlx::Acquire::begin(&mut *tx).await?;
                let done = super::sessions::sign_in_statements!(sp, sign_in);
                if matches!(done, Ok(Outcome::Done)) {
                    sp.commit().await?;
                } else {
                    sp.rollback().await?;
                }
                results[i] = done;
            }
            Item::Mint(mint) => {
                let mut sp = sqlx::Acquire::begin(&mut *tx).await?;
                let done = mint_statements!(sp, mint);
                if done.is_ok() {
                    sp.commit().await?;
                } else {
                    sp.rollback().await?;
                }
                results[i] = mint_outcome(done);
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Inserts `audits` (`(event, at)`) with multi-row statements: one round
/// trip for up to [`MAX_BATCH`] rows (10 parameters a row, far under
/// PostgreSQL's limit).
async fn insert_audits(conn: &mut PgConnection, audits: &[(&OwnedAuditEvent, i64)]) -> Result<()> {
    for chunk in audits.chunks(MAX_BATCH) {
        let sql = multi_row(super::audit::INSERT_EVENT, 10, chunk.len());
        let mut q = sqlx::query(&sql);
        for (event, at) in chunk {
            let e = event.borrowed();
            q = bind_event!(q, e, *at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
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
            // Alone in its transaction, a mint is one statement (see `mint_alone`).
            (Item::Mint(mint), Backend::Postgres(pool)) => self.mint_alone(pool, mint).await,
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
        match self.writer() {
            Backend::Sqlite(_) => self.queue.submit_together(items).await,
            Backend::Postgres(pool) => {
                let items: Vec<&Item> = items.iter().collect();
                commit_postgres(pool, &items).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::multi_row;

    #[test]
    fn a_single_row_insert_becomes_a_multi_row_one() {
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
