//! What a signed-in session holds, and how a sign-in starts one.

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

/// The signed-in user of a request; extracting it answers 401 when there is none.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    /// This passkey sign-in; licenses minted in it point here.
    pub login_id: String,
    pub credential_id: String,
    pub authenticated_at: i64,
    pub session: Session,
}

impl SignedIn {
    /// The signed-in user, who must still exist and be enabled; 401 otherwise.
    pub async fn enabled_user(&self, store: &crate::store::Store) -> Result<User, AppError> {
        store
            .user_by_id(&self.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(AppError::not_signed_in)
    }
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
        match (user_id, login_id, credential_id, authenticated_at) {
            (Some(user_id), Some(login_id), Some(credential_id), Some(authenticated_at)) => {
                Ok(Self {
                    user_id,
                    login_id,
                    credential_id,
                    authenticated_at,
                    session,
                })
            }
            _ => Err(AppError::not_signed_in()),
        }
    }
}

/// Turns the request's session into a fresh, signed-in one: a new session id
/// (so a cookie planted before sign-in is worth nothing after it) holding only
/// the sign-in.
pub async fn start(
    session: &Session,
    user_id: &str,
    credential_id: &str,
    client: &ClientInfo,
) -> Result<String, AppError> {
    let login_id = uuid::Uuid::new_v4().simple().to_string();
    session.clear().await;
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(LOGIN_ID, &login_id).await?;
    session.insert(CREDENTIAL_ID, credential_id).await?;
    session
        .insert(AUTHENTICATED_AT, crate::store::now())
        .await?;
    if let Some(addr) = &client.addr {
        session.insert(CLIENT_ADDR, addr).await?;
    }
    if let Some(agent) = &client.user_agent {
        session.insert(USER_AGENT, agent).await?;
    }
    Ok(login_id)
}
