//! The admin operations, shared by the admin API and the command line: each
//! checks the rules (a recent sign-in for destructive API actions, the last
//! enabled admin, the last passkey) and makes its change together with its
//! audit row in one transaction.

use crate::error::{AppError, Result};
use crate::store::audit::{AuditEvent, Event};
use crate::store::licenses::LicenseRow;
use crate::store::revocations::{AccountChange, PasskeyRevocation, PasskeyRules, Removal};
use crate::store::users::Role;
use crate::store::{now, Store};

use super::guard::{reauthentication_required, Admin};
use crate::apikeys::{missing, ApiKey, Scope};
use crate::http::ClientInfo;

/// Who is making a change.
pub enum Actor<'a> {
    /// An operator on the host, through `latchkey admin …`.
    Cli,
    /// An admin through the API.
    Admin(&'a Admin),
    /// A machine through the API with an API key. Keys are not asked to
    /// re-authenticate (nobody is there to touch a passkey); their scopes,
    /// checked again by each operation, bound what they can do instead.
    Key {
        key: &'a ApiKey,
        client: &'a ClientInfo,
    },
}

impl Actor<'_> {
    /// Destructive changes need a recent passkey confirmation when made
    /// through the API; the command line runs with the host's own authority.
    /// Returns the confirmation the change must spend in its transaction.
    pub(crate) async fn confirm_destructive(&self, store: &Store) -> Result<Option<String>> {
        match self {
            Self::Cli | Self::Key { .. } => Ok(None),
            Self::Admin(admin) => admin.confirmation(store).await,
        }
    }

    /// Keys need `scope` (or, with `None`, cannot do this at all); people and
    /// the command line are not limited by scopes.
    pub(crate) fn require(&self, scope: Option<Scope>) -> Result<()> {
        match self {
            Self::Key { key, .. } if !scope.is_some_and(|s| key.has(s)) => Err(missing(scope)),
            _ => Ok(()),
        }
    }

    /// The audit row of `event`, with this actor filled in.
    pub(crate) fn audit(&self, event: Event) -> AuditEvent<'_> {
        match self {
            Self::Cli => AuditEvent {
                client_addr: Some("cli"),
                ..AuditEvent::new(event)
            },
            Self::Admin(admin) => AuditEvent {
                actor_user_id: Some(&admin.user.id),
                client_addr: admin.client.addr.as_deref(),
                user_agent: admin.client.user_agent.as_deref(),
                ..AuditEvent::new(event)
            },
            Self::Key { key, client } => AuditEvent {
                actor_key_id: Some(&key.id),
                actor_key_name: Some(&key.name),
                client_addr: client.addr.as_deref(),
                user_agent: client.user_agent.as_deref(),
                ..AuditEvent::new(event)
            },
        }
    }
}

pub fn no_such_user() -> AppError {
    AppError::not_found("no-such-user", "There is no user with this id.")
}

fn last_admin(what: &str) -> AppError {
    AppError::conflict(
        "last-admin",
        format!("{what}: there must always be one enabled administrator with a passkey."),
    )
}

/// Entitlement names: short, lowercase, no spaces (they appear in licenses).
pub fn valid_entitlement(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b))
}

/// The pattern [`valid_entitlement`] accepts, for the API document.
pub const ENTITLEMENT_PATTERN: &str = "^[a-z0-9._:-]{1,64}$";

/// An expiry: RFC 3339, or a date meaning the end of that day (UTC).
pub fn parse_until(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).ok()?;
    Some(
        date.with_hms(23, 59, 59)
            .ok()?
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Grants (or re-grants with a new expiry) an entitlement.
pub async fn grant_entitlement(
    store: &Store,
    actor: &Actor<'_>,
    user_id: &str,
    name: &str,
    until: Option<i64>,
    max_devices: Option<i64>,
) -> Result<()> {
    actor.require(Some(Scope::EntitlementsWrite))?;
    if max_devices.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(AppError::Unprocessable(
            "invalid-max-devices",
            "max_devices is from 1 to 10000; leave it out for the service's default.".into(),
        ));
    }
    if !valid_entitlement(name) {
        return Err(AppError::Unprocessable(
            "invalid-entitlement",
            "Entitlement names use a-z, 0-9 and - _ . : (at most 64 characters).".into(),
        ));
    }
    if until.is_some_and(|t| t <= now()) {
        return Err(AppError::Unprocessable(
            "invalid-expiry",
            "The expiry is in the past; give a future date.".into(),
        ));
    }
    store.user_by_id(user_id).await?.ok_or_else(no_such_user)?;
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        target: Some(name),
        ..actor.audit(Event::EntitlementGranted)
    };
    store
        .grant_entitlement(user_id, name, until, max_devices, &audit, now())
        .await?;
    Ok(())
}

