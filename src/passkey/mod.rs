//! Passkey accounts: registration, sign-in (also with autofill) and self-service.

pub(crate) mod account;
mod assertion;
pub mod credential;
pub(crate) mod enroll;
pub(crate) mod login;
pub mod providers;
pub(crate) mod recovery;
pub(crate) mod register;
pub mod stepup;

use axum::http::header::SET_COOKIE;
use axum::http::HeaderValue;
use axum::response::{IntoResponseParts, ResponseParts};
use serde::{de::DeserializeOwned, Serialize};
use tower_sessions::Session;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use webauthn_rs::prelude::WebauthnError;

use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::store::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register::start))
        .routes(routes!(register::finish))
        .routes(routes!(enroll::start))
        .routes(routes!(recovery::start))
        .routes(routes!(recovery::make_codes))
        .routes(routes!(login::start))
        .routes(routes!(login::finish))
        .routes(routes!(account::logout))
        .routes(routes!(account::logout_everywhere))
        .routes(routes!(account::me))
        .routes(routes!(stepup::start))
        .routes(routes!(stepup::finish))
        .routes(routes!(register::add_start))
        .routes(routes!(register::add_finish))
        .routes(routes!(account::rename_passkey, account::remove_passkey))
}

/// Validates a username or display name: at most 64 characters, no control
/// characters, and something other than spaces; returns it trimmed.
/// [`NAME_PATTERN`] says the same to the API document.
pub fn clean_name(field: &'static str, value: &str) -> Result<String> {
    if value.chars().any(char::is_control) {
        return Err(AppError::Unprocessable(
            "invalid-name",
            format!("The {field} must not contain control characters."),
        ));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() || value.chars().count() > 64 {
        return Err(AppError::Unprocessable(
            "invalid-name",
            format!("The {field} must be 1 to 64 characters long."),
        ));
    }
    Ok(trimmed.to_owned())
}

/// A name as a request carries it; [`clean_name`] checks it, and its schema
/// says the same: at most 64 characters, not only spaces, no control characters.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct NameText(pub String);

impl utoipa::PartialSchema for NameText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        const NOT_CONTROL: &str = "[^\\u0000-\\u001F\\u007F-\\u009F]";
        const VISIBLE: &str = "[^\\s\\u0000-\\u001F\\u007F-\\u009F]";
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some(format!("^{NOT_CONTROL}*{VISIBLE}{NOT_CONTROL}*$")))
            .into()
    }
}

impl utoipa::ToSchema for NameText {}

/// Session key under which a started ceremony of `kind` is kept.
fn ceremony_key(kind: &str) -> String {
    format!("ceremony:{kind}")
}

/// A started ceremony as the session record keeps it: its state lives in the
/// session, so starting one costs the session's own write and nothing else.
#[derive(Serialize, serde::Deserialize)]
struct Kept<S> {
    /// A random id: finishing takes the ceremony out of the stored record
    /// only while the record still holds this id.
    id: String,
    expires_at: i64,
    state: S,
}

/// A ceremony read from the session, not yet taken.
struct Pending<S> {
    id: String,
    state: S,
}

fn ceremony_gone() -> AppError {
    AppError::Unprocessable(
        "ceremony-not-found",
        "This passkey request is unknown, already finished or expired; start again.".into(),
    )
}

/// Keeps a ceremony's state in the session record, replacing any unfinished
/// ceremony of the same kind. The record is written here, in one statement
/// (so a database that cannot take it answers 503), not by the session layer;
/// returns the `Set-Cookie` value when a new session had to be made.
async fn begin_ceremony<S: Serialize>(
    state: &AppState,
    session: &Session,
    kind: &str,
    ceremony: &S,
) -> Result<SessionCookie> {
    let key = ceremony_key(kind);
    let ttl = i64::try_from(state.settings.ceremony_ttl.as_secs()).unwrap_or(300);
    // Before the record is loaded, the id is the request cookie's.
    let had_cookie = session.id().is_some();
    if session.get_value(&key).await?.is_none() {
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
    let now = now();
    let kept = Kept {
        id: uuid::Uuid::new_v4().simple().to_string(),
        expires_at: now + ttl,
        state: ceremony,
    };
    let kept = serde_json::to_value(&kept).map_err(anyhow::Error::from)?;
    let existing = session.id();
    if had_cookie && (existing.is_none() || session.is_empty().await) {
        // The cookie names a session that has ended (or holds nothing), and
        // the session layer clears such a cookie unless the session holds
        // something by the end of the request: the layer keeps this one
        // (saved here first, so that a database that cannot take it answers 503).
        session.insert_value(&key, kept).await?;
        session.save().await?;
        return Ok(SessionCookie(None));
    }
    let created = state
        .store
        .keep_ceremony(existing.as_ref(), &key, kept, now + ttl, now)
        .await?;
    let cookie = created
        .map(|id| crate::http::session::session_cookie(&state.settings, &id))
        .transpose()?;
    Ok(SessionCookie(cookie))
}

/// The `Set-Cookie` of a session this handler made or renewed itself (the
/// session layer, whose copy was left unchanged, sends none); nothing when
/// the request's own cookie stays good.
pub(crate) struct SessionCookie(Option<HeaderValue>);

impl IntoResponseParts for SessionCookie {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: ResponseParts,
    ) -> std::result::Result<ResponseParts, Self::Error> {
        if let Some(cookie) = self.0 {
            res.headers_mut().append(SET_COOKIE, cookie);
        }
        Ok(res)
    }
}

