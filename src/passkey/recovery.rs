//! Recovery codes: a signed-in user makes a set of one-time codes (after a
//! step-up; a new set replaces the old); later, with the username and one
//! code, anyone holding it adds a new passkey to that account. Codes are kept
//! only as hashes and compared in constant time; wrong codes are counted per
//! account and per address, and beyond the limits every attempt is refused,
//! right or wrong, until the window has passed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_sessions::Session;
use utoipa::ToSchema;
use webauthn_rs::prelude::Uuid;

use super::credential::PasskeyOptions;
use super::register::{Ceremony, NEW_ACCOUNT};
use super::stepup::{require_step_up, step_up_required};
use super::{begin_ceremony, SessionCookie};
use crate::error::{AppError, Result};
use crate::http::session::SignedIn;
use crate::http::{AppJson, ClientInfo, Time};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::now;

/// Codes in a set.
pub const CODES: usize = 10;
/// The window in which wrong codes are counted.
pub const WINDOW_SECS: i64 = 900;
/// Wrong codes allowed per account, and per address, within the window.
pub const PER_ACCOUNT: i64 = 5;
pub const PER_ADDRESS: i64 = 20;

/// Without 0/O, 1/I/L, U: easy to read out and type back.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTVWXYZ0123456789";

/// A new code: 16 characters (80 random bits) in groups of four.
fn new_code() -> String {
    let bytes: [u8; 16] = rand::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The stored form of a code: SHA-256 of the user id and the code as typed,
/// upper-cased, without spaces and dashes, and with the look-alikes mapped.
pub fn code_hash(user_id: &str, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    Sha256::digest(format!("{user_id}:{normal}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The one problem for an unknown user, a wrong code and a used one.
pub(crate) fn code_refused() -> AppError {
    AppError::Unprocessable(
        "recovery-code-refused",
        "This username and recovery code do not match, or the code was already used.".into(),
    )
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecoveryCodes {
    /// Shown only now: keep them somewhere safe. Each works once.
    codes: Vec<String>,
    created_at: Time,
}

#[utoipa::path(
    post,
    path = "/api/me/recovery-codes",
    tag = "passkeys",
    operation_id = "make_recovery_codes",
    summary = "Make a new set of recovery codes, replacing the old one (needs a step-up)",
    security(("session" = [])),
    responses(
        (status = 201, description = "The codes, shown once", body = RecoveryCodes),
        (status = 401, description = "Not signed in, or `step-up-required`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn make_codes(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
) -> Result<(StatusCode, Json<RecoveryCodes>)> {
    let spend = require_step_up(&state, &signed_in)?;
    let user = signed_in.enabled_user(&state.store).await?;
    let codes: Vec<String> = (0..CODES).map(|_| new_code()).collect();
    let hashes: Vec<String> = codes.iter().map(|c| code_hash(&user.id, c)).collect();
    let audit = AuditEvent {
        actor_user_id: Some(&user.id),
        target_user_id: Some(&user.id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::RecoveryCodesMade)
    };
    let now = now();
    if !state
        .store
        .replace_recovery_codes(&user.id, &hashes, spend.as_deref(), &audit, now)
        .await?
    {
        return Err(step_up_required());
    }
    Ok((
        StatusCode::CREATED,
        Json(RecoveryCodes {
            codes,
            created_at: Time(now),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverStart {
    #[schema(max_length = 64)]
    username: String,
    /// One of the account's recovery codes (dashes and spaces are ignored).
    #[schema(max_length = 64)]
    code: String,
}

#[utoipa::path(
    post,
    path = "/api/register/recover",
    tag = "passkeys",
    operation_id = "recover_start",
    summary = "Start adding a passkey to an account with one of its recovery codes (finish with /api/register/finish)",
    request_body = RecoverStart,
    responses(
        (status = 200, description = "Creation options", body = PasskeyOptions),
        (status = 422, description = "`recovery-code-refused`: unknown user, wrong or used code", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes for this account or from this address", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfo,
    AppJson(request): AppJson<RecoverStart>,
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    if request.username.chars().count() > 64 || request.code.chars().count() > 64 {
        return Err(code_refused());
    }
    let key = crate::usernames::lookup_key(request.username.trim());
    let user = state
        .store
        .user_by_username_key(&key)
        .await?
        .filter(|u| u.disabled_at.is_none());
    let now = now();
    let addr = client.addr.as_deref();
    let (by_user, by_addr) = state
        .store
        .recovery_failures(
            user.as_ref().map(|u| u.id.as_str()),
            addr,
            now - WINDOW_SECS,
        )
        .await?;
    if by_user >= PER_ACCOUNT || by_addr >= PER_ADDRESS {
        return Err(AppError::TooManyRequests {
            retry_after_secs: WINDOW_SECS.unsigned_abs(),
        });
    }
    let matched = match &user {
        Some(user) => {
            let hash = code_hash(&user.id, &request.code);
            let unused = state.store.unused_recovery_codes(&user.id).await?;
            // Every stored code is compared, each in constant time.
            let found = unused.iter().fold(subtle::Choice::from(0), |acc, stored| {
                acc | stored.as_bytes().ct_eq(hash.as_bytes())
            });
            bool::from(found).then_some(hash)
        }
        None => None,
    };
    let Some(hash) = matched else {
        let user_id = user.as_ref().map(|u| u.id.as_str());
        let detail = state.audit_throttle.admit(addr, "wrong recovery code");
        let audit = detail.as_deref().map(|detail| AuditEvent {
            target_user_id: user_id,
            client_addr: addr,
            user_agent: client.user_agent.as_deref(),
            detail: Some(detail),
            ..AuditEvent::new(Event::RecoveryCodeRefused)
        });
        state
            .store
            .record_recovery_failure(user_id, addr, audit.as_ref(), now)
            .await?;
        return Err(code_refused());
    };
    let Some(user) = user else {
        return Err(code_refused());
    };
    let user_uuid = Uuid::parse_str(&user.id).map_err(anyhow::Error::from)?;
    let existing = state.store.active_credentials(&user.id).await?;
    let exclude = existing
        .iter()
        .filter_map(|c| latchkey_core::jose::unb64(&c.id))
        .collect();
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user_uuid, &user.username, &user.display_name, Some(exclude))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("start registration: {e}")))?;
    let ceremony = Ceremony {
        registration,
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        stepped_up: false,
        enrollment: None,
        recovery: true,
        revoke_others: false,
        recovery_code: Some(hash),
    };
    let cookie = begin_ceremony(&state, &session, NEW_ACCOUNT, &ceremony).await?;
    Ok((
        cookie,
        Json(PasskeyOptions::from_challenge(options)?.require_resident_key()),
    ))
}
