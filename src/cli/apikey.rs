//! `latchkey apikey …`: make, list and revoke API keys from the host.

use super::open;
use crate::admin::ops::Actor;
use crate::apikeys::{ops, Scope};
use crate::config::{ApikeyCommand, Common};
use crate::http::rfc3339;

pub async fn run(common: &Common, cmd: ApikeyCommand) -> anyhow::Result<()> {
    let store = open(common).await?;
    let actor = Actor::Cli;
    match cmd {
        ApikeyCommand::Create {
            name,
            scope,
            expires,
        } => {
            let scopes = scope
                .iter()
                .map(|s| {
                    Scope::parse(s.trim()).ok_or_else(|| {
                        let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                        anyhow::anyhow!("unknown scope {s:?}; use {}", known.join(", "))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let expires_at = expires
                .as_deref()
                .map(|text| {
                    ops::parse_expiry(text).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--expires must be a lifetime (90d), a date or an RFC 3339 time"
                        )
                    })
                })
                .transpose()?;
            let created = ops::create(&store, &actor, &name, &scopes, expires_at).await?;
            println!("{}", created.secret);
            eprintln!(
                "made API key {} ({}) with {}; the secret above is shown only now",
                created.key.id, created.key.name, created.key.scopes
            );
        }
        ApikeyCommand::List => {
            for key in store.api_keys().await? {
                let state = match (key.revoked_at, key.expires_at) {
                    (Some(t), _) => format!("revoked {}", rfc3339(t)),
                    (None, Some(t)) if t <= crate::store::now() => {
                        format!("expired {}", rfc3339(t))
                    }
                    (None, Some(t)) => format!("expires {}", rfc3339(t)),
                    (None, None) => "no expiry".to_owned(),
                };
                let used = key.last_used_at.map_or_else(
                    || "never used".to_owned(),
                    |t| format!("used {}", rfc3339(t)),
                );
                println!(
                    "{}\t{}\t{}…\t{}\t{state}\t{used}",
                    key.id, key.name, key.hint, key.scopes
                );
            }
        }
        ApikeyCommand::Revoke { id } => {
            ops::revoke(&store, &actor, &id).await?;
            println!("revoked API key {id}");
        }
    }
    store.close().await;
    Ok(())
}
