//! Admin: recovery links, with which a user who lost their passkeys adds a
//! new one to their existing account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts;
use crate::apikeys::{Caller, UsersWrite};
use crate::error::Result;
use crate::http::{AppJson, AppPath, ClientInfo, Time};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoveryRequest {
    /// How long the link works, in seconds: 60 to 86400; 3600 when absent.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86400)]
    ttl_secs: Option<i64>,
    /// When the link is used, revoke the user's other passkeys, end their
    /// sessions and revoke their licenses (in the same transaction).
    #[serde(default)]
    revoke_others: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecoveryIssued {
    /// The one-time code (`lke_…`); shown only now. `latchkey.enroll(code)`
    /// (or `POST /api/register/enroll`) adds the new passkey.
    code: String,
    /// The page that offers to add the passkey: give it to the person (link or QR code).
    url: String,
    expires_at: Time,
    revoke_others: bool,
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/recovery",
    tag = "admin",
    operation_id = "admin_issue_recovery",
    summary = "Issue a one-time recovery link with which the user adds a new passkey",
    security(("session" = []), ("apikey" = ["users:write"])),
    params(("id" = String, Path, description = "user id")),
    request_body = RecoveryRequest,
    responses(
        (status = 201, description = "Issued; replaces the user's unused links", body = RecoveryIssued),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a key without users:write", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user is disabled", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-ttl`: not from 60 s to 24 h", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn issue(
    State(state): State<AppState>,
    caller: Caller<UsersWrite>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<RecoveryRequest>,
) -> Result<(StatusCode, Json<RecoveryIssued>)> {
    let issued = accounts::issue_recovery(
        &state.store,
        &caller.actor(&client),
        &id,
        body.ttl_secs,
        body.revoke_others,
    )
    .await?;
    let url = accounts::recovery_url(
        &state.settings.origin,
        &state.settings.base_path,
        &issued.code,
    );
    Ok((
        StatusCode::CREATED,
        Json(RecoveryIssued {
            code: issued.code,
            url,
            expires_at: Time(issued.expires_at),
            revoke_others: body.revoke_others,
        }),
    ))
}
