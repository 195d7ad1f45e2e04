//! `latchkey admin …`, `latchkey keys …` and `latchkey license verify`.

use anyhow::{bail, Context};

use crate::app::{load_kek, open_store, rfc3339};
use crate::config::{AdminCommand, Common, KeysCommand, LicenseCommand};
use crate::license::keys::{generate, Keyring};
use crate::license::{JwkSet, Verifier};
use crate::store::audit::AuditEvent;
use crate::store::licenses::RoleChange;
use crate::store::users::User;
use crate::store::{now, Store};

async fn open(common: &Common) -> anyhow::Result<Store> {
    common.validate().map_err(anyhow::Error::msg)?;
    let store = open_store(common, 2).await?;
    store.migrate().await?;
    Ok(store)
}

async fn find_user(store: &Store, user: &str) -> anyhow::Result<User> {
    store
        .user_by_name_or_id(user)
        .await?
        .with_context(|| format!("no user with username or id {user:?}"))
}

/// Entitlement names: short, lowercase, no spaces (they appear in licenses).
pub fn valid_entitlement(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b))
}

/// Parses `--until`: RFC 3339, or a date meaning the end of that day (UTC).
pub fn parse_until(text: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .context("--until must be YYYY-MM-DD or an RFC 3339 time")?;
    Ok(date
        .with_hms(23, 59, 59)
        .context("bad date")?
        .assume_utc()
        .unix_timestamp())
}

async fn cli_audit(
    store: &Store,
    event: &str,
    target_user: Option<&str>,
    target: Option<&str>,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    let e = AuditEvent {
        event,
        target_user_id: target_user,
        target,
        client_addr: Some("cli"),
        detail,
        ..AuditEvent::default()
    };
    store.audit(&e, now()).await?;
    Ok(())
}

pub async fn admin(common: &Common, cmd: AdminCommand) -> anyhow::Result<()> {
    let store = open(common).await?;
    match cmd {
        AdminCommand::Grant {
            user,
            entitlement,
            until,
        } => {
            if !valid_entitlement(&entitlement) {
                bail!("entitlement names use a-z, 0-9 and - _ . : (at most 64 characters)");
            }
            let user = find_user(&store, &user).await?;
            let until = until.as_deref().map(parse_until).transpose()?;
            if until.is_some_and(|t| t <= now()) {
                bail!("--until is in the past");
            }
            store
                .grant_entitlement(&user.id, &entitlement, until, now())
                .await?;
            cli_audit(
                &store,
                "entitlement.granted",
                Some(&user.id),
                Some(&entitlement),
                None,
            )
            .await?;
            match until {
                Some(t) => println!(
                    "granted {entitlement} to {} until {}",
                    user.username,
                    rfc3339(t)
                ),
                None => println!("granted {entitlement} to {}", user.username),
            }
        }
        AdminCommand::RevokeEntitlement { user, entitlement } => {
            let user = find_user(&store, &user).await?;
            if !store
                .remove_entitlement(&user.id, &entitlement, now())
                .await?
            {
                bail!("{} does not have {entitlement}", user.username);
            }
            cli_audit(
                &store,
                "entitlement.removed",
                Some(&user.id),
                Some(&entitlement),
                None,
            )
            .await?;
            println!(
                "removed {entitlement} from {}; licenses carrying it are revoked",
                user.username
            );
        }
        AdminCommand::Promote { user } => set_role(&store, &user, "admin").await?,
        AdminCommand::Demote { user } => set_role(&store, &user, "user").await?,
        AdminCommand::RevokeLicense { jti } => {
            let license = store
                .revoke_license(&jti, "revoked by an administrator", now())
                .await?
                .with_context(|| format!("no license with jti {jti:?}"))?;
            cli_audit(
                &store,
                "license.revoked",
                Some(&license.user_id),
                Some(&jti),
                None,
            )
            .await?;
            println!(
                "revoked license {jti} (status list {} index {})",
                license.list_id, license.idx
            );
        }
        AdminCommand::RevokePasskey { credential_id } => {
            let owner = store
                .revoke_credential(&credential_id, "revoked by an administrator", now())
                .await?
                .with_context(|| format!("no active passkey with id {credential_id:?}"))?;
            cli_audit(
                &store,
                "passkey.revoked",
                Some(&owner),
                Some(&credential_id),
                None,
            )
            .await?;
            println!("revoked passkey {credential_id}; its sessions ended and their licenses are revoked");
        }
        AdminCommand::Disable { user } => {
            let user = find_user(&store, &user).await?;
            store.set_user_disabled(&user.id, true, now()).await?;
            cli_audit(&store, "user.disabled", Some(&user.id), None, None).await?;
            println!(
                "disabled {}; sessions ended, licenses revoked",
                user.username
            );
        }
        AdminCommand::Enable { user } => {
            let user = find_user(&store, &user).await?;
            store.set_user_disabled(&user.id, false, now()).await?;
            cli_audit(&store, "user.enabled", Some(&user.id), None, None).await?;
            println!("enabled {}", user.username);
        }
    }
    store.close().await;
    Ok(())
}

