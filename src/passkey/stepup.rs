//! Step-up: a signed-in user confirms with one of their passkeys before a
//! change a stolen session cookie alone must never make (adding or removing a
//! passkey, signing out everywhere). The confirmation counts for
//! `LATCHKEY_STEP_UP_MINUTES`; with 0, each change needs one of its own.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::credential::{AuthenticationCredential, PasskeyOptions};
use super::{assertion, SessionCookie};
use crate::error::{AppError, Result};
use crate::http::session::SignedIn;
use crate::http::{AppJson, ClientInfo, Time};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::now;

const KIND: &str = "step-up";

/// The 401 that asks the page to confirm with a passkey and retry.
pub fn step_up_required() -> AppError {
    AppError::unauthorized(
        "step-up-required",
        "Confirm it's you with one of your passkeys, then try again.",
    )
}

/// Checks that this session confirmed a passkey recently enough for a
/// credential-management change; returns the confirmation the change must
/// spend in its own transaction (when every change needs its own).
pub fn require_step_up(state: &AppState, signed_in: &SignedIn) -> Result<Option<String>> {
    signed_in
        .confirmed_within(state.settings.step_up_secs, now())
        .map_err(|_| step_up_required())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Confirmed {
    /// When the confirmation was made; it counts for `LATCHKEY_STEP_UP_MINUTES`.
    confirmed_at: Time,
}

#[utoipa::path(
    post,
    path = "/api/me/step-up/start",
    tag = "passkeys",
    operation_id = "step_up_start",
    summary = "Start confirming with one of your passkeys (step-up)",
    security(("session" = [])),
    responses(
        (status = 200, description = "Request options for the signed-in user's passkeys", body = PasskeyOptions),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<(SessionCookie, Json<PasskeyOptions>)> {
    let user = signed_in.enabled_user(&state.store).await?;
    let ids: Vec<String> = state
        .store
        .active_credentials(&user.id)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let expected = Some(Some(user.id));
    let (cookie, options) =
        assertion::start(&state, &signed_in.session, KIND, expected, Some(&ids)).await?;
    Ok((cookie, Json(options)))
}

#[utoipa::path(
    post,
    path = "/api/me/step-up/finish",
    tag = "passkeys",
    operation_id = "step_up_finish",
    summary = "Finish a step-up: the session has confirmed a passkey now",
    security(("session" = [])),
    request_body = AuthenticationCredential,
    responses(
        (status = 200, description = "Confirmed", body = Confirmed),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: ClientInfo,
    AppJson(credential): AppJson<AuthenticationCredential>,
) -> Result<Json<Confirmed>> {
    let session = &signed_in.session;
    let verified = assertion::finish(&state, session, KIND, credential, &client).await?;
    // The ceremony only allowed this user's passkeys; checked again all the same.
    if verified.user.id != signed_in.user_id {
        session.remove_value(&super::ceremony_key(KIND)).await?;
        return Err(AppError::unauthorized(
            "ceremony-failed",
            "This passkey belongs to another account.",
        ));
    }
    assertion::record_use(&state, session, KIND, &verified, &client).await?;
    let now = now();
    signed_in.confirm(&verified.credential_id, now).await?;
    let event = AuditEvent {
        actor_user_id: Some(&signed_in.user_id),
        target_user_id: Some(&signed_in.user_id),
        target: Some(&verified.credential_id),
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        ..AuditEvent::new(Event::StepUp)
    };
    state.store.audit(&event, now).await?;
    Ok(Json(Confirmed {
        confirmed_at: Time(now),
    }))
}
