//! Admin API for keys: list, make (the secret is in the answer once), revoke;
//! and what a key can learn about itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{ApiKey, Caller};
use super::scope::{HumanOnly, Scope};
use super::{ops, secret};
use crate::error::{AppError, Result};
use crate::http::{AppJson, AppPath, ClientInfo, Time};
use crate::state::AppState;
use crate::store::apikeys::ApiKeyRow;

/// A key as lists show it; never its secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyInfo {
    id: String,
    name: String,
    /// The first characters of the secret, to recognise it.
    hint: String,
    scopes: Vec<Scope>,
    /// The admin who made it; null when made on the command line.
    created_by: Option<String>,
    created_at: Time,
    expires_at: Option<Time>,
    /// To the minute.
    last_used_at: Option<Time>,
    revoked_at: Option<Time>,
}

impl From<ApiKeyRow> for ApiKeyInfo {
    fn from(k: ApiKeyRow) -> Self {
        Self {
            scopes: Scope::parse_list(&k.scopes),
            id: k.id,
            name: k.name,
            hint: k.hint,
            created_by: k.created_by,
            created_at: Time(k.created_at),
            expires_at: k.expires_at.map(Time),
            last_used_at: k.last_used_at.map(Time),
            revoked_at: k.revoked_at.map(Time),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyList {
    keys: Vec<ApiKeyInfo>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: crate::passkey::NameText,
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// A lifetime (`90d`) or an RFC 3339 time or date; none for no expiry.
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    key: ApiKeyInfo,
    /// The secret, `lk_…`: shown this once, stored only as a hash.
    #[schema(pattern = "^lk_[0-9A-Za-z]{36}$")]
    secret: String,
}

#[utoipa::path(
    get,
    path = "/api/admin/apikeys",
    tag = "admin",
    operation_id = "admin_list_api_keys",
    summary = "API keys, newest first (admins only, not keys)",
    security(("session" = [])),
    responses(
        (status = 200, description = "The keys", body = ApiKeyList),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or called with a key", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: Caller<HumanOnly>,
) -> Result<Json<ApiKeyList>> {
    let keys = state.store.api_keys().await?;
    Ok(Json(ApiKeyList {
        keys: keys.into_iter().map(ApiKeyInfo::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/admin/apikeys",
    tag = "admin",
    operation_id = "admin_create_api_key",
    summary = "Make an API key (needs a recent sign-in); the secret is in this answer only",
    security(("session" = [])),
    request_body = NewKey,
    responses(
        (status = 201, description = "Made", body = CreatedKey),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or called with a key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, scopes or expiry", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller<HumanOnly>,
    client: ClientInfo,
    AppJson(body): AppJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>)> {
    let expires_at = match body.expires_at.as_deref() {
        None | Some("") => None,
        Some(text) => Some(ops::parse_expiry(text).ok_or_else(|| {
            AppError::Unprocessable(
                "invalid-expiry",
                "expires_at must be a lifetime such as 90d, an RFC 3339 time or a date.".into(),
            )
        })?),
    };
    let created = ops::create(
        &state.store,
        &caller.actor(&client),
        &body.name.0,
        &body.scopes,
        expires_at,
    )
    .await?;
    debug_assert!(secret::well_formed(&created.secret));
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: created.key.into(),
            secret: created.secret,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/admin/apikeys/{id}",
    tag = "admin",
    operation_id = "admin_revoke_api_key",
    summary = "Revoke an API key (needs a recent sign-in)",
    security(("session" = [])),
    params(("id" = String, Path, description = "key id, key_…")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or called with a key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such unrevoked key", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller<HumanOnly>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    ops::revoke(&state.store, &caller.actor(&client), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CurrentKey {
    id: String,
    name: String,
    scopes: Vec<Scope>,
}

#[utoipa::path(
    get,
    path = "/api/admin/apikeys/current",
    tag = "admin",
    operation_id = "admin_current_api_key",
    summary = "The API key making this call (keys only: a session cookie does not count)",
    security(("apikey" = [])),
    responses(
        (status = 200, description = "The key", body = CurrentKey),
        (status = 401, description = "`api-key-required` or `invalid-api-key`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn current(key: ApiKey) -> Json<CurrentKey> {
    Json(CurrentKey {
        id: key.id,
        name: key.name,
        scopes: key.scopes,
    })
}
