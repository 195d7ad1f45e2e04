//! Passkey assertions, for a sign-in or a step-up: starting one, and checking
//! the answer with every rule WebAuthn Level 3 §7.2 and this service require
//! (the credential is known and active, belongs to the expected user, carries
//! a matching user handle, its user is enabled, its signature verifies, and
//! its counter moves forward, which is then stored).

use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, WebauthnError};

use super::credential::{AuthenticationCredential, PasskeyOptions};
use super::{
    begin_ceremony, ceremony_failed, ceremony_gone, ceremony_key, pending_ceremony, spend_ceremony,
    Pending, SessionCookie,
};
use crate::error::{AppError, Result};
use crate::http::session::{session_cookie, signed_in_data};
use crate::http::ClientInfo;
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::credentials::{CredentialUse, UseOutcome};
use crate::store::now;
use crate::store::sessions::{NewSignIn, SignInOutcome};
use crate::store::users::User;

#[derive(Serialize, Deserialize)]
struct Ceremony {
    authentication: DiscoverableAuthentication,
    /// Set when a user was named: only that user's passkeys may finish it.
    /// `Some(None)` is a username that matched nobody.
    expected_user: Option<Option<String>>,
}

/// How current a passkey's "last used" time is kept: a sign-in within this
/// many seconds of the recorded one does not write it again.
const LAST_USE_PRECISION_SECS: i64 = 60;

/// Starts an assertion of `kind`; `allow` limits it to these credential ids.
pub(super) async fn start(
    state: &AppState,
    session: &Session,
    kind: &str,
    expected_user: Option<Option<String>>,
    allow: Option<&[String]>,
) -> Result<(SessionCookie, PasskeyOptions)> {
    let (options, authentication) = state
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start authentication: {e}")))?;
    let mut options = PasskeyOptions::from_challenge(options)?;
    if let Some(ids) = allow {
        options = options.allow_credentials(ids);
    }
    let ceremony = Ceremony {
        authentication,
        expected_user,
    };
    let cookie = begin_ceremony(state, session, kind, &ceremony).await?;
    Ok((cookie, options))
}

/// A verified assertion; nothing of it is written yet.
pub(super) struct Verified {
    pub user: User,
    pub credential_id: String,
    /// The ceremony it answered, still in the session.
    ceremony_id: String,
    /// The passkey's new counter and state, when they must be stored.
    credential_use: Option<CredentialUse>,
}

/// Checks the answer to the assertion of `kind` started in this session and
/// writes nothing when it holds: the caller commits it, which also takes the
/// ceremony ([`sign_in`], [`record_use`]). A refused answer spends the
/// ceremony and is audited (each with its reason) and answered 401 or 422.
pub(super) async fn finish(
    state: &AppState,
    session: &Session,
    kind: &'static str,
    credential: AuthenticationCredential,
    client: &ClientInfo,
) -> Result<Verified> {
    let pending: Pending<Ceremony> = pending_ceremony(session, kind).await?;
    let checked = check(state, pending, kind, credential, client).await;
    if checked.is_err() {
        // A refused answer ends its ceremony: the next try starts again.
        session.remove_value(&ceremony_key(kind)).await?;
    }
    checked
}

