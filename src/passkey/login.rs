//! Sign-in with a passkey: with a username, or discoverable (autofill).

use axum::extract::State;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tower_sessions::Session;
use utoipa::ToSchema;
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, WebauthnError};

use super::credential::{AuthenticationCredential, PasskeyOptions};
use super::{begin_ceremony, ceremony_failed, clean_name, take_ceremony};
use crate::error::{AppError, Result};
use crate::http::session;
use crate::http::{AppJson, ClientInfo};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::credentials::UseOutcome;
use crate::store::now;
use latchkey_core::jose::b64;

const KIND: &str = "login";

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginStart {
    /// Omit (or leave empty) for a sign-in without a username: autofill or the
    /// browser's passkey picker.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    username: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SignedInUser {
    user_id: String,
    username: String,
    /// The entitlements in force now.
    entitlements: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Ceremony {
    authentication: DiscoverableAuthentication,
    /// Set when the sign-in named a user: only that user's passkeys may finish it.
    /// `Some(None)` is a username that matched nobody.
    expected_user: Option<Option<String>>,
}

#[utoipa::path(
    post,
    path = "/api/login/start",
    tag = "passkeys",
    operation_id = "login_start",
    summary = "Start a sign-in (with a username, or discoverable for autofill)",
    request_body = LoginStart,
    responses(
        (status = 200, description = "Request options", body = PasskeyOptions),
        (status = 422, description = "Invalid username", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    AppJson(request): AppJson<LoginStart>,
) -> Result<Json<PasskeyOptions>> {
    // No username (or only spaces) asks for a discoverable passkey.
    let username = match request.username.as_deref() {
        Some(name) if !name.trim().is_empty() || name.chars().any(char::is_control) => {
            Some(clean_name("username", name)?)
        }
        _ => None,
    };
    let (options, authentication) = state
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start authentication: {e}")))?;
    let mut options = PasskeyOptions::from_challenge(options)?;
    let expected_user = match &username {
        None => None,
        Some(name) => {
            let user = state
                .store
                .user_by_username(name)
                .await?
                .filter(|u| u.disabled_at.is_none());
            let ids = match &user {
                Some(user) => state
                    .store
                    .active_credentials(&user.id)
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
                None => Vec::new(),
            };
            // An unknown username gets the same shape of answer as a known one:
            // a stable, made-up credential id, so that probing reveals nothing.
            let ids = if ids.is_empty() {
                vec![fake_credential_id(&state, name)]
            } else {
                ids
            };
            options = options.allow_credentials(&ids);
            Some(user.map(|u| u.id))
        }
    };
    begin_ceremony(
        &state,
        &session,
        KIND,
        &Ceremony {
            authentication,
            expected_user,
        },
    )
    .await?;
    Ok(Json(options))
}

fn fake_credential_id(state: &AppState, username: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(state.fake_credential_key.as_slice()) else {
        return b64([0u8; 16]);
    };
    mac.update(crate::store::users::username_key(username).as_bytes());
    b64(&mac.finalize().into_bytes()[..16])
}

#[utoipa::path(
    post,
    path = "/api/login/finish",
    tag = "passkeys",
    operation_id = "login_finish",
    summary = "Finish a sign-in; rotates the session id",
    request_body = AuthenticationCredential,
    responses(
        (status = 200, description = "Signed in", body = SignedInUser),
        (status = 400, description = "Malformed assertion or unknown/finished ceremony", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Assertion refused, `unknown-credential`, `counter-regressed` or `account-disabled`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfo,
    AppJson(credential): AppJson<AuthenticationCredential>,
) -> Result<Json<SignedInUser>> {
    let ceremony: Ceremony = take_ceremony(&state, &session, KIND).await?;
    let credential_id = credential.credential_id();
    let credential = credential.into_webauthn()?;
    let audit_failure = |reason: &'static str, user: Option<String>| {
        let state = state.clone();
        let client = client.clone();
        let credential_id = credential_id.clone();
        async move {
            crate::metrics::ceremony("signin", reason);
            let event = AuditEvent {
                target_user_id: user.as_deref(),
                target: Some(&credential_id),
                client_addr: client.addr.as_deref(),
                user_agent: client.user_agent.as_deref(),
                detail: Some(reason),
                ..AuditEvent::new(Event::SigninFailure)
            };
            if let Err(err) = state.store.audit(&event, now()).await {
                tracing::warn!(error = %err, "could not record a failed sign-in");
            }
        }
    };
    let unknown = || AppError::UnknownCredential {
        credential_id: credential_id.clone(),
    };

    let stored = match state.store.credential(&credential_id).await? {
        Some(c) if c.revoked_at.is_none() => c,
        _ => {
            audit_failure("unknown or revoked passkey", None).await;
            return Err(unknown());
        }
    };
    if let Some(expected) = &ceremony.expected_user {
        if expected.as_deref() != Some(stored.user_id.as_str()) {
            audit_failure("passkey of another user", Some(stored.user_id.clone())).await;
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
                audit_failure("user handle mismatch", Some(stored.user_id.clone())).await;
                return Err(AppError::unauthorized(
                    "ceremony-failed",
                    "The passkey's user handle does not match its account.",
                ));
            }
        }
        None if ceremony.expected_user.is_none() => {
            audit_failure("user handle missing", Some(stored.user_id.clone())).await;
            return Err(AppError::unauthorized(
                "ceremony-failed",
                "A sign-in without a username needs the passkey's user handle, and the answer had none.",
            ));
        }
        None => {}
    }
    let user = state
        .store
        .user_by_id(&stored.user_id)
        .await?
        .ok_or_else(unknown)?;
    if user.disabled_at.is_some() {
        audit_failure("account disabled", Some(user.id.clone())).await;
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
            return Err(counter_regressed(&state, &user.id, &credential_id, &client).await);
        }
        Err(err) => {
            audit_failure("assertion rejected", Some(user.id.clone())).await;
            return Err(ceremony_failed(err));
        }
    };
    passkey.update_credential(&result);
    let passkey_json = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
    match state
        .store
        .record_credential_use(
            &credential_id,
            result.counter(),
            &passkey_json,
            result.backup_state(),
            now(),
        )
        .await?
    {
        UseOutcome::Recorded => {}
        UseOutcome::CounterRegressed => {
            return Err(counter_regressed(&state, &user.id, &credential_id, &client).await);
        }
        UseOutcome::Gone => {
            audit_failure("passkey revoked during sign-in", Some(user.id.clone())).await;
            return Err(unknown());
        }
    }
    session::start(&session, &user.id, &credential_id, &client).await?;
    let entitlements: Vec<String> = state
        .store
        .current_entitlements(&user.id, now())
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let event = AuditEvent {
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        target: Some(&credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::SigninSuccess)
    };
    state.store.audit(&event, now()).await?;
    Ok(Json(SignedInUser {
        user_id: user.id,
        username: user.username,
        entitlements,
    }))
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
        "sign-in refused: the passkey's signature counter did not increase (possible cloned authenticator)"
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
