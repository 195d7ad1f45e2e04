//! What a signed-in session holds, how a sign-in starts one, and how fresh its
//! last passkey confirmation is.
//!
//! A session remembers the last time a passkey was verified in it (the sign-in
//! itself, or a later step-up), which passkey that was, and an id for that one
//! confirmation. Changes that must not follow from a stolen cookie alone ask
//! for a confirmation no older than their window; with a window of 0, each
//! confirmation can be spent by one change only, inside that change's
//! transaction.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tower_sessions::Session;

use super::ClientInfo;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::sessions::{
    AUTHENTICATED_AT, CLIENT_ADDR, CREDENTIAL_ID, LOGIN_ID, USER_AGENT, USER_ID,
};
use crate::store::users::User;

/// Session keys of the last passkey confirmation.
const VERIFIED_AT: &str = "verified_at";
const VERIFIED_WITH: &str = "verified_with";
const CONFIRMATION: &str = "confirmation";

/// With a window of 0, a confirmation must also be this recent: the
/// confirmation and the change it allows are one flow in the page.
pub const SINGLE_USE_FLOW_SECS: i64 = 120;

/// The signed-in user of a request; extracting it answers 401 when there is none.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    /// This passkey sign-in; licenses minted in it point here.
    pub login_id: String,
    pub credential_id: String,
    pub authenticated_at: i64,
    /// The last passkey confirmation in this session (the sign-in or a step-up).
    pub verified_at: i64,
    /// The passkey that made it.
    pub verified_with: String,
    /// Its id, spent by changes that need a confirmation of their own.
    pub confirmation: String,
    pub session: Session,
}

/// A confirmation too old for what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFresh;

impl SignedIn {
    /// The signed-in user, who must still exist and be enabled; 401 otherwise.
    pub async fn enabled_user(&self, store: &crate::store::Store) -> Result<User, AppError> {
        store
            .user_by_id(&self.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(AppError::not_signed_in)
    }

    /// Whether the last confirmation is recent enough for a change with this
    /// window (seconds). `Ok(Some(id))`: the change must spend confirmation
    /// `id` in its own transaction (window 0); `Ok(None)`: nothing to spend.
    pub fn confirmed_within(&self, window: i64, now: i64) -> Result<Option<String>, NotFresh> {
        freshness(self.verified_at, &self.confirmation, window, now)
    }

    /// Records a passkey confirmation made in this session (a step-up).
    pub async fn confirm(&self, credential_id: &str, now: i64) -> Result<(), AppError> {
        self.session.insert(VERIFIED_AT, now).await?;
        self.session.insert(VERIFIED_WITH, credential_id).await?;
        self.session.insert(CONFIRMATION, new_id()).await?;
        Ok(())
    }
}

fn freshness(
    verified_at: i64,
    confirmation: &str,
    window: i64,
    now: i64,
) -> Result<Option<String>, NotFresh> {
    let age = now - verified_at;
    if window == 0 {
        if age > SINGLE_USE_FLOW_SECS {
            return Err(NotFresh);
        }
        return Ok(Some(confirmation.to_owned()));
    }
    if age > window {
        return Err(NotFresh);
    }
    Ok(None)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
        let user_id: Option<String> = session.get(USER_ID).await?;
        let login_id: Option<String> = session.get(LOGIN_ID).await?;
        let credential_id: Option<String> = session.get(CREDENTIAL_ID).await?;
        let authenticated_at: Option<i64> = session.get(AUTHENTICATED_AT).await?;
        let (Some(user_id), Some(login_id), Some(credential_id), Some(authenticated_at)) =
            (user_id, login_id, credential_id, authenticated_at)
        else {
            return Err(AppError::not_signed_in());
        };
        // Sessions from before confirmations were recorded: the sign-in is the last one.
        let verified_at = session.get(VERIFIED_AT).await?.unwrap_or(authenticated_at);
        let verified_with = session
            .get(VERIFIED_WITH)
            .await?
            .unwrap_or_else(|| credential_id.clone());
        let confirmation = session
            .get(CONFIRMATION)
            .await?
            .unwrap_or_else(|| format!("{login_id}:{authenticated_at}"));
        Ok(Self {
            user_id,
            login_id,
            credential_id,
            authenticated_at,
            verified_at,
            verified_with,
            confirmation,
            session,
        })
    }
}

/// Turns the request's session into a fresh, signed-in one: a new session id
/// (so a cookie planted before sign-in is worth nothing after it) holding only
/// the sign-in, which is also the session's first passkey confirmation.
pub async fn start(
    session: &Session,
    user_id: &str,
    credential_id: &str,
    client: &ClientInfo,
) -> Result<String, AppError> {
    let login_id = new_id();
    let now = crate::store::now();
    session.clear().await;
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(LOGIN_ID, &login_id).await?;
    session.insert(CREDENTIAL_ID, credential_id).await?;
    session.insert(AUTHENTICATED_AT, now).await?;
    session.insert(VERIFIED_AT, now).await?;
    session.insert(VERIFIED_WITH, credential_id).await?;
    session.insert(CONFIRMATION, new_id()).await?;
    if let Some(addr) = &client.addr {
        session.insert(CLIENT_ADDR, addr).await?;
    }
    if let Some(agent) = &client.user_agent {
        session.insert(USER_AGENT, agent).await?;
    }
    Ok(login_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_counts_within_its_window_and_single_use_ones_must_be_spent() {
        assert_eq!(freshness(1_000, "k", 300, 1_300), Ok(None));
        assert_eq!(freshness(1_000, "k", 300, 1_301), Err(NotFresh));
        assert_eq!(
            freshness(1_000, "k", 0, 1_000 + SINGLE_USE_FLOW_SECS),
            Ok(Some("k".into()))
        );
        assert_eq!(
            freshness(1_000, "k", 0, 1_001 + SINGLE_USE_FLOW_SECS),
            Err(NotFresh)
        );
    }
}
