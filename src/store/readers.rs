//! SQLite's reading connections, each running one query at a time.
//!
//! Every sqlx connection to SQLite is a worker thread that a query reaches
//! through a channel. sqlx's pool pings that thread when a connection is
//! taken and again when it is given back, so a read through the pool costs
//! three cross-thread round trips instead of one. A connection to a local file
//! cannot go stale, so these connections are kept here and used directly.
//!
//! The reads every hot request makes (its session, a license's revocation
//! state, what a mint needs) skip even that one round trip: they run on the
//! request's own thread, on `rusqlite` connections to the same file
//! ([`Readers::local`]). An indexed read of a local file takes microseconds,
//! less than handing it to another thread and waiting to be woken; in WAL
//! mode a reader never waits for the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub(crate) struct Readers {
    conns: Vec<Mutex<Option<SqliteConnection>>>,
    /// Connections for the hot reads, used on the caller's thread.
    local: Vec<std::sync::Mutex<Option<rusqlite::Connection>>>,
    /// Copies the WAL back into the database off the writer's path.
    checkpointer: Checkpointer,
    /// Where the next lease starts looking for a free connection.
    next: AtomicUsize,
    /// The write pool: what reads are sent to once these are closed (it is
    /// closed first, so they get sqlx's "pool closed" error).
    write: SqlitePool,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl Readers {
    /// Opens `n` (at least one) connections.
    pub(crate) async fn open(
        opts: &SqliteConnectOptions,
        n: u32,
        write: SqlitePool,
    ) -> Result<Self, sqlx::Error> {
        let mut conns = Vec::new();
        let mut local = Vec::new();
        for _ in 0..n.max(1) {
            conns.push(Mutex::new(Some(opts.connect().await?)));
            local.push(std::sync::Mutex::new(Some(
                open_local(opts).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?,
            )));
        }
        let checkpointer =
            Checkpointer::start(opts).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        Ok(Self {
            conns,
            local,
            checkpointer,
            next: AtomicUsize::new(0),
            write,
        })
    }

    /// A free connection, or the next one to become free; `None` once closed.
    pub(crate) async fn lease(&self) -> Option<MappedMutexGuard<'_, SqliteConnection>> {
        let guard = match free_slot(&self.next, self.conns.len(), |i| {
            self.conns[i].try_lock().ok()
        }) {
            Ok(guard) => guard,
            Err(busy) => self.conns[busy].lock().await,
        };
        MutexGuard::try_map(guard, Option::as_mut).ok()
    }

    /// What a read runs on once the connections are closed.
    pub(crate) fn closed(&self) -> &SqlitePool {
        &self.write
    }

    /// Runs `read` on a free local connection, on this thread (see the module
    /// documentation); `Unavailable` once closed. With as many connections as
    /// the runtime has worker threads, one is always free.
    pub(crate) fn local<R>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>,
    ) -> super::Result<R> {
        let guard = match free_slot(&self.next, self.local.len(), |i| {
            self.local[i].try_lock().ok()
        }) {
            Ok(guard) => guard,
            // A poisoned lock only means a read panicked; the connection is fine.
            Err(busy) => self.local[busy]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
        let started = std::time::Instant::now();
        let out = match guard.as_ref() {
            Some(conn) => read(conn).map_err(super::Error::from),
            None => Err(super::Error::Unavailable("the database is closed".into())),
        };
        crate::metrics::database("query", started.elapsed());
        out
    }

    /// Closes every connection, waiting for reads in progress.
    pub(crate) async fn close(&self) {
        self.checkpointer.stop();
        for conn in &self.local {
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(Err((_, err))) = conn.map(rusqlite::Connection::close) {
                tracing::debug!(error = %err, "closing a local reading connection");
            }
        }
        for conn in &self.conns {
            if let Some(conn) = conn.lock().await.take() {
                if let Err(err) = conn.close().await {
                    tracing::debug!(error = %err, "closing a reading connection");
                }
            }
        }
    }
}

/// The slots are tried from a start that moves with each call, so that reads
/// spread over the connections: the first slot `try_take` gets, or (`Err`)
/// the one to wait for.
fn free_slot<G>(
    next: &AtomicUsize,
    n: usize,
    try_take: impl Fn(usize) -> Option<G>,
) -> Result<G, usize> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .find_map(|i| try_take((start + i) % n))
        .ok_or(start % n)
}

/// A `rusqlite` connection to the database file of `opts`, with the same
/// busy timeout as the others (a database locked by someone else answers 503
/// promptly).
pub(super) fn open_file(opts: &SqliteConnectOptions) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(opts.get_filename(), flags)?;
    conn.busy_timeout(Duration::from_millis(900))?;
    Ok(conn)
}

