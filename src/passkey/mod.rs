//! Passkey accounts: registration, sign-in (also with autofill) and self-service.

pub(crate) mod account;
pub(crate) mod login;
pub(crate) mod register;
pub mod session;

use axum::routing::{patch, post};
use axum::Router;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use tower_sessions::Session;
use webauthn_rs::prelude::{COSEKeyType, Passkey, WebauthnError};

use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::license::jose::b64;
use crate::store::now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/register/start", post(register::start))
        .route("/api/register/finish", post(register::finish))
        .route("/api/login/start", post(login::start))
        .route("/api/login/finish", post(login::finish))
        .route("/api/logout", post(account::logout))
        .route("/api/logout/everywhere", post(account::logout_everywhere))
        .route("/api/me", axum::routing::get(account::me))
        .route("/api/me/passkeys/start", post(register::add_start))
        .route("/api/me/passkeys/finish", post(register::add_finish))
        .route(
            "/api/me/passkeys/{id}",
            patch(account::rename_passkey).delete(account::remove_passkey),
        )
}

/// WebAuthn's own limit on credential ids (Level 3, §5.1).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;

/// Validates a username or display name: 1 to 64 characters after trimming, no
/// control characters.
pub fn clean_name(field: &'static str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > 64 {
        return Err(AppError::bad_request(
            "invalid-name",
            format!("{field} must be 1 to 64 characters long"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "invalid-name",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Session key under which a started ceremony of `kind` is remembered.
fn ceremony_key(kind: &str) -> String {
    format!("ceremony:{kind}")
}

/// Saves a ceremony's state server-side and remembers its id in the session,
/// replacing (and deleting) any unfinished ceremony of the same kind.
async fn begin_ceremony<S: Serialize>(
    state: &AppState,
    session: &Session,
    kind: &str,
    ceremony: &S,
) -> Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let text = serde_json::to_string(ceremony).map_err(anyhow::Error::from)?;
    let ttl = i64::try_from(state.settings.ceremony_ttl.as_secs()).unwrap_or(300);
    if let Some(old) = session.get::<String>(&ceremony_key(kind)).await? {
        state.store.drop_ceremony(&old).await?;
    } else {
        // Anonymous starts must not grow the database without bound.
        let pending = state
            .pending_ceremonies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if pending >= state.settings.max_pending_ceremonies {
            return Err(AppError::Unavailable(
                "too many ceremonies in progress".into(),
            ));
        }
    }
    state
        .store
        .put_ceremony(&id, kind, &text, now() + ttl)
        .await?;
    session.insert(&ceremony_key(kind), id).await?;
    Ok(())
}

/// Takes a ceremony's state out of the store: a ceremony finishes at most once.
async fn take_ceremony<S: DeserializeOwned>(
    state: &AppState,
    session: &Session,
    kind: &str,
) -> Result<S> {
    let gone = || {
        AppError::bad_request(
            "ceremony-not-found",
            "this ceremony is unknown, finished or expired; start again",
        )
    };
    let id: String = session
        .remove(&ceremony_key(kind))
        .await?
        .ok_or_else(gone)?;
    let text = state
        .store
        .take_ceremony(&id, kind, now())
        .await?
        .ok_or_else(gone)?;
    serde_json::from_str(&text)
        .map_err(|e| AppError::Internal(anyhow::Error::from(e).context("ceremony state")))
}

/// The outer fields of a `PublicKeyCredential` JSON that webauthn-rs leaves
/// unchecked: `type` must be "public-key" and `id` must be `rawId` in base64url.
fn check_credential_shape(id: &str, raw_id: &[u8], kind: &str) -> Result<()> {
    if kind != "public-key" {
        return Err(AppError::bad_request(
            "malformed-credential",
            "credential type must be \"public-key\"",
        ));
    }
    if id != b64(raw_id) {
        return Err(AppError::bad_request(
            "malformed-credential",
            "credential id and rawId differ",
        ));
    }
    Ok(())
}

/// Maps a WebAuthn verification failure to a client error; never a 500.
fn ceremony_failed(err: WebauthnError) -> AppError {
    use WebauthnError as E;
    let detail = format!("the passkey response was rejected: {err}");
    match err {
        E::ParseNOMFailure
        | E::ParseCBORFailure(_)
        | E::ParseJSONFailure(_)
        | E::ParseBase64Failure(_)
        | E::ParseInsufficientBytesAvailable => {
            AppError::bad_request("malformed-credential", detail)
        }
        _ => AppError::unauthorized("ceremony-failed", detail),
    }
}

/// The passkey's public key as a JWK (for a license's `cks`), with `kid` the credential id.
fn credential_jwk(passkey: &Passkey) -> Value {
    let kid = b64(passkey.cred_id().as_slice());
    match &passkey.get_public_key().key {
        COSEKeyType::EC_EC2(ec) => {
            json!({"kty": "EC", "crv": "P-256", "x": b64(&ec.x), "y": b64(&ec.y), "alg": "ES256", "kid": kid})
        }
        COSEKeyType::EC_OKP(okp) => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&okp.x), "alg": "EdDSA", "kid": kid})
        }
        COSEKeyType::RSA(rsa) => {
            json!({"kty": "RSA", "n": b64(&rsa.n), "e": b64(rsa.e), "alg": "RS256", "kid": kid})
        }
    }
}