/// The unexpired ceremony of `kind` this session holds, without taking it.
async fn pending_ceremony<S: DeserializeOwned>(
    session: &Session,
    kind: &str,
) -> Result<Pending<S>> {
    let value = session
        .get_value(&ceremony_key(kind))
        .await?
        .ok_or_else(ceremony_gone)?;
    let kept: Kept<S> = serde_json::from_value(value)
        .map_err(|e| AppError::Internal(anyhow::Error::from(e).context("ceremony state")))?;
    if kept.expires_at <= now() {
        return Err(ceremony_gone());
    }
    Ok(Pending {
        id: kept.id,
        state: kept.state,
    })
}

/// Takes ceremony `id` of `kind` out of the session, in the store (where only
/// one request can) and in this request's copy; 422 if it is already gone.
async fn spend_ceremony(state: &AppState, session: &Session, kind: &str, id: &str) -> Result<()> {
    let key = ceremony_key(kind);
    let taken = match session.id() {
        Some(session_id) => {
            state
                .store
                .take_session_ceremony(&session_id, &key, id)
                .await?
        }
        None => false,
    };
    session.remove_value(&key).await?;
    if !taken {
        return Err(ceremony_gone());
    }
    Ok(())
}

/// Takes a ceremony's state out of the session: a ceremony finishes at most once.
async fn take_ceremony<S: DeserializeOwned>(
    state: &AppState,
    session: &Session,
    kind: &str,
) -> Result<S> {
    let pending: Pending<S> = pending_ceremony(session, kind).await?;
    spend_ceremony(state, session, kind, &pending.id).await?;
    Ok(pending.state)
}

/// Maps a WebAuthn verification failure to a client error; never a 500.
fn ceremony_failed(err: WebauthnError) -> AppError {
    use WebauthnError as E;
    let detail = format!("The passkey's answer was refused: {err}.");
    match err {
        E::ParseNOMFailure
        | E::ParseCBORFailure(_)
        | E::ParseJSONFailure(_)
        | E::ParseBase64Failure(_)
        | E::ParseInsufficientBytesAvailable => {
            AppError::Unprocessable("malformed-credential", detail)
        }
        _ => AppError::unauthorized("ceremony-failed", detail),
    }
}

/// A name a person recognises for a new passkey: the provider that keeps it,
/// from its AAGUID ("Google Password Manager", "1Password"), else the browser
/// and system that made it ("Chrome on Android"); the user can rename it.
fn default_passkey_name(aaguid: &str, user_agent: Option<&str>) -> String {
    if let Some(provider) = providers::provider_name(aaguid) {
        return provider.to_owned();
    }
    match browser_and_system(user_agent) {
        ("", "") => format!("Passkey added {}", time::OffsetDateTime::now_utc().date()),
        (browser, "") => format!("{browser} passkey"),
        ("", os) => format!("Passkey on {os}"),
        (browser, os) => format!("{browser} on {os}"),
    }
}

/// A name for a device at its first license, from its browser and system
/// ("Chrome on Android"); the user can rename it.
pub fn device_name(user_agent: Option<&str>) -> String {
    match browser_and_system(user_agent) {
        ("", "") => "Device".to_owned(),
        (browser, "") => format!("{browser} device"),
        ("", os) => format!("Device on {os}"),
        (browser, os) => format!("{browser} on {os}"),
    }
}

/// The browser and system a User-Agent names, each empty when unknown.
fn browser_and_system(user_agent: Option<&str>) -> (&'static str, &'static str) {
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
    (browser, os)
}

#[cfg(test)]
mod tests {
    use super::default_passkey_name;

    const ANONYMOUS: &str = "00000000-0000-0000-0000-000000000000";

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
            assert_eq!(default_passkey_name(ANONYMOUS, Some(ua)), name);
        }
        assert!(default_passkey_name(ANONYMOUS, None).starts_with("Passkey added "));
    }

    #[test]
    fn a_known_provider_names_the_passkey_whatever_the_browser() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let google = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4";
        assert_eq!(
            default_passkey_name(google, Some(chrome)),
            "Google Password Manager"
        );
        assert_eq!(
            default_passkey_name(google, None),
            "Google Password Manager"
        );
    }
}
