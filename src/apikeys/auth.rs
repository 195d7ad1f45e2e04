//! Who is calling: an API key (`Authorization: Bearer lk_…`) or an
//! administrator's passkey session, never a mix. A request with a bearer
//! token is judged by the token alone (the same-origin layer drops its
//! cookies), so a key never borrows a session and a session never satisfies a
//! route that takes only keys.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::scope::{Needs, Scope};
use super::secret;
use crate::admin::Admin;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::apikeys::ApiKeyRow;
use crate::store::now;

/// A valid, unrevoked, unexpired API key calling now.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl ApiKey {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            scopes: Scope::parse_list(&row.scopes),
            id: row.id,
            name: row.name,
        }
    }
}

/// The bearer token of a request, if it has one (any scheme spelling).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn invalid_key() -> AppError {
    AppError::unauthorized(
        "invalid-api-key",
        "This API key is not valid: it is malformed, unknown, revoked or expired.",
    )
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some(token) = bearer(parts) else {
            return Err(AppError::unauthorized(
                "api-key-required",
                "This endpoint takes an API key: send Authorization: Bearer lk_….",
            ));
        };
        if !secret::well_formed(token) {
            return Err(invalid_key());
        }
        let row = state
            .store
            .use_api_key(&secret::hash(token), now())
            .await?
            .ok_or_else(invalid_key)?;
        Ok(row.into())
    }
}

/// The caller of an admin route that keys with scope `N` may also call.
pub enum Caller<N: Needs> {
    Admin(Box<Admin>),
    Key(ApiKey, PhantomData<N>),
}

/// The refusal for a key that lacks what a route needs.
pub fn missing(scope: Option<Scope>) -> AppError {
    match scope {
        Some(scope) => AppError::forbidden(
            "missing-scope",
            format!("This API key lacks the scope {}.", scope.as_str()),
        ),
        None => AppError::forbidden(
            "api-key-not-allowed",
            "API keys cannot do this: it needs an administrator signed in with a passkey.",
        ),
    }
}

impl<N: Needs> FromRequestParts<AppState> for Caller<N> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if bearer(parts).is_some() {
            let key = ApiKey::from_request_parts(parts, state).await?;
            return match N::SCOPE {
                Some(scope) if key.has(scope) => Ok(Self::Key(key, PhantomData)),
                needed => Err(missing(needed)),
            };
        }
        Ok(Self::Admin(Box::new(
            Admin::from_request_parts(parts, state).await?,
        )))
    }
}

impl<N: Needs> Caller<N> {
    /// The operations layer's actor for this caller.
    pub fn actor<'a>(
        &'a self,
        client: &'a crate::http::ClientInfo,
    ) -> crate::admin::ops::Actor<'a> {
        use crate::admin::ops::Actor;
        match self {
            Self::Admin(admin) => Actor::Admin(admin),
            Self::Key(key, _) => Actor::Key { key, client },
        }
    }
}
