//! Sign-in with a passkey: with a username, or discoverable (autofill).

use axum::extract::State;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use tower_sessions::Session;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PublicKeyCredential, WebauthnError,
};

use super::{begin_ceremony, ceremony_failed, clean_name, session, take_ceremony};
use crate::app::{AppJson, AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::license::jose::b64;
use crate::store::audit::AuditEvent;
use crate::store::credentials::UseOutcome;
use crate::store::now;

const KIND: &str = "login";

#[derive(Deserialize, Default)]
pub(crate) struct StartRequest {
    #[serde(default)]
    username: Option<String>,
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
    summary = "Start a sign-in (with a username, or discoverable for autofill)",
    request_body = crate::openapi::LoginStart,
    responses(
        (status = 200, description = "Request options", body = crate::openapi::WebAuthnOptions),
        (status = 400, description = "Invalid username", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    AppJson(request): AppJson<StartRequest>,
) -> Result<Json<Value>> {
    let username = match request.username.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(clean_name("username", name)?),
    };
    let (options, authentication) = state
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start authentication: {e}")))?;
    let mut options = serde_json::to_value(options).map_err(anyhow::Error::from)?;
    if let Some(object) = options.as_object_mut() {
        // The page chooses between autofill and a modal request, not the server.
        object.remove("mediation");
    }
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
            let allow: Vec<Value> = ids
                .iter()
                .map(|id| json!({"type": "public-key", "id": id}))
                .collect();
            if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
                public_key.insert("allowCredentials".into(), Value::Array(allow));
            }
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
    summary = "Finish a sign-in; rotates the session id",
    request_body = crate::openapi::CredentialJson,
    responses(
        (status = 200, description = "Signed in", body = crate::openapi::SignedIn),
        (status = 400, description = "Malformed assertion or unknown/finished ceremony", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Assertion refused, `unknown-credential`, `counter-regressed` or `account-disabled`", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfo,
    AppJson(credential): AppJson<PublicKeyCredential>,
) -> Result<Json<Value>> {
    let ceremony: Ceremony = take_ceremony(&state, &session, KIND).await?;
    super::check_credential_shape(&credential.id, &credential.raw_id, &credential.type_)?;
    let credential_id = b64(credential.get_credential_id());
    let audit_failure = |reason: &'static str, user: Option<String>| {
        let state = state.clone();
        let client = client.clone();
        let credential_id = credential_id.clone();
        async move {
            crate::metrics::ceremony("signin", reason);
            let event = AuditEvent {
                event: "signin.failure",
                target_user_id: user.as_deref(),
                target: Some(&credential_id),
                client_addr: client.addr.as_deref(),
                user_agent: client.user_agent.as_deref(),
                detail: Some(reason),
                ..AuditEvent::default()
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
                "this passkey does not belong to that user",
            ));
        }
    }
    // A user handle, when present, must name the passkey's owner (WebAuthn §7.2 step 6).
    if let Some(handle) = credential.get_user_unique_id() {
        let owner =
            webauthn_rs::prelude::Uuid::parse_str(&stored.user_id).map_err(anyhow::Error::from)?;
        if handle != owner.as_bytes() {
            audit_failure("user handle mismatch", Some(stored.user_id.clone())).await;
            return Err(AppError::unauthorized(
                "ceremony-failed",
                "the user handle does not match the passkey",
            ));
        }
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
            "this account is disabled",
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
        event: "signin.success",
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        target: Some(&credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: None,
    };
    state.store.audit(&event, now()).await?;
    Ok(Json(
        json!({"user_id": user.id, "username": user.username, "entitlements": entitlements}),
    ))
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
        event: "signin.counter_regression",
        target_user_id: Some(user_id),
        target: Some(credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::default()
    };
    if let Err(err) = state.store.audit(&event, now()).await {
        tracing::warn!(error = %err, "could not record a counter regression");
    }
    AppError::unauthorized(
        "counter-regressed",
        "this passkey's signature counter went backwards; it may have been cloned",
    )
}
