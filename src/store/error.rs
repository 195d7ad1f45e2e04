//! The store's own error type: features see what a failure means, never a
//! `sqlx::Error`.

/// What a database operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database cannot be reached or cannot take the write right now; the
    /// caller may retry (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the change; the text names the rule.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the operation needs does not exist.
    #[error("not found")]
    NotFound,
    /// Anything else: a bug or an unexpected failure.
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Result alias of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            return Self::Unavailable(err.to_string());
        }
        match err {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(
                db.constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned()),
            ),
            other => Self::Other(anyhow::Error::new(other).context("database")),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => Self::Other(anyhow::Error::new(other).context("migrations")),
        }
    }
}

/// Whether a SQLite failure means the database cannot be used right now
/// (locked by someone else, read-only, out of space, failing I/O), as opposed
/// to a problem with one statement's data.
pub(super) fn unavailable(code: rusqlite::ErrorCode) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        code,
        ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
    )
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match &err {
            rusqlite::Error::QueryReturnedNoRows => Self::NotFound,
            rusqlite::Error::SqliteFailure(e, _) if unavailable(e.code) => {
                Self::Unavailable(err.to_string())
            }
            _ => Self::Other(anyhow::Error::new(err).context("database")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::Other(anyhow::Error::new(err).context("stored JSON"))
    }
}

/// Whether a database error means "the database cannot be reached right now"
/// (a 503 the client may retry) rather than a bug.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => {
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_READONLY (8), SQLITE_IOERR (10),
            // SQLITE_FULL (13), SQLITE_CANTOPEN (14). PostgreSQL: class 08 (connection),
            // 57P0x (shutdown), 53 (resources), 40001/40P01 (serialization, deadlock: retry).
            let code = db.code().unwrap_or_default();
            let code = code.as_ref();
            // SQLite codes are numbers of at most four digits; PostgreSQL's are five characters.
            let sqlite_base = (code.len() < 5)
                .then(|| code.parse::<i32>().ok())
                .flatten()
                .map(|c| c & 0xff);
            matches!(sqlite_base, Some(5 | 6 | 8 | 10 | 13 | 14))
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
                || db.message().contains("readonly")
        }
        _ => false,
    }
}