/// Removes an entitlement and revokes the licenses that carry it.
pub async fn remove_entitlement(
    store: &Store,
    actor: &Actor<'_>,
    user_id: &str,
    name: &str,
) -> Result<()> {
    actor.require(Some(Scope::EntitlementsWrite))?;
    let spend = actor.confirm_destructive(store).await?;
    store.user_by_id(user_id).await?.ok_or_else(no_such_user)?;
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        target: Some(name),
        ..actor.audit(Event::EntitlementRemoved)
    };
    match store
        .remove_entitlement(user_id, name, spend.as_deref(), &audit, now())
        .await?
    {
        Removal::Done(()) => {
            crate::metrics::revocation("entitlement");
            Ok(())
        }
        Removal::NotFound => Err(AppError::not_found(
            "no-such-entitlement",
            "This user does not have that entitlement.",
        )),
        Removal::Unconfirmed => Err(reauthentication_required()),
    }
}

/// Makes a user an admin or a plain user; the last enabled admin stays one.
/// Returns whether anything changed.
pub async fn set_role(store: &Store, actor: &Actor<'_>, user_id: &str, role: Role) -> Result<bool> {
    actor.require(None)?;
    let spend = actor.confirm_destructive(store).await?;
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        target: Some(role.as_str()),
        ..actor.audit(Event::UserRoleChanged)
    };
    match store
        .set_role(user_id, role, spend.as_deref(), &audit, now())
        .await?
    {
        AccountChange::Changed => Ok(true),
        AccountChange::Unchanged => Ok(false),
        AccountChange::NoSuchUser => Err(no_such_user()),
        AccountChange::LastAdmin => Err(last_admin("The last administrator cannot be demoted")),
        AccountChange::Unconfirmed => Err(reauthentication_required()),
    }
}

/// Disables a user (sessions end, licenses are revoked, sign-in is refused) or
/// enables them again. Returns whether anything changed.
pub async fn set_disabled(
    store: &Store,
    actor: &Actor<'_>,
    user_id: &str,
    disabled: bool,
) -> Result<bool> {
    actor.require(Some(Scope::UsersWrite))?;
    let spend = if disabled {
        actor.confirm_destructive(store).await?
    } else {
        None
    };
    let event = if disabled {
        Event::UserDisabled
    } else {
        Event::UserEnabled
    };
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        ..actor.audit(event)
    };
    match store
        .set_user_disabled(user_id, disabled, spend.as_deref(), &audit, now())
        .await?
    {
        AccountChange::Changed => {
            if disabled {
                crate::metrics::revocation("user");
            }
            Ok(true)
        }
        AccountChange::Unchanged => Ok(false),
        AccountChange::NoSuchUser => Err(no_such_user()),
        AccountChange::LastAdmin => Err(last_admin("The last administrator cannot be disabled")),
        AccountChange::Unconfirmed => Err(reauthentication_required()),
    }
}

/// Revokes a passkey; returns its owner.
pub async fn revoke_passkey(
    store: &Store,
    actor: &Actor<'_>,
    credential_id: &str,
) -> Result<String> {
    actor.require(None)?;
    let spend = actor.confirm_destructive(store).await?;
    let audit = AuditEvent {
        target: Some(credential_id),
        ..actor.audit(Event::PasskeyRevoked)
    };
    let rules = PasskeyRules {
        owner: None,
        keep_one: false,
    };
    match store
        .revoke_credential(
            credential_id,
            "revoked by an administrator",
            rules,
            spend.as_deref(),
            &audit,
            now(),
        )
        .await?
    {
        PasskeyRevocation::Revoked(owner) => {
            crate::metrics::revocation("passkey");
            Ok(owner)
        }
        PasskeyRevocation::NotFound => Err(AppError::not_found(
            "no-such-passkey",
            "There is no active passkey with this id.",
        )),
        PasskeyRevocation::LastPasskey | PasskeyRevocation::LastAdmin => {
            Err(last_admin("This is the last administrator's last passkey"))
        }
        PasskeyRevocation::Unconfirmed => Err(reauthentication_required()),
    }
}

/// Revokes a license and ends the session it was minted under.
pub async fn revoke_license(store: &Store, actor: &Actor<'_>, jti: &str) -> Result<LicenseRow> {
    actor.require(Some(Scope::LicensesRevoke))?;
    let spend = actor.confirm_destructive(store).await?;
    let audit = AuditEvent {
        target: Some(jti),
        ..actor.audit(Event::LicenseRevoked)
    };
    let reason = "revoked by an administrator";
    match store
        .revoke_license(jti, reason, spend.as_deref(), &audit, now())
        .await?
    {
        Removal::Done(license) => {
            crate::metrics::revocation("license");
            Ok(license)
        }
        Removal::NotFound => Err(AppError::not_found(
            "no-such-license",
            "There is no license with this id.",
        )),
        Removal::Unconfirmed => Err(reauthentication_required()),
    }
}
