//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! The schema types below describe JSON the handlers build; a test compares
//! real responses with them so the two cannot drift apart.

#![allow(dead_code)] // fields are read by the derive, not by code

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// An RFC 9457 problem document; `type` is `urn:latchkey:problem:<slug>`.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:latchkey:problem:username-taken")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Only on `unknown-credential`: the credential id (base64url) to pass to `signalUnknownCredential`.
    pub credential_id: Option<String>,
}

/// WebAuthn options as webauthn-rs serialises them: feed `publicKey` to
/// `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON`.
#[derive(Serialize, ToSchema)]
pub struct WebAuthnOptions {
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

/// The browser's `PublicKeyCredential.toJSON()` output (WebAuthn Level 3), base64url fields.
#[derive(Serialize, ToSchema)]
pub struct CredentialJson {
    pub id: String,
    #[serde(rename = "rawId")]
    pub raw_id: String,
    #[serde(rename = "type")]
    #[schema(example = "public-key")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub response: serde_json::Value,
    #[serde(rename = "clientExtensionResults")]
    #[schema(value_type = Object)]
    pub client_extension_results: Option<serde_json::Value>,
    #[serde(rename = "authenticatorAttachment")]
    pub authenticator_attachment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterStart {
    /// 1 to 64 characters after trimming; unique regardless of case.
    pub username: String,
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginStart {
    /// Omit for discoverable sign-in (autofill).
    pub username: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user_id: String,
    pub username: String,
    pub credential_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyAdded {
    pub credential_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    pub user_id: String,
    pub username: String,
    pub entitlements: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Entitlement {
    pub name: String,
    /// RFC 3339, or null for no expiry.
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Passkey {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    #[schema(example = "user")]
    pub role: String,
    pub entitlements: Vec<Entitlement>,
    pub passkeys: Vec<Passkey>,
    /// The passkey this session signed in with.
    pub current_passkey: String,
}

#[derive(Serialize, ToSchema)]
pub struct Rename {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct License {
    /// Compact JWS, `typ` `license+jwt`.
    pub license: String,
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    pub x: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub usage: String,
}

#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[derive(Serialize, ToSchema)]
pub struct Premium {
    pub message: String,
    pub user_id: String,
    pub license_expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Counts {
    pub users: i64,
    pub admins: i64,
    pub disabled_users: i64,
    pub passkeys: i64,
    pub active_licenses: i64,
    pub revoked_licenses: i64,
    pub open_sessions: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Day {
    pub day: String,
    pub signins: i64,
    pub licenses: i64,
    pub revocations: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    pub counts: Counts,
    /// The last 30 days, oldest first.
    pub daily: Vec<Day>,
}

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: String,
    pub passkeys: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AdminPasskey {
    pub id: String,
    pub name: String,
    pub aaguid: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusSlot {
    pub id: i64,
    pub idx: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AdminLicense {
    pub jti: String,
    pub device_jkt: String,
    pub issued_at: String,
    pub expires_at: String,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    pub entitlements: Vec<String>,
    pub status_list: StatusSlot,
}

#[derive(Serialize, ToSchema)]
pub struct AdminEntitlement {
    pub name: String,
    pub expires_at: Option<String>,
    pub granted_at: String,
    pub active: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    /// A prefix of the session's hash (the cookie value is never stored).
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub authenticated_at: Option<String>,
    pub credential_id: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserDetail {
    pub user: User,
    pub passkeys: Vec<AdminPasskey>,
    pub licenses: Vec<AdminLicense>,
    pub entitlements: Vec<AdminEntitlement>,
    pub sessions: Vec<Session>,
}

#[derive(Serialize, ToSchema)]
pub struct Grant {
    /// a-z, 0-9 and `- _ . :`, at most 64 characters.
    pub name: String,
    /// RFC 3339 time or a date (end of that day, UTC).
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Granted {
    pub name: String,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RoleChange {
    /// `admin` or `user`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: String,
    pub event: String,
    pub actor_user_id: Option<String>,
    pub target_user_id: Option<String>,
    pub target: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Passkey sign-in and offline, device-bound entitlement licenses for PWAs. \
                       Errors are RFC 9457 problem documents; state-changing requests need an Origin equal to the service's.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::passkey::register::start,
        crate::passkey::register::finish,
        crate::passkey::register::add_start,
        crate::passkey::register::add_finish,
        crate::passkey::login::start,
        crate::passkey::login::finish,
        crate::passkey::account::me,
        crate::passkey::account::rename_passkey,
        crate::passkey::account::remove_passkey,
        crate::passkey::account::logout,
        crate::passkey::account::logout_everywhere,
        crate::license::mint::mint,
        crate::license::mint::jwks,
        crate::license::premium::example,
        crate::revocation::serve,
        crate::admin::activity::overview,
        crate::admin::users::list_users,
        crate::admin::users::user_detail,
        crate::admin::users::change_role,
        crate::admin::users::grant,
        crate::admin::users::remove_entitlement,
        crate::admin::users::disable,
        crate::admin::users::enable,
        crate::admin::revoke::revoke_credential,
        crate::admin::revoke::revoke_license,
        crate::admin::activity::audit,
        crate::app::healthz,
        crate::app::readyz,
        openapi_json,
    ),
    modifiers(&CommonProblems),
    tags(
        (name = "passkeys", description = "Registration, sign-in and self-service"),
        (name = "licenses", description = "Offline licenses, keys and the premium example"),
        (name = "admin", description = "Administration (admins only)"),
        (name = "operations", description = "Health and documentation"),
    )
)]
pub struct ApiDoc;

/// Adds the problems any operation of a kind can answer, so each handler
/// documents only its own: 403 for a foreign Origin, 413 and 503 on writes,
/// 429 on rate-limited routes, 503 wherever the database is used.
struct CommonProblems;

impl utoipa::Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let database = !matches!(
                path.as_str(),
                "/healthz" | "/.well-known/jwks.json" | "/openapi.json"
            );
            let limited = crate::middleware::class_of(path).is_some();
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (write, operation) in operations {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                let mut add = |code: &str, description: &str| {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                if write {
                    add("403", "Origin is not the service's origin");
                    add("413", "Body over the limit");
                }
                if limited {
                    add("429", "Rate limited; see Retry-After");
                }
                if database {
                    add("503", "Database unavailable; retry");
                }
            }
        }
    }
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    let body = ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned());
    ([(header::CONTENT_TYPE, "application/json")], body)
}
