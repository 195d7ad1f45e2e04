//! Admin: making a user for a person who has no passkey yet.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::UserInfo;
use crate::apikeys::{Caller, UsersWrite};
use crate::error::Result;
use crate::http::{AppJson, ClientInfo, Time};
use crate::passkey::NameText;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserRequest {
    username: NameText,
    #[serde(default)]
    display_name: Option<NameText>,
    /// Your id for this user (or the payment customer id). Unique.
    #[serde(default)]
    #[schema(pattern = "^[!-~]{1,255}$")]
    external_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Enrollment {
    /// Give it to the person: `latchkey.enroll(code)` (or `POST /api/register/enroll`) adds
    /// their first passkey. It works once; shown only now.
    code: String,
    expires_at: Time,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedUser {
    user: UserInfo,
    enrollment: Enrollment,
}

#[utoipa::path(
    post,
    path = "/api/admin/users",
    tag = "admin",
    operation_id = "admin_create_user",
    summary = "Make a user without a passkey; the answer carries their one-time enrollment code",
    security(("session" = []), ("apikey" = ["users:write"])),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Made", body = CreatedUser),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a key without users:write", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The username or the external id is taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username, display name or external id", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller<UsersWrite>,
    client: ClientInfo,
    AppJson(body): AppJson<NewUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>)> {
    let made = super::accounts::create_user(
        &state.store,
        &caller.actor(&client),
        &body.username.0,
        body.display_name.as_ref().map(|n| n.0.as_str()),
        body.external_id.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: UserInfo::from(&made.user),
            enrollment: Enrollment {
                code: made.code,
                expires_at: Time(made.code_expires_at),
            },
        }),
    ))
}
