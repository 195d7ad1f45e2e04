//! Registration: a new account with its first passkey, or another passkey for
//! the signed-in user.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use utoipa::ToSchema;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential, Uuid, WebauthnError};

use super::credential::{
    authenticator_info, credential_jwk, PasskeyOptions, RegistrationCredential,
};
use super::stepup::{require_step_up, step_up_required};
use super::{begin_ceremony, ceremony_failed, clean_name, take_ceremony, NameText, SessionCookie};
use crate::error::{AppError, Result};
use crate::http::session::{self, SignedIn};
use crate::http::{AppJson, ClientInfo};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::credentials::{NewCredential, NewUser, RegisterError};
use crate::store::now;
use crate::usernames;
use latchkey_core::jose::b64;

pub(super) const NEW_ACCOUNT: &str = "register";
const ADD_PASSKEY: &str = "add-passkey";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterStart {
    /// At most 64 characters, not only spaces, no control characters; unique regardless of case.
    username: NameText,
    /// Shown by authenticators; the username when absent.
    #[serde(default)]
    display_name: Option<NameText>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    user_id: String,
    username: String,
    credential_id: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasskeyAdded {
    credential_id: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Ceremony {
    pub(super) registration: PasskeyRegistration,
    pub(super) user_id: String,
    pub(super) username: String,
    pub(super) display_name: String,
    /// The hashed enrollment code of a user made through the admin API.
    #[serde(default)]
    pub(super) enrollment: Option<String>,
    /// The enrollment code is a recovery link for an existing user.
    #[serde(default)]
    pub(super) recovery: bool,
    /// That link revokes the user's other passkeys, sessions and licenses.
    #[serde(default)]
    pub(super) revoke_others: bool,
    /// The hashed recovery code this ceremony spends when it finishes.
    #[serde(default)]
    pub(super) recovery_code: Option<String>,
    /// Adding a passkey: whether the session had confirmed a passkey (always, now).
    #[serde(default)]
    pub(super) stepped_up: bool,
}

fn username_taken() -> AppError {
    AppError::conflict("username-taken", "This username is taken; choose another.")
}

#[utoipa::path(
    post,
    path = "/api/register/start",
    tag = "passkeys",
    operation_id = "register_start",
    summary = "Start registering a new account",
    request_body = RegisterStart,
    responses(
        (status = 200, description = "Creation options", body = PasskeyOptions),
        (status = 409, description = "Username taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    AppJson(request): AppJson<RegisterStart>,
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    let name = usernames::parse(request.username.0.trim())
        .map_err(|e| AppError::Unprocessable("invalid-name", e.to_string()))?;
    let display_name = match &request.display_name {
        Some(name) => clean_name("display name", &name.0)?,
        None => name.display.clone(),
    };
    if state.store.user_by_username_key(&name.key).await?.is_some()
        || state.store.username_skeleton_taken(&name.skeleton).await?
    {
        return Err(username_taken());
    }
    let username = name.display;
    let user_id = Uuid::new_v4();
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user_id, &username, &display_name, None)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start registration: {e}")))?;
    let ceremony = Ceremony {
        registration,
        user_id: user_id.to_string(),
        username,
        display_name,
        stepped_up: false,
        enrollment: None,
        recovery: false,
        revoke_others: false,
        recovery_code: None,
    };
    let cookie = begin_ceremony(&state, &session, NEW_ACCOUNT, &ceremony).await?;
    Ok((
        cookie,
        Json(PasskeyOptions::from_challenge(options)?.require_resident_key()),
    ))
}

#[utoipa::path(
    post,
    path = "/api/register/finish",
    tag = "passkeys",
    operation_id = "register_finish",
    summary = "Finish registration; signs the new user in",
    request_body = RegistrationCredential,
    responses(
        (status = 201, description = "Registered and signed in", body = Registered),
        (status = 400, description = "Malformed credential or unknown/finished ceremony", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Attestation refused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken or credential already registered", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfo,
    AppJson(credential): AppJson<RegistrationCredential>,
) -> Result<(StatusCode, Json<Registered>)> {
    let ceremony: Ceremony = take_ceremony(&state, &session, NEW_ACCOUNT).await?;
    // An enrolling or recovering user exists already; anyone else is created with the passkey,
    // their name checked again: the rules may have changed since the ceremony started.
    let existing_user = ceremony.enrollment.is_some() || ceremony.recovery_code.is_some();
    let name = match existing_user {
        true => None,
        false => Some(
            usernames::parse(&ceremony.username)
                .map_err(|e| AppError::Unprocessable("invalid-name", e.to_string()))?,
        ),
    };
    let new_user = name.as_ref().map(|name| NewUser {
        id: &ceremony.user_id,
        username: &ceremony.username,
        username_key: &name.key,
        username_skeleton: &name.skeleton,
        display_name: &ceremony.display_name,
    });
    let credential = credential.into_webauthn()?;
    let credential_id =
        store_passkey(&state, &ceremony, new_user, &credential, None, &client).await?;
    session::start(&session, &ceremony.user_id, &credential_id, &client).await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            user_id: ceremony.user_id,
            username: ceremony.username,
            credential_id,
        }),
    ))
}

