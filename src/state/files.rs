//! The data directory and the files in it are private to the service's user:
//! the directory 0700, the database and key files 0600. An existing directory
//! others can read is used as it is, with a warning.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Creates `dir` (and its parents) with mode 0700, or warns when it exists
/// and its group or others may read it.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        warn_if_shared(dir);
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Creates an empty `file` with mode 0600 unless it exists (SQLite gives its
/// `-wal` and `-shm` files the same mode as the database).
pub fn private_file(file: &Path) -> anyhow::Result<()> {
    if file.exists() {
        return Ok(());
    }
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", file.display())),
    }
}

/// The file of a `sqlite:` URL, unless it is in memory.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

fn warn_if_shared(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %dir.display(),
                    mode = format!("{mode:o}"),
                    "the data directory can be read by other users; it holds the database and the key-encryption key: chmod 700 it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/l.db"),
            Some(PathBuf::from("data/l.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///abs/l.db?mode=rwc"),
            Some(PathBuf::from("/abs/l.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
