//! Who may use the admin API, and when a fresh passkey sign-in is needed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ops::Actor;
use crate::error::AppError;
use crate::http::session::SignedIn;
use crate::http::ClientInfo;
use crate::state::AppState;
use crate::store::now;
use crate::store::users::{Role, User};

/// Session key recording which sign-in already paid for a destructive action
/// when every such action needs its own (`LATCHKEY_ADMIN_REAUTH_MINUTES=0`).
const REAUTH_SPENT: &str = "reauth_spent_at";

/// A signed-in, enabled admin making a request; anyone else gets 403.
pub struct Admin {
    pub user: User,
    pub signed_in: SignedIn,
    pub client: ClientInfo,
    /// `LATCHKEY_ADMIN_REAUTH_MINUTES` in seconds.
    reauth_secs: i64,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        let user = signed_in.enabled_user(&state.store).await?;
        let client = ClientInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        if user.role != Role::Admin {
            return Err(AppError::forbidden(
                "not-admin",
                "This account is not an administrator.",
            ));
        }
        Ok(Self {
            user,
            signed_in,
            client,
            reauth_secs: state.settings.admin_reauth_secs,
        })
    }
}

impl Admin {
    /// This admin as the actor of an operation.
    pub fn actor(&self) -> Actor<'_> {
        Actor::Admin(self)
    }

    /// Destructive actions need a recent passkey sign-in; otherwise a 401 whose
    /// problem type tells the page to ask for the passkey again.
    pub async fn require_recent_sign_in(&self) -> Result<(), AppError> {
        let window = self.reauth_secs;
        let at = self.signed_in.authenticated_at;
        let again = || {
            AppError::unauthorized(
                "reauthentication-required",
                "Confirm it's you: sign in with your passkey again, then retry.",
            )
        };
        if window == 0 {
            // Every destructive action spends one sign-in, which must be fresh.
            let spent: Option<i64> = self.signed_in.session.get(REAUTH_SPENT).await?;
            if spent == Some(at) || now() - at > 120 {
                return Err(again());
            }
            self.signed_in.session.insert(REAUTH_SPENT, at).await?;
            return Ok(());
        }
        if now() - at > window {
            return Err(again());
        }
        Ok(())
    }
}
