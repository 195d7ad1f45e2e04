//! Registration: a new account with its first passkey, or another passkey for
//! the signed-in user.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_sessions::Session;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential, Uuid, WebauthnError};

use super::session::{self, SignedIn};
use super::{
    authenticator_info, begin_ceremony, ceremony_failed, clean_name, credential_jwk,
    require_resident_key, take_ceremony,
};
use crate::app::{AppJson, AppState, ClientInfo};
use crate::error::{AppError, Result};
use crate::license::jose::b64;
use crate::store::audit::AuditEvent;
use crate::store::credentials::{NewCredential, NewUser, RegisterError};
use crate::store::now;

const NEW_ACCOUNT: &str = "register";
const ADD_PASSKEY: &str = "add-passkey";

#[derive(Deserialize)]
pub(crate) struct StartRequest {
    username: String,
    display_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Ceremony {
    registration: PasskeyRegistration,
    user_id: String,
    username: String,
    display_name: String,
}

#[utoipa::path(
    post,
    path = "/api/register/start",
    tag = "passkeys",
    summary = "Start registering a new account",
    request_body = crate::openapi::RegisterStart,
    responses(
        (status = 200, description = "Creation options", body = crate::openapi::WebAuthnOptions),
        (status = 400, description = "Invalid username", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    AppJson(request): AppJson<StartRequest>,
) -> Result<Json<Value>> {
    let username = clean_name("username", &request.username)?;
    let display_name = match &request.display_name {
        Some(name) if !name.trim().is_empty() => clean_name("display_name", name)?,
        _ => username.clone(),
    };
    if state.store.user_by_username(&username).await?.is_some() {
        return Err(AppError::conflict(
            "username-taken",
            "this username is taken; choose another",
        ));
    }
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
    };
    begin_ceremony(&state, &session, NEW_ACCOUNT, &ceremony).await?;
    let mut options = serde_json::to_value(options).map_err(anyhow::Error::from)?;
    require_resident_key(&mut options);
    Ok(Json(options))
}

#[utoipa::path(
    post,
    path = "/api/register/finish",
    tag = "passkeys",
    summary = "Finish registration; signs the new user in",
    request_body = crate::openapi::CredentialJson,
    responses(
        (status = 201, description = "Registered and signed in", body = crate::openapi::Registered),
        (status = 400, description = "Malformed credential or unknown/finished ceremony", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Attestation refused", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken or credential already registered", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfo,
    AppJson(credential): AppJson<RegisterPublicKeyCredential>,
) -> Result<(StatusCode, Json<Value>)> {
    let ceremony: Ceremony = take_ceremony(&state, &session, NEW_ACCOUNT).await?;
    let new_user = NewUser {
        id: &ceremony.user_id,
        username: &ceremony.username,
        display_name: &ceremony.display_name,
    };
    let credential_id =
        store_passkey(&state, &ceremony, Some(new_user), &credential, &client).await?;
    session::start(&session, &ceremony.user_id, &credential_id, &client).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"user_id": ceremony.user_id, "username": ceremony.username, "credential_id": credential_id}),
        ),
    ))
}

/// Verifies the attestation and stores the passkey (and the new user).
async fn store_passkey(
    state: &AppState,
    ceremony: &Ceremony,
    new_user: Option<NewUser<'_>>,
    credential: &RegisterPublicKeyCredential,
    client: &ClientInfo,
) -> Result<String> {
    super::check_credential_shape(&credential.id, &credential.raw_id, &credential.type_)?;
    if credential.raw_id.len() > super::MAX_CREDENTIAL_ID_BYTES {
        return Err(AppError::bad_request(
            "malformed-credential",
            "credential ids are at most 1023 bytes",
        ));
    }
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
            return Err(AppError::conflict(
                "credential-exists",
                "this passkey is already registered",
            ));
        }
        Err(err) => return Err(ceremony_failed(err)),
    };
    if passkey.cred_id().len() > super::MAX_CREDENTIAL_ID_BYTES {
        return Err(AppError::bad_request(
            "malformed-credential",
            "credential ids are at most 1023 bytes",
        ));
    }
    let info = authenticator_info(&credential.response.attestation_object)?;
    let credential_id = b64(passkey.cred_id().as_slice());
    let passkey_json = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
    let jwk = credential_jwk(&passkey).to_string();
    let name = super::default_passkey_name(client.user_agent.as_deref());
    let record = NewCredential {
        id: &credential_id,
        name: &name,
        passkey: &passkey_json,
        public_jwk: &jwk,
        counter: 0,
        aaguid: &info.aaguid,
        backup_eligible: info.backup_eligible,
        backup_state: info.backup_state,
    };
    let is_new_user = new_user.is_some();
    match state
        .store
        .register_credential(&ceremony.user_id, new_user, record, now())
        .await
    {
        Ok(()) => {}
        Err(RegisterError::UsernameTaken) => {
            return Err(AppError::conflict(
                "username-taken",
                "this username is taken; choose another",
            ))
        }
        Err(RegisterError::CredentialExists) => {
            return Err(AppError::conflict(
                "credential-exists",
                "this passkey is already registered",
            ))
        }
        Err(RegisterError::Db(err)) => return Err(err.into()),
    }
    let event = AuditEvent {
        event: if is_new_user {
            "registration"
        } else {
            "passkey.added"
        },
        actor_user_id: Some(&ceremony.user_id),
        target_user_id: Some(&ceremony.user_id),
        target: Some(&credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: None,
    };
    state.store.audit(&event, now()).await?;
    crate::metrics::ceremony(
        if is_new_user {
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
    summary = "Start adding a passkey to the signed-in account",
    responses(
        (status = 200, description = "Creation options", body = crate::openapi::WebAuthnOptions),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_start(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Json<Value>> {
    let user = state
        .store
        .user_by_id(&signed_in.user_id)
        .await?
        .ok_or_else(AppError::not_signed_in)?;
    let existing = state.store.active_credentials(&user.id).await?;
    let exclude = existing
        .iter()
        .filter_map(|c| crate::license::jose::unb64(&c.id))
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
    };
    begin_ceremony(&state, &signed_in.session, ADD_PASSKEY, &ceremony).await?;
    let mut options = serde_json::to_value(options).map_err(anyhow::Error::from)?;
    require_resident_key(&mut options);
    Ok(Json(options))
}

#[utoipa::path(
    post,
    path = "/api/me/passkeys/finish",
    tag = "passkeys",
    summary = "Finish adding a passkey",
    request_body = crate::openapi::CredentialJson,
    responses(
        (status = 201, description = "Added", body = crate::openapi::PasskeyAdded),
        (status = 400, description = "Malformed credential or unknown ceremony", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Credential already registered", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_finish(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    AppJson(credential): AppJson<RegisterPublicKeyCredential>,
) -> Result<(StatusCode, Json<Value>)> {
    let ceremony: Ceremony = take_ceremony(&state, &signed_in.session, ADD_PASSKEY).await?;
    if ceremony.user_id != signed_in.user_id {
        return Err(AppError::bad_request(
            "ceremony-not-found",
            "this ceremony belongs to another sign-in",
        ));
    }
    let credential_id = store_passkey(&state, &ceremony, None, &credential, &client).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"credential_id": credential_id})),
    ))
}
