//! The command line: `latchkey admin …`, `latchkey apikey …`, `latchkey keys …`,
//! `latchkey license …`.
//! Changes go through the same operations, with the same rules, as the admin API.

mod admin;
mod apikey;
mod backup;
mod keys;
mod license;

use anyhow::Context;

use crate::config::{Command, Common};
use crate::state::keys::Kek;
use crate::state::{open_kek, open_store, read_kek};
use crate::store::users::User;
use crate::store::Store;

/// Runs one command that is not `serve`; false when `command` is not one of them.
pub async fn run(common: &Common, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Admin(cmd) => admin::run(common, cmd).await,
        Command::Keys(cmd) => keys::run(common, cmd).await,
        Command::Apikey(cmd) => apikey::run(common, cmd).await,
        Command::License(cmd) => license::run(common, cmd).await,
        Command::Backup { file } => backup::backup(common, &file).await,
        Command::Restore { file, force } => backup::restore(common, &file, force).await,
        Command::Migrate => {
            let store = open(common).await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve(_) => anyhow::bail!("serve is not a command-line tool"),
    }
}

/// Opens and migrates the configured database.
async fn open(common: &Common) -> anyhow::Result<Store> {
    common.validate().map_err(anyhow::Error::msg)?;
    let store = open_store(common, 2).await?;
    store.migrate().await?;
    crate::state::migrate_usernames(&store).await?;
    Ok(store)
}

/// Opens the database and the KEK, then migrates: a missing KEK next to
/// sealed keys is refused before anything is written.
async fn open_with_kek(common: &Common) -> anyhow::Result<(Store, Kek)> {
    common.validate().map_err(anyhow::Error::msg)?;
    let given = read_kek(common)?;
    let store = open_store(common, 2).await?;
    let opened = async {
        let kek = open_kek(common, &store, given).await?;
        store.migrate().await?;
        anyhow::Ok(kek)
    }
    .await;
    match opened {
        Ok(kek) => Ok((store, kek)),
        Err(err) => {
            store.close().await;
            Err(err)
        }
    }
}

/// A user by username or id.
async fn find_user(store: &Store, user: &str) -> anyhow::Result<User> {
    store
        .user_by_key_or_id(&crate::usernames::lookup_key(user), user)
        .await?
        .with_context(|| format!("no user with username or id {user:?}"))
}