/// AAGUID and backup flags, read from the verified attestation object's authenticator data.
struct AuthenticatorInfo {
    aaguid: String,
    backup_eligible: bool,
    backup_state: bool,
}

fn authenticator_info(attestation_object: &[u8]) -> Result<AuthenticatorInfo> {
    let bad = || {
        AppError::bad_request(
            "malformed-credential",
            "the attestation object is malformed",
        )
    };
    let value: ciborium::Value = ciborium::from_reader(attestation_object).map_err(|_| bad())?;
    let auth_data = value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("authData")))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or_else(bad)?;
    if auth_data.len() < 53 {
        return Err(bad());
    }
    let flags = auth_data[32];
    let a = &auth_data[37..53];
    let aaguid = uuid::Uuid::from_slice(a)
        .map_err(|_| bad())?
        .hyphenated()
        .to_string();
    Ok(AuthenticatorInfo {
        aaguid,
        backup_eligible: flags & 0x08 != 0,
        backup_state: flags & 0x10 != 0,
    })
}

/// A name a person recognises for a new passkey, from the browser that made
/// it ("Chrome on Android"); the user can rename it.
fn default_passkey_name(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or_default();
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Firefox/") || ua.contains("FxiOS/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        ""
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Mac OS X") {
        "macOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    match (browser, os) {
        ("", "") => format!("Passkey added {}", time::OffsetDateTime::now_utc().date()),
        (browser, "") => format!("{browser} passkey"),
        ("", os) => format!("Passkey on {os}"),
        (browser, os) => format!("{browser} on {os}"),
    }
}

/// Asks for a discoverable credential (a passkey that can sign in without a
/// username), which webauthn-rs leaves at "discouraged".
fn require_resident_key(options: &mut Value) {
    if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        let selection = public_key
            .entry("authenticatorSelection")
            .or_insert_with(|| json!({}));
        if let Some(selection) = selection.as_object_mut() {
            selection.insert("residentKey".into(), json!("required"));
            selection.insert("requireResidentKey".into(), json!(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_passkey_name;

    #[test]
    fn passkeys_are_named_after_the_browser_and_system_that_made_them() {
        let cases = [
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36", "Chrome on Android"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1", "Safari on iOS"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "Safari on macOS"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0", "Edge on Windows"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0 Safari/537.36", "Chrome on Linux"),
        ];
        for (ua, name) in cases {
            assert_eq!(default_passkey_name(Some(ua)), name);
        }
        assert!(default_passkey_name(None).starts_with("Passkey added "));
    }
}
