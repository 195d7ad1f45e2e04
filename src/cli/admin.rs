//! `latchkey admin …`: users, roles, entitlements and revocations.

use anyhow::Context;

use super::{find_user, open};
use crate::admin::ops::{self, Actor};
use crate::config::{AdminCommand, Common};
use crate::http::rfc3339;
use crate::store::users::Role;

pub async fn run(common: &Common, cmd: AdminCommand) -> anyhow::Result<()> {
    let store = open(common).await?;
    let actor = Actor::Cli;
    match cmd {
        AdminCommand::Grant {
            user,
            entitlement,
            until,
            max_devices,
        } => {
            let user = find_user(&store, &user).await?;
            let until = until
                .as_deref()
                .map(|text| {
                    ops::parse_until(text).context("--until must be YYYY-MM-DD or an RFC 3339 time")
                })
                .transpose()?;
            ops::grant_entitlement(&store, &actor, &user.id, &entitlement, until, max_devices)
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
            ops::remove_entitlement(&store, &actor, &user.id, &entitlement).await?;
            println!(
                "removed {entitlement} from {}; licenses carrying it are revoked",
                user.username
            );
        }
        AdminCommand::Promote { user } => {
            let user = find_user(&store, &user).await?;
            let changed = ops::set_role(&store, &actor, &user.id, Role::Admin).await?;
            println!(
                "{} {} admin",
                user.username,
                if changed { "is now" } else { "is already" }
            );
        }
        AdminCommand::Demote { user } => {
            let user = find_user(&store, &user).await?;
            let changed = ops::set_role(&store, &actor, &user.id, Role::User).await?;
            println!(
                "{} {} user",
                user.username,
                if changed { "is now" } else { "is already" }
            );
        }
        AdminCommand::RevokeLicense { jti } => {
            let license = ops::revoke_license(&store, &actor, &jti).await?;
            println!(
                "revoked license {jti} (status list {} index {})",
                license.list_id, license.idx
            );
        }
        AdminCommand::RevokePasskey { credential_id } => {
            ops::revoke_passkey(&store, &actor, &credential_id).await?;
            println!(
                "revoked passkey {credential_id}; its sessions ended and their licenses are revoked"
            );
        }
        AdminCommand::Disable { user } => {
            let user = find_user(&store, &user).await?;
            ops::set_disabled(&store, &actor, &user.id, true).await?;
            println!(
                "disabled {}; sessions ended, licenses revoked",
                user.username
            );
        }
        AdminCommand::RecoveryLink {
            user,
            ttl,
            revoke_others,
            base_path,
        } => {
            let user = find_user(&store, &user).await?;
            let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            let issued = crate::admin::accounts::issue_recovery(
                &store,
                &actor,
                &user.id,
                Some(ttl),
                revoke_others,
            )
            .await?;
            println!(
                "recovery link for {} (works once, until {}{}):",
                user.username,
                rfc3339(issued.expires_at),
                if revoke_others {
                    "; revokes the other passkeys"
                } else {
                    ""
                }
            );
            println!(
                "{}",
                crate::admin::accounts::recovery_url(
                    &common.origin.origin().ascii_serialization(),
                    &base_path,
                    &issued.code
                )
            );
        }
        AdminCommand::Enable { user } => {
            let user = find_user(&store, &user).await?;
            ops::set_disabled(&store, &actor, &user.id, false).await?;
            println!("enabled {}", user.username);
        }
    }
    store.close().await;
    Ok(())
}
