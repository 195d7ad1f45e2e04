//! Enrollment: a user made through the admin API (`POST /api/admin/users`)
//! adds their first passkey with the one-time code the API returned, and a
//! user who lost their passkeys adds a new one with a recovery link
//! (`POST /api/admin/users/{id}/recovery`). The ceremony then finishes at
//! `/api/register/finish` like any registration.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_sessions::Session;
use utoipa::ToSchema;
use webauthn_rs::prelude::Uuid;

use super::credential::PasskeyOptions;
use super::register::{Ceremony, NEW_ACCOUNT};
use super::{begin_ceremony, SessionCookie};
use crate::error::{AppError, Result};
use crate::http::AppJson;
use crate::state::AppState;
use crate::store::now;

/// A new code (192 random bits) and its stored hash.
pub fn new_code() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    let code = format!(
        "lke_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = code_hash(&code);
    (code, hash)
}

pub fn code_hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn code_gone() -> AppError {
    AppError::Unprocessable(
        "enrollment-not-found",
        "This enrollment code is unknown, already used or expired; ask for a new one.".into(),
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollStart {
    /// The one-time code from `POST /api/admin/users` or a recovery link.
    #[schema(pattern = "^lke_[A-Za-z0-9_-]{32}$")]
    enrollment: String,
}

#[utoipa::path(
    post,
    path = "/api/register/enroll",
    tag = "passkeys",
    operation_id = "enroll_start",
    summary = "Start adding a passkey with an enrollment code or a recovery link (finish with /api/register/finish)",
    request_body = EnrollStart,
    responses(
        (status = 200, description = "Creation options", body = PasskeyOptions),
        (status = 422, description = "`enrollment-not-found`: unknown, used or expired code", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    AppJson(request): AppJson<EnrollStart>,
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    let hash = code_hash(&request.enrollment);
    let (user, recovery) = state
        .store
        .enrollment_user(&hash, now())
        .await?
        .ok_or_else(code_gone)?;
    let user_uuid = Uuid::parse_str(&user.id).map_err(anyhow::Error::from)?;
    // A recovering user may still hold working passkeys: don't make a second
    // one on the same authenticator.
    let exclude = if recovery.is_some() {
        let existing = state.store.active_credentials(&user.id).await?;
        Some(
            existing
                .iter()
                .filter_map(|c| latchkey_core::jose::unb64(&c.id))
                .collect(),
        )
    } else {
        None
    };
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user_uuid, &user.username, &user.display_name, exclude)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start registration: {e}")))?;
    let ceremony = Ceremony {
        registration,
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        stepped_up: false,
        enrollment: Some(hash),
        recovery: recovery.is_some(),
        revoke_others: recovery.unwrap_or(false),
        recovery_code: None,
    };
    let cookie = begin_ceremony(&state, &session, NEW_ACCOUNT, &ceremony).await?;
    Ok((
        cookie,
        Json(PasskeyOptions::from_challenge(options)?.require_resident_key()),
    ))
}