/// A read-only connection to the database file of `opts`.
fn open_local(opts: &SqliteConnectOptions) -> rusqlite::Result<rusqlite::Connection> {
    let conn = open_file(opts)?;
    // Read-only by rule (a write here would bypass the writer); it still
    // opens read-write so that it can map the WAL index like the others.
    conn.pragma_update(None, "query_only", true)?;
    // A small page cache: a reader empties it whenever another connection
    // has committed (WAL), which under load is before nearly every read.
    conn.pragma_update(None, "cache_size", -512)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// WAL pages after which the writer checkpoints by itself (SQLite's default
/// is 1,000). Under a steady stream of commits the WAL file restarts from
/// its beginning only after a checkpoint made by the writer (the thread's
/// finish while the writer has already added pages), so this bounds the WAL
/// (about 16 MB); by then the thread has copied nearly everything, and the
/// writer's checkpoint is mostly its `fsync`.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 4_000;

/// A thread that copies committed WAL pages back into the database file
/// (`PRAGMA wal_checkpoint(PASSIVE)`) every [`CHECKPOINT_EVERY`].
///
/// SQLite's automatic checkpoint runs in the connection that commits, so
/// with one writer every thousandth page, a batch waited for the copy and
/// its `fsync` while the whole queue waited for the batch. A passive
/// checkpoint from another connection runs beside the writer and readers and
/// never blocks them; the writer keeps an automatic checkpoint, four times
/// rarer ([`WRITER_AUTOCHECKPOINT`]), which also lets the WAL file restart.
struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(opts: &SqliteConnectOptions) -> rusqlite::Result<Self> {
        let conn = open_file(opts)?;
        // A checkpoint copies pages from the WAL to the file; it needs no cache.
        conn.pragma_update(None, "cache_size", -256)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("latchkey-checkpoint".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    if stopping.load(Ordering::Acquire) {
                        break;
                    }
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(err) = done {
                        tracing::debug!(error = %err, "background checkpoint");
                    }
                }
            })
            .map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot start the checkpoint thread: {e}")),
                )
            })?;
        Ok(Self {
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and closes its connection.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::warn!("the checkpoint thread panicked");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PostgreSQL connections kept for the hot reads, outside the pool.
///
/// sqlx's pool pings a connection each time it is given back (a round trip
/// to the server), which doubles the cost of a one-query read. A connection
/// here is taken out of its slot while in use and put back only after a
/// query that succeeded: if the read is cancelled half-way or fails, the
/// connection is dropped and the next read opens a new one, so a server
/// restart or a network cut costs one failed read per connection (503s
/// while it lasts), never a connection left mid-protocol.
pub(crate) struct PgHot {
    opts: sqlx::postgres::PgConnectOptions,
    conns: Vec<Mutex<Option<sqlx::PgConnection>>>,
    next: AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgHot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHot")
            .field("connections", &self.conns.len())
            .finish()
    }
}

/// A connection of [`PgHot`] in use; dropped with it unless [`PgLease::keep`] is called.
pub(crate) struct PgLease<'a> {
    hot: &'a PgHot,
    slot: MutexGuard<'a, Option<sqlx::PgConnection>>,
    pub(crate) conn: sqlx::PgConnection,
    /// Kept from an earlier read (the server may have closed it meanwhile).
    pub(crate) reused: bool,
}

impl PgLease<'_> {
    /// Replaces the connection with a new one (after [`is_lost`]).
    pub(crate) async fn reopen(&mut self) -> super::Result<()> {
        self.conn = self.hot.open().await?;
        self.reused = false;
        Ok(())
    }

    /// Puts the connection back for the next read.
    pub(crate) fn keep(self) {
        let Self { mut slot, conn, .. } = self;
        *slot = Some(conn);
    }
}

impl PgHot {
    /// `n` slots, opened on first use.
    pub(crate) fn new(opts: sqlx::postgres::PgConnectOptions, n: u32) -> Self {
        Self {
            opts,
            conns: (0..n).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A connection: a free one, or the next to become free; opened if its
    /// slot is empty (within a second, like the pool's acquire).
    pub(crate) async fn take(&self) -> super::Result<PgLease<'_>> {
        let mut slot = match free_slot(&self.next, self.conns.len(), |i| {
            self.conns[i].try_lock().ok()
        }) {
            Ok(guard) => guard,
            Err(busy) => self.conns[busy].lock().await,
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(super::Error::Unavailable("the database is closed".into()));
        }
        let (conn, reused) = match slot.take() {
            Some(conn) => (conn, true),
            None => (self.open().await?, false),
        };
        Ok(PgLease {
            hot: self,
            slot,
            conn,
            reused,
        })
    }

    async fn open(&self) -> super::Result<sqlx::PgConnection> {
        Ok(
            tokio::time::timeout(Duration::from_secs(1), self.opts.connect())
                .await
                .map_err(|_| super::Error::Unavailable("connecting timed out".into()))??,
        )
    }

    /// Closes every connection; reads after this fail.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in &self.conns {
            if let Some(conn) = slot.lock().await.take() {
                if let Err(err) = conn.close().await {
                    tracing::debug!(error = %err, "closing a hot reading connection");
                }
            }
        }
    }
}

/// Whether a read failed because its connection is gone (closed by the
/// server, an administrator or the network), so that a new one may succeed.
pub(crate) fn is_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
pub(super) mod tests {
    /// The hot reads bind their values by position; SQLite numbers named
    /// parameters like `$1` in order of first appearance, so each `$k` must
    /// be the k-th.
    #[test]
    fn the_hot_reads_parameters_are_numbered_in_order() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        migrate(&conn);
        for sql in [
            super::super::sessions::LOAD,
            super::super::licenses::LICENSE_IN_FORCE,
            super::super::entitlements::MINT_PROFILE,
            super::super::credentials::WITH_OWNER.as_str(),
        ] {
            let stmt = conn.prepare(sql).unwrap();
            let n = stmt.parameter_count();
            assert!(n >= 1, "{sql}");
            for k in 1..=n {
                assert_eq!(
                    stmt.parameter_index(&format!("${k}")).unwrap(),
                    Some(k),
                    "{sql}"
                );
            }
        }
    }

    /// Applies the SQLite migrations to `conn`.
    pub(in crate::store) fn migrate(conn: &rusqlite::Connection) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for file in files {
            conn.execute_batch(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
}