async fn check(
    state: &AppState,
    pending: Pending<Ceremony>,
    kind: &'static str,
    credential: AuthenticationCredential,
    client: &ClientInfo,
) -> Result<Verified> {
    let ceremony = pending.state;
    let credential_id = credential.credential_id();
    let credential = credential.into_webauthn()?;
    let failed = |reason: &'static str, user: Option<String>| {
        record_failure(state, client, kind, credential_id.clone(), reason, user)
    };
    let unknown = || AppError::UnknownCredential {
        credential_id: credential_id.clone(),
    };

    let (stored, user) = match state.store.credential_with_owner(&credential_id).await? {
        Some((c, user)) if c.revoked_at.is_none() => (c, user),
        _ => {
            failed("unknown or revoked passkey", None).await;
            return Err(unknown());
        }
    };
    if let Some(expected) = &ceremony.expected_user {
        if expected.as_deref() != Some(stored.user_id.as_str()) {
            failed("passkey of another user", Some(stored.user_id.clone())).await;
            return Err(AppError::unauthorized(
                "ceremony-failed",
                "This passkey belongs to another account.",
            ));
        }
    }
    // WebAuthn §7.2 step 6: a user handle, when present, must name the passkey's
    // owner; when nobody was named before the ceremony, it must be present.
    match credential.get_user_unique_id() {
        Some(handle) => {
            let owner = webauthn_rs::prelude::Uuid::parse_str(&stored.user_id)
                .map_err(anyhow::Error::from)?;
            if handle != owner.as_bytes() {
                failed("user handle mismatch", Some(stored.user_id.clone())).await;
                return Err(AppError::unauthorized(
                    "ceremony-failed",
                    "The passkey's user handle does not match its account.",
                ));
            }
        }
        None if ceremony.expected_user.is_none() => {
            failed("user handle missing", Some(stored.user_id.clone())).await;
            return Err(AppError::unauthorized(
                "ceremony-failed",
                "A sign-in without a username needs the passkey's user handle, and the answer had none.",
            ));
        }
        None => {}
    }
    if user.disabled_at.is_some() {
        failed("account disabled", Some(user.id.clone())).await;
        return Err(AppError::unauthorized(
            "account-disabled",
            "This account is disabled; ask an administrator.",
        ));
    }
    let mut passkey: Passkey =
        serde_json::from_str(&stored.passkey).map_err(anyhow::Error::from)?;
    let result = match state.webauthn.finish_discoverable_authentication_v2(
        &credential,
        ceremony.authentication,
        &passkey,
    ) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            return Err(counter_regressed(state, &user.id, &credential_id, client).await);
        }
        Err(err) => {
            failed("assertion rejected", Some(user.id.clone())).await;
            return Err(ceremony_failed(err));
        }
    };
    let changed = passkey.update_credential(&result) == Some(true);
    // A synced passkey reports counter 0 and the same backup state each time:
    // then nothing about it changed but its last use, which is kept to the
    // minute, so most sign-ins skip this write. A counter that moves, a new
    // backup state or a stale last use is written with its checks as before.
    let now = now();
    let unchanged = !changed
        && result.counter() == 0
        && stored.counter == 0
        && result.backup_state() == stored.backup_state
        && stored
            .last_used_at
            .is_some_and(|at| now - at < LAST_USE_PRECISION_SECS);
    let credential_use = if unchanged {
        None
    } else {
        Some(CredentialUse {
            counter: result.counter(),
            passkey: serde_json::to_string(&passkey).map_err(anyhow::Error::from)?,
            backup_state: result.backup_state(),
            at: now,
        })
    };
    Ok(Verified {
        user,
        credential_id,
        ceremony_id: pending.id,
        credential_use,
    })
}

/// Commits a verified sign-in in one write: the session that started it
/// becomes the signed-in one under a new id (only while it still holds the
/// ceremony, and the passkey and its user are still active), the passkey's
/// use is recorded when it changed, and the sign-in is audited. Returns the
/// `Set-Cookie` value with the new id.
///
/// The session layer's copy of the session is left untouched, so the layer
/// writes nothing more and sends no cookie of its own.
pub(super) async fn sign_in(
    state: &AppState,
    session: &Session,
    verified: &Verified,
    client: &ClientInfo,
) -> Result<SessionCookie> {
    let old_id = session.id().ok_or_else(ceremony_gone)?;
    let new_id = tower_sessions::session::Id::default();
    let now = now();
    let (user, credential_id) = (&verified.user, &verified.credential_id);
    let (login_id, data) = signed_in_data(&user.id, credential_id, client, now);
    let event = AuditEvent {
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        target: Some(credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::SigninSuccess)
    };
    let outcome = state
        .store
        .sign_in(NewSignIn {
            old_id: &old_id,
            new_id: &new_id,
            ceremony_id: &verified.ceremony_id,
            user_id: &user.id,
            login_id: &login_id,
            credential_id,
            client_addr: client.addr.as_deref(),
            user_agent: client.user_agent.as_deref(),
            data: serde_json::to_string(&data).map_err(anyhow::Error::from)?,
            expires_at: now + state.settings.session_ttl_secs,
            credential_use: verified.credential_use.clone(),
            audit: &event,
            at: now,
        })
        .await?;
    match outcome {
        SignInOutcome::Done => {
            let cookie = session_cookie(&state.settings, &new_id)?;
            Ok(SessionCookie(Some(cookie)))
        }
        SignInOutcome::CeremonyGone => Err(ceremony_gone()),
        SignInOutcome::CounterRegressed => {
            Err(counter_regressed(state, &user.id, credential_id, client).await)
        }
        SignInOutcome::PasskeyGone => {
            Err(revoked_meanwhile(state, client, "login", verified).await)
        }
    }
}

