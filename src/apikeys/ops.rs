//! Making, listing and revoking keys: shared by the admin API and
//! `latchkey apikey …`. A key is a standing credential, so making one counts
//! as a destructive action (a recent passkey sign-in through the API), and
//! keys cannot make or revoke keys.

use super::{secret, Scope};
use crate::admin::ops::Actor;
use crate::error::{AppError, Result};
use crate::store::apikeys::{ApiKeyRow, KeyRevocation, NewApiKey};
use crate::store::audit::Event;
use crate::store::{now, Store};

/// A key just made: its record and the secret, which is never shown again.
pub struct Created {
    pub key: ApiKeyRow,
    pub secret: String,
}

/// Checks a key name: 1 to 64 characters, no control characters.
fn clean_name(name: &str) -> Result<String> {
    crate::passkey::clean_name("key name", name)
}

pub async fn create(
    store: &Store,
    actor: &Actor<'_>,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<i64>,
) -> Result<Created> {
    actor.require(None)?;
    let name = clean_name(name)?;
    if scopes.is_empty() {
        return Err(AppError::Unprocessable(
            "invalid-scopes",
            "Give the key at least one scope.".into(),
        ));
    }
    if expires_at.is_some_and(|t| t <= now()) {
        return Err(AppError::Unprocessable(
            "invalid-expiry",
            "The expiry is in the past; give a future time.".into(),
        ));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    let scope_text = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let secret = secret::generate();
    let id = format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let hash = secret::hash(&secret);
    let hint = secret::hint(&secret);
    let created_by = match actor {
        Actor::Admin(admin) => Some(admin.user.id.as_str()),
        _ => None,
    };
    let audit = crate::store::audit::AuditEvent {
        target: Some(&id),
        detail: Some(&scope_text),
        ..actor.audit(Event::ApiKeyCreated)
    };
    let spend = actor.confirm_destructive(store).await?;
    let now = now();
    let stored = store
        .create_api_key(
            NewApiKey {
                id: &id,
                name: &name,
                secret_hash: &hash,
                hint: &hint,
                scopes: &scope_text,
                created_by,
                expires_at,
            },
            spend.as_deref(),
            &audit,
            now,
        )
        .await?;
    if !stored {
        return Err(crate::admin::reauthentication_required());
    }
    let key = ApiKeyRow {
        id,
        name,
        hint,
        scopes: scope_text,
        created_by: created_by.map(str::to_owned),
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    Ok(Created { key, secret })
}

pub async fn revoke(store: &Store, actor: &Actor<'_>, id: &str) -> Result<()> {
    actor.require(None)?;
    let spend = actor.confirm_destructive(store).await?;
    let audit = crate::store::audit::AuditEvent {
        target: Some(id),
        ..actor.audit(Event::ApiKeyRevoked)
    };
    match store
        .revoke_api_key(id, spend.as_deref(), &audit, now())
        .await?
    {
        KeyRevocation::Revoked => Ok(()),
        KeyRevocation::NotFound => Err(AppError::not_found(
            "no-such-api-key",
            "There is no unrevoked API key with this id.",
        )),
        KeyRevocation::Unconfirmed => Err(crate::admin::reauthentication_required()),
    }
}

/// A lifetime such as `90d` or an RFC 3339 time / date, as an expiry.
pub fn parse_expiry(text: &str) -> Option<i64> {
    if let Ok(span) = humantime::parse_duration(text) {
        let secs = i64::try_from(span.as_secs()).ok()?;
        return now().checked_add(secs);
    }
    crate::admin::ops::parse_until(text)
}