async fn set_role(store: &Store, user: &str, role: &str) -> anyhow::Result<()> {
    let user = find_user(store, user).await?;
    match store.set_role(&user.id, role).await? {
        RoleChange::Changed => {
            cli_audit(store, "user.role_changed", Some(&user.id), Some(role), None).await?;
            println!("{} is now {role}", user.username);
        }
        RoleChange::Unchanged => println!("{} is already {role}", user.username),
        RoleChange::LastAdmin => bail!("{} is the last admin and cannot be demoted", user.username),
        RoleChange::NoSuchUser => bail!("no such user"),
    }
    Ok(())
}

pub async fn keys(common: &Common, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open(common).await?;
    let kek = load_kek(common)?;
    match cmd {
        KeysCommand::List => {
            // Loading the keyring checks that the KEK opens the active key.
            let keyring =
                Keyring::load(&store, &kek, &common.origin_str(), &common.audience()).await?;
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
            Keyring::load(&store, &kek, &common.origin_str(), &common.audience()).await?;
            let kid = generate(&store, &kek).await?;
            cli_audit(&store, "key.rotated", None, Some(&kid), None).await?;
            println!(
                "new signing key {kid}; the previous key stays published until its licenses expire"
            );
        }
        KeysCommand::Retire { kid } => {
            let keyring =
                Keyring::load(&store, &kek, &common.origin_str(), &common.audience()).await?;
            if keyring.active.kid == kid {
                bail!("{kid} is the active signing key: run `latchkey keys rotate` first");
            }
            if !store.retire_signing_key(&kid, now()).await? {
                bail!("no unretired key with kid {kid}");
            }
            cli_audit(&store, "key.retired", None, Some(&kid), None).await?;
            println!("retired {kid}; licenses it signed no longer verify");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn license(common: &Common, cmd: LicenseCommand) -> anyhow::Result<()> {
    match cmd {
        LicenseCommand::Verify {
            token,
            jwks,
            issuer,
            audience,
        } => {
            let bytes = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                fetch(&jwks).await?
            } else {
                std::fs::read(&jwks).with_context(|| format!("cannot read {jwks}"))?
            };
            let jwks = JwkSet::from_json(&bytes)?;
            let verifier = Verifier {
                jwks,
                issuer: issuer.unwrap_or_else(|| common.origin_str()),
                audience: audience.unwrap_or_else(|| common.audience()),
            };
            let claims = verifier
                .verify(token.trim(), now())
                .map_err(|e| anyhow::anyhow!("license rejected: {e}"))?;
            println!("valid license {}", claims.jti);
            println!("  subject      {}", claims.sub);
            println!("  entitlements {}", claims.ent.join(", "));
            println!("  device key   {}", claims.jkt);
            println!("  issued       {}", rfc3339(claims.iat));
            println!("  expires      {}", rfc3339(claims.exp));
            if let Some(status) = claims.status {
                println!("  status       {} index {}", status.uri, status.idx);
            }
            Ok(())
        }
    }
}

/// A minimal HTTP/1.1 GET over plain TCP, enough for a JWK set on a local or
/// internal address (for https, download the file and pass its path).
async fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed = url::Url::parse(url)?;
    if parsed.scheme() != "http" {
        bail!("only http:// URLs are fetched directly; for https save the JWK set to a file and pass its path");
    }
    let host = parsed.host_str().context("URL without a host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "fetching the JWK set failed: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked responses are not supported; save the JWK set to a file");
    }
    Ok(response[split + 4..].to_vec())
}