/// Commits a verified assertion that opens no session (a step-up): takes
/// the ceremony, then records the passkey's use when it changed.
pub(super) async fn record_use(
    state: &AppState,
    session: &Session,
    kind: &'static str,
    verified: &Verified,
    client: &ClientInfo,
) -> Result<()> {
    spend_ceremony(state, session, kind, &verified.ceremony_id).await?;
    let Some(used) = &verified.credential_use else {
        return Ok(());
    };
    let (user_id, credential_id) = (&verified.user.id, &verified.credential_id);
    match state
        .store
        .record_credential_use(
            credential_id,
            used.counter,
            &used.passkey,
            used.backup_state,
            used.at,
        )
        .await?
    {
        UseOutcome::Recorded => Ok(()),
        UseOutcome::CounterRegressed => {
            Err(counter_regressed(state, user_id, credential_id, client).await)
        }
        UseOutcome::Gone => Err(revoked_meanwhile(state, client, kind, verified).await),
    }
}

/// A passkey revoked (or its user disabled) while its assertion was being
/// checked: recorded as a failure, answered `unknown-credential`.
async fn revoked_meanwhile(
    state: &AppState,
    client: &ClientInfo,
    kind: &'static str,
    verified: &Verified,
) -> AppError {
    let (user_id, credential_id) = (&verified.user.id, &verified.credential_id);
    let reason = "passkey revoked during the ceremony";
    record_failure(
        state,
        client,
        kind,
        credential_id.clone(),
        reason,
        Some(user_id.clone()),
    )
    .await;
    AppError::UnknownCredential {
        credential_id: credential_id.clone(),
    }
}

/// Counts and (within the audit log's per-address allowance) records a failed assertion.
async fn record_failure(
    state: &AppState,
    client: &ClientInfo,
    kind: &'static str,
    credential_id: String,
    reason: &'static str,
    user: Option<String>,
) {
    crate::metrics::ceremony(kind, reason);
    let Some(detail) = state.audit_throttle.admit(client.addr.as_deref(), reason) else {
        return;
    };
    let event = AuditEvent {
        target_user_id: user.as_deref(),
        target: Some(&credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: Some(&detail),
        ..AuditEvent::new(Event::SigninFailure)
    };
    if let Err(err) = state.store.audit(&event, now()).await {
        tracing::warn!(error = %err, "could not record a failed passkey assertion");
    }
}

async fn counter_regressed(
    state: &AppState,
    user_id: &str,
    credential_id: &str,
    client: &ClientInfo,
) -> AppError {
    tracing::warn!(
        security = true,
        user_id,
        "passkey refused: its signature counter did not increase (possible cloned authenticator)"
    );
    let event = AuditEvent {
        target_user_id: Some(user_id),
        target: Some(credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::SigninCounterRegression)
    };
    if let Err(err) = state.store.audit(&event, now()).await {
        tracing::warn!(error = %err, "could not record a counter regression");
    }
    AppError::unauthorized(
        "counter-regressed",
        "This passkey's signature counter went backwards, so it may have been copied; use another passkey or ask an administrator.",
    )
}
