//! SQLite's reading connections, each running one query at a time.
//!
//! Every sqlx connection to SQLite is a worker thread that a query reaches
//! through a channel. sqlx's pool pings that thread when a connection is
//! taken and again when it is given back, so a read through the pool costs
//! three cross-thread round trips instead of one. A connection to a local file
//! cannot go stale, so these connections are kept here and used directly.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub(crate) struct Readers {
    conns: Vec<Mutex<Option<SqliteConnection>>>,
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
        for _ in 0..n.max(1) {
            conns.push(Mutex::new(Some(opts.connect().await?)));
        }
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
            write,
        })
    }

    /// A free connection, or the next one to become free; `None` once closed.
    pub(crate) async fn lease(&self) -> Option<MappedMutexGuard<'_, SqliteConnection>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..n).find_map(|i| self.conns[(start + i) % n].try_lock().ok());
        let guard = match free {
            Some(guard) => guard,
            None => self.conns[start % n].lock().await,
        };
        MutexGuard::try_map(guard, Option::as_mut).ok()
    }

    /// What a read runs on once the connections are closed.
    pub(crate) fn closed(&self) -> &SqlitePool {
        &self.write
    }

    /// Closes every connection, waiting for reads in progress.
    pub(crate) async fn close(&self) {
        for conn in &self.conns {
            if let Some(conn) = conn.lock().await.take() {
                if let Err(err) = conn.close().await {
                    tracing::debug!(error = %err, "closing a reading connection");
                }
            }
        }
    }
}
