//! Sign-in with a passkey: with a username, or discoverable (autofill).

use axum::extract::State;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tower_sessions::Session;
use utoipa::ToSchema;

use super::credential::{AuthenticationCredential, PasskeyOptions};
use super::{assertion, SessionCookie};
use crate::error::{AppError, Result};
use crate::http::{AppJson, ClientInfo};
use crate::state::AppState;
use crate::store::now;
use crate::usernames;
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
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    // No username (or only spaces) asks for a discoverable passkey.
    let username = request
        .username
        .as_deref()
        .filter(|name| !name.trim().is_empty() || name.chars().any(char::is_control));
    let Some(name) = username else {
        let (cookie, options) = assertion::start(&state, &session, KIND, None, None).await?;
        return Ok((cookie, Json(options)));
    };
    if name.chars().any(char::is_control) {
        return Err(AppError::Unprocessable(
            "invalid-name",
            "The username must not contain control characters.".into(),
        ));
    }
    // As documented (maxLength 64): no username is longer, so this is a
    // malformed request, not an unknown user.
    if name.chars().count() > 64 {
        return Err(AppError::Unprocessable(
            "invalid-name",
            "The username must be at most 64 characters long.".into(),
        ));
    }
    let key = usernames::lookup_key(name);
    let (user_id, mut ids) = match state.store.sign_in_candidates(&key).await? {
        Some((user_id, ids)) => (Some(user_id), ids),
        None => (None, Vec::new()),
    };
    // An unknown username gets the same shape of answer as a known one:
    // a stable, made-up credential id, so that probing reveals nothing.
    if ids.is_empty() {
        ids.push(fake_credential_id(&state, &key));
    }
    let expected = Some(user_id);
    let (cookie, options) = assertion::start(&state, &session, KIND, expected, Some(&ids)).await?;
    Ok((cookie, Json(options)))
}

fn fake_credential_id(state: &AppState, key: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(state.fake_credential_key.as_slice()) else {
        return b64([0u8; 16]);
    };
    mac.update(key.as_bytes());
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
) -> Result<(SessionCookie, Json<SignedInUser>)> {
    let verified = assertion::finish(&state, &session, KIND, credential, &client).await?;
    let cookie = assertion::sign_in(&state, &session, &verified, &client).await?;
    let user = verified.user;
    let entitlements: Vec<String> = state
        .store
        .current_entitlements(&user.id, now())
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    Ok((
        cookie,
        Json(SignedInUser {
            user_id: user.id,
            username: user.username,
            entitlements,
        }),
    ))
}
