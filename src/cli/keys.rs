//! `latchkey keys …`: list, rotate and retire the license signing keys, and
//! re-encrypt them under a new key-encryption key.

use std::path::Path;

use anyhow::{bail, Context};

use super::open_with_kek;
use crate::config::{Common, KeysCommand};
use crate::http::rfc3339;
use crate::state::kek_file;
use crate::state::keys::{generate, Kek, Keyring};
use crate::store::audit::{AuditEvent, Event};
use crate::store::{now, Store};

pub async fn run(common: &Common, cmd: KeysCommand) -> anyhow::Result<()> {
    let (store, kek) = open_with_kek(common).await?;
    // Loading the keyring checks that the KEK opens the active key.
    let keyring = Keyring::load(&store, &kek, &common.origin_str(), &common.audience()).await?;
    let cli = |event| AuditEvent {
        client_addr: Some("cli"),
        ..AuditEvent::new(event)
    };
    match cmd {
        KeysCommand::List => {
            println!(
                "{:<45} {:<8} {:<25} {:<25} {:<25}",
                "KID", "STATE", "CREATED", "SIGNS FROM", "SIGNED UNTIL"
            );
            for row in store.signing_keys().await? {
                let state = if row.kid == keyring.active.kid {
                    "active"
                } else if row.retired_at.is_some() {
                    "retired"
                } else if keyring.announced.contains(&row.kid) {
                    "next"
                } else if keyring.published.iter().any(|(kid, _)| kid == &row.kid) {
                    "overlap"
                } else {
                    "expired"
                };
                let until = if row.signed_until > 0 {
                    rfc3339(row.signed_until)
                } else {
                    "-".into()
                };
                println!(
                    "{:<45} {:<8} {:<25} {:<25} {:<25}",
                    row.kid,
                    state,
                    rfc3339(row.created_at),
                    rfc3339(row.signs_from),
                    until
                );
            }
        }
        KeysCommand::Rotate {
            after,
            now: at_once,
        } => {
            let announce = if at_once {
                0
            } else {
                i64::try_from(after.as_secs()).unwrap_or(i64::MAX)
            };
            let kid = generate(&store, &kek, Some(&cli(Event::KeyRotated)), announce).await?;
            if announce == 0 {
                println!(
                    "new signing key {kid} signs from now; the previous key stays published until its licenses expire"
                );
            } else {
                println!(
                    "new signing key {kid} is published now and signs from {}; apps that sync before then pin it ahead of use",
                    rfc3339(now().saturating_add(announce))
                );
            }
        }
        KeysCommand::Retire { kid } => {
            if keyring.active.kid == kid {
                bail!("{kid} is the active signing key: run `latchkey keys rotate` first");
            }
            let audit = AuditEvent {
                target: Some(&kid),
                ..cli(Event::KeyRetired)
            };
            if !store.retire_signing_key(&kid, &audit, now()).await? {
                bail!("no unretired key with kid {kid}");
            }
            println!("retired {kid}; licenses it signed no longer verify");
        }
        KeysCommand::Rekey { new_kek_file } => {
            let count = rekey(&store, &kek, &new_kek_file, &cli(Event::KekRotated)).await?;
            println!(
                "re-encrypted {count} signing keys under the KEK in {new}; now point LATCHKEY_KEK_FILE at it (or move it over {old}), restart every instance, and then destroy the old KEK",
                new = new_kek_file.display(),
                old = kek_file(common).display()
            );
        }
    }
    store.close().await;
    Ok(())
}

/// Seals every signing key anew under the KEK in `new_file` (made when it does
/// not exist, before the database changes), in one transaction: until it
/// commits the old KEK opens every key, afterwards the new one does.
async fn rekey(
    store: &Store,
    kek: &Kek,
    new_file: &Path,
    audit: &AuditEvent<'_>,
) -> anyhow::Result<usize> {
    let new = match Kek::read_file(new_file, "--new-kek-file")? {
        Some(new) => new,
        None => Kek::create(new_file, "--new-kek-file")?,
    };
    if new.same_as(kek) {
        bail!("--new-kek-file holds the KEK in use already; give a new file");
    }
    let rows = store.signing_keys().await?;
    let mut resealed = Vec::with_capacity(rows.len());
    // Oldest first; every key, retired ones too.
    for row in rows.iter().rev() {
        let secret = kek.open(&row.kid, &row.sealed_private).with_context(|| {
            format!(
                "signing key {} is not sealed with the current KEK; nothing was changed",
                row.kid
            )
        })?;
        let sealed = new.seal(&row.kid, &secret)?;
        new.open(&row.kid, &sealed)
            .context("the new KEK does not open what it sealed; nothing was changed")?;
        resealed.push((row.kid.clone(), row.sealed_private.clone(), sealed));
    }
    store.reseal_signing_keys(&resealed, audit, now()).await?;
    Ok(resealed.len())
}
