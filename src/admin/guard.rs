//! Who may use the admin API, and when a fresh passkey sign-in is needed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ops::Actor;
use crate::error::AppError;
use crate::http::session::SignedIn;
use crate::http::ClientInfo;
use crate::state::AppState;
use crate::store::users::{Role, User};
use crate::store::{now, Store};

/// A signed-in, enabled admin making a request; anyone else gets 403.
pub struct Admin {
    pub user: User,
    pub signed_in: SignedIn,
    pub client: ClientInfo,
    /// `LATCHKEY_ADMIN_REAUTH_MINUTES` in seconds.
    reauth_secs: i64,
    /// `LATCHKEY_STEP_UP_MINUTES` in seconds.
    step_up_secs: i64,
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
            step_up_secs: state.settings.step_up_secs,
        })
    }
}

impl Admin {
    /// This admin as the actor of an operation.
    pub fn actor(&self) -> Actor<'_> {
        Actor::Admin(self)
    }

    /// Destructive actions need a recent passkey confirmation (a sign-in or a
    /// step-up), otherwise a 401 whose problem type tells the page to ask for
    /// the passkey again. A passkey added within the step-up window without a
    /// step-up does not count: a session alone must not mint its own fresh
    /// confirmations. Returns the confirmation the change must spend (window 0).
    pub async fn confirmation(&self, store: &Store) -> Result<Option<String>, AppError> {
        let now = now();
        let spend = self
            .signed_in
            .confirmed_within(self.reauth_secs, now)
            .map_err(|_| reauthentication_required())?;
        // Already spent: ask for a new one before looking at anything else. The
        // change spends it again inside its transaction, which settles races.
        if let Some(confirmation) = &spend {
            if store.confirmation_spent(confirmation).await? {
                return Err(reauthentication_required());
            }
        }
        let credential = store.credential(&self.signed_in.verified_with).await?;
        let trusted = credential.is_some_and(|c| {
            c.revoked_at.is_none()
                && (c.added_with_step_up || now - c.created_at >= self.step_up_secs)
        });
        if !trusted {
            return Err(reauthentication_required());
        }
        Ok(spend)
    }
}

/// The 401 that asks an admin to confirm with a passkey and retry.
pub fn reauthentication_required() -> AppError {
    AppError::unauthorized(
        "reauthentication-required",
        "Confirm it's you: sign in with your passkey again, then retry.",
    )
}