/// Verifies the attestation and stores the passkey (and the new user) with its audit row.
async fn store_passkey(
    state: &AppState,
    ceremony: &Ceremony,
    new_user: Option<NewUser<'_>>,
    credential: &RegisterPublicKeyCredential,
    spend: Option<&str>,
    client: &ClientInfo,
) -> Result<String> {
    let already = || AppError::conflict("credential-exists", "This passkey is already registered.");
    let passkey = match state
        .webauthn
        .finish_passkey_registration(credential, &ceremony.registration)
    {
        Ok(passkey) => passkey,
        // webauthn-rs reports a credential from the exclude list with this error.
        Err(WebauthnError::CredentialAlteredAlgFromRequest)
            if state
                .store
                .credential(&b64(&credential.raw_id))
                .await?
                .is_some() =>
        {
            return Err(already());
        }
        Err(err) => return Err(ceremony_failed(err)),
    };
    if passkey.cred_id().len() > super::credential::MAX_CREDENTIAL_ID_BYTES {
        return Err(AppError::Unprocessable(
            "malformed-credential",
            "Credential ids are at most 1023 bytes.".into(),
        ));
    }
    let info = authenticator_info(&credential.response.attestation_object)?;
    let credential_id = b64(passkey.cred_id().as_slice());
    let passkey_json = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
    let jwk = credential_jwk(&passkey).to_string();
    let name = super::default_passkey_name(&info.aaguid, client.user_agent.as_deref());
    let record = NewCredential {
        id: &credential_id,
        name: &name,
        passkey: &passkey_json,
        public_jwk: &jwk,
        counter: 0,
        aaguid: &info.aaguid,
        backup_eligible: info.backup_eligible,
        backup_state: info.backup_state,
        // The first passkey of a new (or enrolling) account, or one added under a step-up.
        added_with_step_up: new_user.is_some()
            || ceremony.enrollment.is_some()
            || ceremony.stepped_up,
        enrollment: ceremony.enrollment.as_deref(),
        recovery_code: ceremony.recovery_code.as_deref(),
    };
    let is_new_user = new_user.is_some() || ceremony.enrollment.is_some();
    let audit = AuditEvent {
        actor_user_id: Some(&ceremony.user_id),
        target_user_id: Some(&ceremony.user_id),
        target: Some(&credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: ceremony
            .recovery
            .then_some(if ceremony.recovery_code.is_some() {
                "with a recovery code; other passkeys kept"
            } else if ceremony.revoke_others {
                "other passkeys, sessions and licenses revoked"
            } else {
                "other passkeys kept"
            }),
        ..AuditEvent::new(if ceremony.recovery {
            Event::Recovered
        } else if is_new_user {
            Event::Registration
        } else {
            Event::PasskeyAdded
        })
    };
    match state
        .store
        .register_credential(&ceremony.user_id, new_user, record, spend, &audit, now())
        .await
    {
        Ok(()) => {}
        Err(RegisterError::UsernameTaken) => return Err(username_taken()),
        Err(RegisterError::CredentialExists) => return Err(already()),
        Err(RegisterError::EnrollmentGone) if ceremony.recovery_code.is_some() => {
            return Err(super::recovery::code_refused())
        }
        Err(RegisterError::EnrollmentGone) => return Err(super::enroll::code_gone()),
        Err(RegisterError::Unconfirmed) => return Err(step_up_required()),
        Err(RegisterError::Store(err)) => return Err(err.into()),
    }
    if ceremony.recovery {
        // A recovery that revoked other passkeys changed the status lists.
        state.status.refresh(&state.store).await?;
    }
    crate::metrics::ceremony(
        if ceremony.recovery {
            "recovery"
        } else if is_new_user {
            "registration"
        } else {
            "add-passkey"
        },
        "success",
    );
    Ok(credential_id)
}

#[utoipa::path(
    post,
    path = "/api/me/passkeys/start",
    tag = "passkeys",
    operation_id = "add_passkey_start",
    summary = "Start adding a passkey to the signed-in account (needs a step-up)",
    security(("session" = [])),
    responses(
        (status = 200, description = "Creation options", body = PasskeyOptions),
    )
)]
pub(crate) async fn add_start(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    // Ask for the confirmation before the authenticator's prompt, not after it.
    if let Some(confirmation) = require_step_up(&state, &signed_in)? {
        if state.store.confirmation_spent(&confirmation).await? {
            return Err(step_up_required());
        }
    }
    let user = signed_in.enabled_user(&state.store).await?;
    let existing = state.store.active_credentials(&user.id).await?;
    let exclude = existing
        .iter()
        .filter_map(|c| latchkey_core::jose::unb64(&c.id))
        .collect();
    let user_uuid = Uuid::parse_str(&user.id).map_err(anyhow::Error::from)?;
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user_uuid, &user.username, &user.display_name, Some(exclude))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start registration: {e}")))?;
    let ceremony = Ceremony {
        registration,
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        stepped_up: true,
        enrollment: None,
        recovery: false,
        revoke_others: false,
        recovery_code: None,
    };
    let cookie = begin_ceremony(&state, &signed_in.session, ADD_PASSKEY, &ceremony).await?;
    Ok((
        cookie,
        Json(PasskeyOptions::from_challenge(options)?.require_resident_key()),
    ))
}

#[utoipa::path(
    post,
    path = "/api/me/passkeys/finish",
    tag = "passkeys",
    operation_id = "add_passkey_finish",
    summary = "Finish adding a passkey (needs a step-up)",
    security(("session" = [])),
    request_body = RegistrationCredential,
    responses(
        (status = 201, description = "Added", body = PasskeyAdded),
        (status = 400, description = "Malformed credential or unknown ceremony", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in, or the attestation was refused", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Credential already registered", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_finish(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    AppJson(credential): AppJson<RegistrationCredential>,
) -> Result<(StatusCode, Json<PasskeyAdded>)> {
    let spend = require_step_up(&state, &signed_in)?;
    let ceremony: Ceremony = take_ceremony(&state, &signed_in.session, ADD_PASSKEY).await?;
    if ceremony.user_id != signed_in.user_id {
        return Err(AppError::Unprocessable(
            "ceremony-not-found",
            "This passkey request belongs to another sign-in; start again.".into(),
        ));
    }
    let credential = credential.into_webauthn()?;
    let credential_id = store_passkey(
        &state,
        &ceremony,
        None,
        &credential,
        spend.as_deref(),
        &client,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(PasskeyAdded { credential_id })))
}
