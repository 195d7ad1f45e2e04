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
use axum::http::HeaderValue;
use serde_json::Value;
use tower_sessions::cookie::{Cookie, SameSite};
use tower_sessions::session::Id;
use tower_sessions::Session;

use super::ClientInfo;
use crate::error::AppError;
use crate::state::{AppState, Settings};
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

/// The session cookie's name: with https, a `__Host-` cookie (Secure, Path=/,
/// no Domain), so no other site or subdomain can set or shadow it.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-latchkey"
    } else {
        "latchkey"
    }
}

/// The `Set-Cookie` value that hands out session `id`, with the attributes
/// the session layer gives its own cookie (see `app.rs`).
pub fn session_cookie(settings: &Settings, id: &Id) -> Result<HeaderValue, AppError> {
    let cookie = Cookie::build((cookie_name(settings.https), id.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(settings.https)
        .path("/")
        .max_age(time::Duration::seconds(settings.session_ttl_secs))
        .build();
    HeaderValue::from_str(&cookie.encoded().to_string())
        .map_err(|e| AppError::Internal(anyhow::Error::from(e).context("session cookie")))
}

/// What a new signed-in session holds, keyed as the session keeps it, and
/// its sign-in id: the sign-in, which is also the session's first passkey
/// confirmation.
pub fn signed_in_data(
    user_id: &str,
    credential_id: &str,
    client: &ClientInfo,
    now: i64,
) -> (String, serde_json::Map<String, Value>) {
    // Time-ordered, like license ids: new sign-ins append to the login index.
    let login_id = uuid::Uuid::now_v7().simple().to_string();
    let mut data = serde_json::Map::new();
    data.insert(USER_ID.into(), user_id.into());
    data.insert(LOGIN_ID.into(), login_id.clone().into());
    data.insert(CREDENTIAL_ID.into(), credential_id.into());
    data.insert(AUTHENTICATED_AT.into(), now.into());
    data.insert(VERIFIED_AT.into(), now.into());
    data.insert(VERIFIED_WITH.into(), credential_id.into());
    data.insert(CONFIRMATION.into(), new_id().into());
    if let Some(addr) = &client.addr {
        data.insert(CLIENT_ADDR.into(), addr.clone().into());
    }
    if let Some(agent) = &client.user_agent {
        data.insert(USER_AGENT.into(), agent.clone().into());
    }
    (login_id, data)
}

/// Turns the request's session into a fresh, signed-in one through the
/// session layer: a new session id (so a cookie planted before sign-in is
/// worth nothing after it) holding only [`signed_in_data`]. A passkey
/// sign-in does the same in one statement instead (`Store::sign_in`).
pub async fn start(
    session: &Session,
    user_id: &str,
    credential_id: &str,
    client: &ClientInfo,
) -> Result<String, AppError> {
    let (login_id, data) = signed_in_data(user_id, credential_id, client, crate::store::now());
    session.clear().await;
    session.cycle_id().await?;
    for (key, value) in data {
        session.insert_value(&key, value).await?;
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
