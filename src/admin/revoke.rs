//! Admin: revoking passkeys and licenses.

use axum::extract::State;
use axum::http::StatusCode;

use super::ops;
use crate::apikeys::{Caller, HumanOnly, LicensesRevoke};
use crate::error::Result;
use crate::http::AppPath;
use crate::http::ClientInfo;
use crate::state::AppState;

#[utoipa::path(
    delete,
    path = "/api/admin/credentials/{id}",
    tag = "admin",
    operation_id = "admin_revoke_passkey",
    summary = "Revoke a passkey: its sessions end and their licenses are revoked",
    security(("session" = [])),
    params(("id" = String, Path, description = "credential id (base64url)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active passkey", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin's last passkey", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_credential(
    State(state): State<AppState>,
    caller: Caller<HumanOnly>,
    client: ClientInfo,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode> {
    let actor = caller.actor(&client);
    ops::revoke_passkey(&state.store, &actor, &id).await?;
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/licenses/{jti}/revoke",
    tag = "admin",
    operation_id = "admin_revoke_license",
    summary = "Revoke a license and end the session it was minted under",
    security(("session" = []), ("apikey" = ["licenses:revoke"])),
    params(("jti" = String, Path, description = "license id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in, or `reauthentication-required`: sign in with the passkey again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_license(
    State(state): State<AppState>,
    caller: Caller<LicensesRevoke>,
    client: ClientInfo,
    AppPath(jti): AppPath<String>,
) -> Result<StatusCode> {
    let actor = caller.actor(&client);
    ops::revoke_license(&state.store, &actor, &jti).await?;
    state.status.refresh(&state.store).await?;
    Ok(StatusCode::NO_CONTENT)
}
