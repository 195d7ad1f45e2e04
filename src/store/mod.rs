//! The only place with SQL. One set of functions over SQLite or PostgreSQL,
//! chosen by the database URL; each query is written once and run on either.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

mod error;
mod readers;
mod writer;

pub mod admin;
pub mod apikeys;
pub mod audit;
pub mod backup;
pub mod batch;
pub mod billing;
pub mod credentials;
pub mod devices;
pub mod enrollments;
pub mod entitlements;
pub mod keys;
pub mod licenses;
pub mod recovery;
pub mod revocations;
pub mod sessions;
pub mod users;
pub mod webhooks;

pub use error::{Error, Result};

/// Runs the write `$body` with `$p` bound to the writing pool of `$store`.
/// The body is compiled once per backend, so the same SQL text serves both.
/// On SQLite it first waits for its turn with the group-commit writer
/// ([`Store::write_turn`]).
macro_rules! on_writer {
    ($store:expr, $p:ident => $body:expr) => {{
        let started = std::time::Instant::now();
        let out = match $store.writer() {
            $crate::store::Backend::Sqlite($p) => {
                let _turn = $store.write_turn().await;
                $body
            }
            $crate::store::Backend::Postgres($p) => $body,
        };
        $crate::metrics::database("query", started.elapsed());
        out
    }};
}
pub(crate) use on_writer;

/// Runs the read `$body` with `$p` bound to a reading connection of `$store`:
/// on SQLite one of its own [`readers::Readers`], on PostgreSQL the pool.
macro_rules! read {
    ($store:expr, $p:ident => $body:expr) => {{
        let started = std::time::Instant::now();
        let out = match $store.reader() {
            $crate::store::Backend::Sqlite(readers) => match readers.lease().await {
                Some(mut lease) => {
                    let $p = &mut *lease;
                    $body
                }
                // Closed: the write pool, closed too, answers with an error.
                None => {
                    let $p = readers.closed();
                    $body
                }
            },
            $crate::store::Backend::Postgres($p) => $body,
        };
        $crate::metrics::database("query", started.elapsed());
        out
    }};
}
pub(crate) use read;

/// A read that hot requests make: on SQLite `$local` runs on the caller's
/// thread with `$c` a local connection (see [`readers::Readers::local`]);
/// on PostgreSQL `$pg` runs with `$p` a connection kept for these reads
/// ([`readers::PgHot`]; the pool when there is none). Both give a `Result` of
/// the same value.
macro_rules! hot_read {
    ($store:expr, $c:ident => $local:expr, $p:ident => $pg:expr) => {
        match $store.reader() {
            $crate::store::Backend::Sqlite(readers) => readers.local(|$c| $local),
            $crate::store::Backend::Postgres(pool) => {
                let started = std::time::Instant::now();
                let out = match $store.pg_hot() {
                    Some(hot) => match hot.take().await {
                        Ok(mut lease) => {
                            let out = {
                                let $p = &mut lease.conn;
                                $pg
                            };
                            let out = match out {
                                // A kept connection closed meanwhile: once more on a new one.
                                Err(err)
                                    if lease.reused && $crate::store::readers::is_lost(&err) =>
                                {
                                    match lease.reopen().await {
                                        Ok(()) => {
                                            let $p = &mut lease.conn;
                                            $pg.map_err($crate::store::Error::from)
                                        }
                                        Err(err) => Err(err),
                                    }
                                }
                                out => out.map_err($crate::store::Error::from),
                            };
                            if out.is_ok() {
                                lease.keep();
                            }
                            out
                        }
                        Err(err) => Err(err),
                    },
                    None => {
                        let $p = pool;
                        $pg.map_err($crate::store::Error::from)
                    }
                };
                $crate::metrics::database("query", started.elapsed());
                out
            }
        }
    };
}
pub(crate) use hot_read;

/// Runs `$body` inside a write transaction `$tx` and commits it when the body
/// returns `Ok`. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a
/// transaction never fails half-way on a lock upgrade.
macro_rules! transaction {
    ($store:expr, $tx:ident => $body:expr) => {{
        let started = std::time::Instant::now();
        let out = match $store.writer() {
            $crate::store::Backend::Sqlite(pool) => {
                let _turn = $store.write_turn().await;
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        };
        $crate::metrics::database("transaction", started.elapsed());
        out
    }};
}
pub(crate) use transaction;

/// A reference to one backend's pool.
#[derive(Clone, Copy)]
pub enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// Connection pools for the configured database.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Pools,
    /// The group-commit writer of the hot-path writes (see [`batch`]).
    queue: batch::Queue,
}

