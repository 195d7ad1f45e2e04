//! `latchkey backup FILE` and `latchkey restore FILE`: consistent copies of the
//! SQLite database while the service runs, and putting one back while it is
//! stopped. The KEK is never in a backup; it is backed up separately.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::Common;
use crate::state::{kek_file, read_kek};
use crate::store::backup::{
    backup_sqlite, create_private, inspect, lock_directory, partial_name, sqlite_path,
    sync_directory, Summary,
};

fn sqlite_only(common: &Common, what: &str) -> anyhow::Result<PathBuf> {
    common.validate().map_err(anyhow::Error::msg)?;
    match sqlite_path(&common.database_url())? {
        Some(path) => Ok(path),
        None => bail!(
            "latchkey {what} works on SQLite databases; for PostgreSQL use pg_dump and pg_restore (README, \"Backups\")"
        ),
    }
}

fn describe(s: &Summary) -> String {
    format!(
        "migration {}, {} users, {} licenses, {} signing keys",
        s.migration,
        s.users,
        s.licenses,
        s.signing_keys.len()
    )
}

pub async fn backup(common: &Common, file: &Path) -> anyhow::Result<()> {
    let source = sqlite_only(common, "backup")?;
    let summary = backup_sqlite(&source, file).await?;
    println!(
        "backed up {} to {} ({}); the KEK is not in it: keep a copy of {} apart from the backups",
        source.display(),
        file.display(),
        describe(&summary),
        kek_file(common).display()
    );
    Ok(())
}

pub async fn restore(common: &Common, file: &Path, force: bool) -> anyhow::Result<()> {
    let target = sqlite_only(common, "restore")?;
    let summary = inspect(file).await?;
    // The backup is useless without the KEK its keys were sealed with: say so
    // now rather than at the next start.
    match read_kek(common)? {
        Some(kek) => {
            for (kid, sealed) in &summary.signing_keys {
                if kek.open(kid, sealed).is_err() {
                    bail!(
                        "the configured KEK ({}) does not open the signing keys in {}: configure the KEK that was in use when the backup was made",
                        kek_file(common).display(),
                        file.display()
                    );
                }
            }
        }
        None => println!(
            "note: there is no KEK at {}; put the one that was in use when the backup was made there (or set LATCHKEY_KEK) before starting",
            kek_file(common).display()
        ),
    }
    if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::state::files::private_dir(dir)?;
    }
    let _lock = lock_directory(&target)?;
    let companions = ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = target.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    });
    if (target.exists() || companions.iter().any(|p| p.exists())) && !force {
        bail!(
            "{} exists: add --force to replace it (the database there is lost)",
            target.display()
        );
    }
    let partial = partial_name(&target)?;
    let copied = (|| {
        let mut out = create_private(&partial)?;
        let mut from =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        std::io::copy(&mut from, &mut out)?;
        out.sync_all()?;
        // A log left by the old database would be replayed into the new one.
        for companion in &companions {
            match std::fs::remove_file(companion) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot remove {}", companion.display())))
                }
                _ => {}
            }
        }
        std::fs::rename(&partial, &target)?;
        sync_directory(&target);
        anyhow::Ok(())
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    copied?;
    println!(
        "restored {} into {} ({}); newer migrations are applied when the service starts",
        file.display(),
        target.display(),
        describe(&summary)
    );
    Ok(())
}
