//! Backups of a SQLite database: a consistent copy of the live file made with
//! `VACUUM INTO` (one read transaction, so a snapshot, while the service keeps
//! writing), the checks a copy must pass before it is restored, and the
//! directory lock that keeps a restore away from a database in use.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// What a backup holds, read from the copy itself.
#[derive(Debug)]
pub struct Summary {
    /// The newest migration applied to it.
    pub migration: i64,
    /// `(kid, sealed private half)` of every signing key, newest first.
    pub signing_keys: Vec<(String, Vec<u8>)>,
    pub users: i64,
    pub licenses: i64,
}

/// The file of a `sqlite:` database URL; `None` for PostgreSQL.
pub fn sqlite_path(url: &str) -> anyhow::Result<Option<PathBuf>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let opts = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("LATCHKEY_DATABASE_URL is not a valid SQLite URL: {url}"))?;
    Ok(Some(opts.get_filename().to_owned()))
}

/// The newest migration this build knows for SQLite.
pub fn newest_migration() -> i64 {
    sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Writes a consistent copy of the SQLite database `source` to `dest` (which
/// must not exist), checks it, and returns what it holds. The live database is
/// opened read-only: a backup never changes it.
pub async fn backup_sqlite(source: &Path, dest: &Path) -> anyhow::Result<Summary> {
    if !source.is_file() {
        bail!(
            "there is no database at {} (LATCHKEY_DATABASE_URL / LATCHKEY_DATA_DIR)",
            source.display()
        );
    }
    if dest.exists() {
        bail!(
            "{} already exists: backups never overwrite a file, choose a new name",
            dest.display()
        );
    }
    let partial = partial_name(dest)?;
    // An empty file made first, so the copy is private from its first byte
    // (VACUUM INTO accepts an existing empty file).
    create_private(&partial)?;
    let written = async {
        let opts = SqliteConnectOptions::new()
            .filename(source)
            .read_only(true)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        let mut conn = opts
            .connect()
            .await
            .with_context(|| format!("cannot open {}", source.display()))?;
        let target = partial
            .to_str()
            .context("the backup file name must be valid UTF-8")?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&mut conn)
            .await
            .context("VACUUM INTO failed")?;
        conn.close().await?;
        File::open(&partial)?.sync_all()?;
        let summary = inspect(&partial).await?;
        if dest.exists() {
            bail!("{} appeared while the backup was written", dest.display());
        }
        std::fs::rename(&partial, dest)?;
        sync_directory(dest);
        Ok(summary)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Opens a backup read-only and checks it: SQLite's integrity check, a
/// Latchkey schema, and migrations this build knows (a backup made by a newer
/// version is refused rather than half understood).
pub async fn inspect(path: &Path) -> anyhow::Result<Summary> {
    if !path.is_file() {
        bail!("{} is not a file", path.display());
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    let mut conn = opts
        .connect()
        .await
        .with_context(|| format!("{} is not a SQLite database", path.display()))?;
    let checked = async {
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("{} is not a SQLite database", path.display()))?;
        if integrity != "ok" {
            bail!("{} is damaged: {integrity}", path.display());
        }
        let migration: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await
                .with_context(|| format!("{} is not a Latchkey database", path.display()))?;
        let migration = migration.unwrap_or(0);
        let newest = newest_migration();
        if migration > newest {
            bail!(
                "{} was made by a newer Latchkey (migration {migration}; this one knows up to {newest}): restore it with that version",
                path.display()
            );
        }
        let signing_keys: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT kid, sealed_private FROM signing_keys ORDER BY generation DESC",
        )
        .fetch_all(&mut conn)
        .await?;
        let users = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut conn)
            .await?;
        let licenses = sqlx::query_scalar("SELECT COUNT(*) FROM licenses")
            .fetch_one(&mut conn)
            .await?;
        Ok(Summary {
            migration,
            signing_keys,
            users,
            licenses,
        })
    }
    .await;
    conn.close().await?;
    checked
}

/// Takes a shared lock on the directory of the database file `db` for as long
/// as the returned handle lives (`None` where locks are not supported). The
/// lock is on the directory, not the file: SQLite's own POSIX locks on the
/// file would be dropped when any other handle to it is closed.
pub fn share_directory(db: &Path) -> anyhow::Result<Option<Arc<File>>> {
    if db == Path::new(":memory:") {
        return Ok(None);
    }
    let dir = directory_of(db);
    let Ok(handle) = File::open(&dir) else {
        return Ok(None);
    };
    match handle.try_lock_shared() {
        Ok(()) => Ok(Some(Arc::new(handle))),
        Err(TryLockError::WouldBlock) => bail!(
            "LATCHKEY_DATABASE_URL: a restore into {} is under way; start again when it is done",
            dir.display()
        ),
        Err(TryLockError::Error(_)) => Ok(None),
    }
}

/// Takes the directory lock of `db` exclusively: no Latchkey process has the
/// database open, and none can open it until the handle is dropped.
pub fn lock_directory(db: &Path) -> anyhow::Result<File> {
    let dir = directory_of(db);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let handle = File::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(TryLockError::WouldBlock) => bail!(
            "a Latchkey process is using {}: stop the service (and any command on that database) before restoring",
            dir.display()
        ),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", dir.display()))
        }
    }
}

fn directory_of(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `dir/.name.partial-PID`, next to `dest` so the final rename stays on one file system.
pub fn partial_name(dest: &Path) -> anyhow::Result<PathBuf> {
    let name = dest
        .file_name()
        .with_context(|| format!("{} is not a file name", dest.display()))?
        .to_string_lossy();
    Ok(directory_of(dest).join(format!(".{name}.partial-{}", std::process::id())))
}

/// Creates an empty file readable by its owner only; fails if it exists.
pub fn create_private(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Makes a rename in `path`'s directory durable (best effort where unsupported).
pub fn sync_directory(path: &Path) {
    if let Ok(dir) = File::open(directory_of(path)) {
        let _ = dir.sync_all();
    }
}