#[derive(Clone, Debug)]
enum Pools {
    /// Readers run in parallel; all writes go through one connection, which is
    /// how SQLite works anyway and avoids lock-upgrade retries.
    Sqlite {
        read: std::sync::Arc<readers::Readers>,
        write: SqlitePool,
        /// Whose turn it is to write (see [`Store::write_turn`]).
        turn: std::sync::Arc<tokio::sync::Mutex<()>>,
        /// A shared lock on the database's directory while open: `latchkey
        /// restore` takes it exclusively, so it never replaces a database in use.
        _in_use: Option<std::sync::Arc<std::fs::File>>,
    },
    Postgres {
        pool: PgPool,
        /// Connections for the hot reads (see [`readers::PgHot`]); `None` with a
        /// budget of one connection.
        hot: Option<std::sync::Arc<readers::PgHot>>,
    },
}

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`), creating a SQLite file if needed.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("LATCHKEY_DATABASE_URL is not a valid SQLite URL: {url}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Under a second: a database locked by someone else answers 503 promptly.
                .busy_timeout(Duration::from_millis(900))
                .foreign_keys(true)
                .pragma("temp_store", "memory")
                // The checkpoints are a thread's of their own (see `readers`).
                .pragma(
                    "wal_autocheckpoint",
                    readers::WRITER_AUTOCHECKPOINT.to_string(),
                );
            let in_use = backup::share_directory(opts.get_filename())?;
            // A local file's connection cannot go stale: no ping before each use.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(1))
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("cannot open the SQLite database {url}"))?;
            let read = readers::Readers::open(&opts, max_connections.clamp(1, 8), write.clone())
                .await
                .with_context(|| format!("cannot open the SQLite database {url}"))?;
            let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
            Ok(Self {
                queue: batch::Queue::start(batch::Target::Sqlite(Box::new(opts), turn.clone()))
                    .with_context(|| format!("cannot start the database writer for {url}"))?,
                inner: Pools::Sqlite {
                    read: std::sync::Arc::new(read),
                    write,
                    turn,
                    _in_use: in_use,
                },
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)
                .with_context(|| "LATCHKEY_DATABASE_URL is not a valid PostgreSQL URL")?;
            // sqlx pings a connection when it is given back; one idle long enough
            // for the server or the network to have dropped it is pinged again
            // before use, a busy one is not (a round trip saved per query).
            // A quarter of the connections (one to four) are kept for the hot
            // reads, the rest pooled: LATCHKEY_DB_MAX_CONNECTIONS stays the total.
            let max_connections = max_connections.max(1);
            let hot = if max_connections >= 2 {
                (max_connections / 4).clamp(1, 4)
            } else {
                0
            };
            let pool = PgPoolOptions::new()
                .max_connections(max_connections - hot)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > Duration::from_secs(2) {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .acquire_timeout(Duration::from_secs(1))
                .connect_with(opts.clone())
                .await
                .with_context(|| {
                    "cannot connect to the PostgreSQL database in LATCHKEY_DATABASE_URL"
                })?;
            let hot = (hot > 0).then(|| std::sync::Arc::new(readers::PgHot::new(opts, hot)));
            Ok(Self {
                queue: batch::Queue::start(batch::Target::Postgres(pool.clone()))?,
                inner: Pools::Postgres { pool, hot },
            })
        } else {
            anyhow::bail!("LATCHKEY_DATABASE_URL must start with sqlite: or postgres://")
        }
    }

    /// Applies the migrations of this backend.
    pub async fn migrate(&self) -> Result<()> {
        match &self.inner {
            Pools::Sqlite { write, .. } => sqlx::migrate!("./migrations/sqlite").run(write).await?,
            Pools::Postgres { pool, .. } => {
                sqlx::migrate!("./migrations/postgres").run(pool).await?
            }
        }
        Ok(())
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.inner, Pools::Sqlite { .. })
    }

    pub(crate) fn reader(&self) -> Backend<&readers::Readers, &PgPool> {
        match &self.inner {
            Pools::Sqlite { read, .. } => Backend::Sqlite(read),
            Pools::Postgres { pool, .. } => Backend::Postgres(pool),
        }
    }

    /// PostgreSQL's connections for the hot reads, if any.
    pub(crate) fn pg_hot(&self) -> Option<&readers::PgHot> {
        match &self.inner {
            Pools::Postgres { hot, .. } => hot.as_deref(),
            Pools::Sqlite { .. } => None,
        }
    }

    pub(crate) fn writer(&self) -> Backend<&SqlitePool, &PgPool> {
        match &self.inner {
            Pools::Sqlite { write, .. } => Backend::Sqlite(write),
            Pools::Postgres { pool, .. } => Backend::Postgres(pool),
        }
    }

    /// On SQLite, the turn to write. The group-commit writer's own connection
    /// and the write pool's write to the same file: the writer holds the turn
    /// during each batch and the pool's writes during theirs, so they
    /// alternate in the order they asked (the lock is fair) instead of racing
    /// for SQLite's lock. Not reentrant: a write must not queue for the group
    /// commit while it holds the turn. `None` on PostgreSQL.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.inner {
            Pools::Sqlite { turn, .. } => Some(turn.lock().await),
            Pools::Postgres { .. } => None,
        }
    }

    /// Whether the database can take writes now, for `/readyz`: PostgreSQL
    /// answers a query; SQLite grants (and releases) the write lock.
    pub async fn ping(&self) -> Result<()> {
        match self.writer() {
            Backend::Sqlite(pool) => {
                let _turn = self.write_turn().await;
                pool.begin_with("BEGIN IMMEDIATE").await?.rollback().await?
            }
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Deletes what has expired: sessions (with the ceremonies they hold), DPoP proof ids.
    pub async fn delete_expired(&self, now: i64) -> Result<u64> {
        let mut deleted = 0;
        for sql in [
            "DELETE FROM sessions WHERE expires_at <= $1",
            // Ceremonies live in their sessions now; the table is kept (and
            // emptied) only for instances of 0.x still running during an upgrade.
            "DELETE FROM ceremonies WHERE expires_at <= $1",
            "DELETE FROM dpop_proofs WHERE expires_at <= $1",
            "DELETE FROM spent_confirmations WHERE expires_at <= $1",
            // Wrong recovery codes count for 15 minutes (`passkey::recovery::WINDOW_SECS`).
            "DELETE FROM recovery_failures WHERE at <= $1 - 900",
        ] {
            let done = on_writer!(self, p => sqlx::query(sql).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
            deleted += done;
        }
        Ok(deleted)
    }

    pub async fn close(&self) {
        match &self.inner {
            Pools::Sqlite { read, write, .. } => {
                read.close().await;
                self.queue.close().await;
                // sqlx can miss a connection that is being returned to the pool
                // while it closes; close until none is left, so that the last
                // one checkpoints and SQLite removes its -wal and -shm files.
                for pool in [write] {
                    let deadline = std::time::Instant::now() + Duration::from_secs(2);
                    loop {
                        pool.close().await;
                        if pool.size() == 0 || std::time::Instant::now() > deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            Pools::Postgres { pool, hot } => {
                self.queue.close().await;
                if let Some(hot) = hot {
                    hot.close().await;
                }
                pool.close().await;
            }
        }
    }
}

/// Whether an error is a violation of a unique or primary-key constraint.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Serialises the transactions that check an account invariant (the last
/// passkey, the last enabled admin) and then change what it counts. SQLite's
/// `BEGIN IMMEDIATE` already runs one writer at a time; on PostgreSQL a
/// transaction-scoped advisory lock does the same for these rare operations,
/// without the deadlocks that row locks taken in varying orders could cause.
macro_rules! lock_invariants {
    ($store:expr, $tx:ident) => {
        if !$store.is_sqlite() {
            sqlx::query("SELECT pg_advisory_xact_lock(7361001)")
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use lock_invariants;

/// Spends a single-use passkey confirmation (`Option<&str>`) inside the
/// transaction `$tx`: true when it was fresh (or none is needed), false when a
/// change already spent it. Must run in the same transaction as the change.
macro_rules! spend_confirmation {
    ($tx:ident, $id:expr, $now:expr) => {
        match $id {
            None => true,
            Some(id) => {
                sqlx::query(
                    "INSERT INTO spent_confirmations (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind($now + 86_400)
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                    == 1
            }
        }
    };
}
pub(crate) use spend_confirmation;

/// Seconds since the Unix epoch.
/// Rows a pruning statement deletes at most at once, so no single transaction
/// holds the writer for long.
const PRUNE_BATCH: u64 = 10_000;

/// Runs a pruning step (which deletes at most [`PRUNE_BATCH`] rows) until it
/// deletes fewer; the total deleted.
async fn prune_in_batches<F, Fut>(mut step: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
