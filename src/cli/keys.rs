//! `latchkey keys …`: list, rotate and retire the license signing keys.

use anyhow::bail;

use super::open;
use crate::config::{Common, KeysCommand};
use crate::http::rfc3339;
use crate::state::keys::{generate, Keyring};
use crate::state::load_kek;
use crate::store::audit::{AuditEvent, Event};
use crate::store::now;

pub async fn run(common: &Common, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open(common).await?;
    let kek = load_kek(common)?;
    // Loading the keyring checks that the KEK opens the active key.
    let keyring = Keyring::load(&store, &kek, &common.origin_str(), &common.audience()).await?;
    let cli = |event| AuditEvent {
        client_addr: Some("cli"),
        ..AuditEvent::new(event)
    };
    match cmd {
        KeysCommand::List => {
            println!(
                "{:<45} {:<8} {:<25} {:<25}",
                "KID", "STATE", "CREATED", "SIGNED UNTIL"
            );
            for row in store.signing_keys().await? {
                let state = if row.kid == keyring.active.kid {
                    "active"
                } else if row.retired_at.is_some() {
                    "retired"
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
                    "{:<45} {:<8} {:<25} {:<25}",
                    row.kid,
                    state,
                    rfc3339(row.created_at),
                    until
                );
            }
        }
        KeysCommand::Rotate => {
            let kid = generate(&store, &kek, Some(&cli(Event::KeyRotated))).await?;
            println!(
                "new signing key {kid}; the previous key stays published until its licenses expire"
            );
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
    }
    store.close().await;
    Ok(())
}
