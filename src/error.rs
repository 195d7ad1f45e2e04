//! One error type for the HTTP surface, rendered as RFC 9457 problem details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Result alias used by handlers and the store.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// Everything a request can fail with. Each variant has one HTTP meaning; the
/// `&'static str` is the stable problem slug (`urn:latchkey:problem:<slug>`), the
/// `String` is a human-readable detail that never contains secrets or internals.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("{1}")]
    Unauthorized(&'static str, String),
    /// A DPoP proof was refused: 401 with `WWW-Authenticate: DPoP` at a
    /// protected resource (RFC 9449 §7.1), 400 where it asks for a license (§5).
    #[error("{detail}")]
    Dpop {
        resource: bool,
        slug: &'static str,
        error: &'static str,
        detail: String,
        nonce: Option<String>,
    },
    /// Sign-in offered a credential the server does not know (or that was
    /// revoked); the id lets the client call `signalUnknownCredential`.
    #[error(
        "This passkey is not registered here or has been revoked. Sign in with another passkey."
    )]
    UnknownCredential { credential_id: String },
    /// A license for a new device beyond the account's device limit: 409
    /// with the active devices, so the app can offer to remove one.
    #[error("This account already has as many devices as it may use ({max}); remove one of them to use this one.")]
    DeviceLimit {
        max: i64,
        devices: Vec<DeviceSummary>,
    },
    #[error("{1}")]
    Forbidden(&'static str, String),
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("The request body is too large.")]
    PayloadTooLarge,
    #[error("{1}")]
    UnsupportedMediaType(&'static str, String),
    /// Well-formed JSON that does not fit what the endpoint takes.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    #[error("Too many requests from this address. Wait a moment and try again.")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: logged in full, reported as a bare 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An RFC 9457 problem document; `type` is `urn:latchkey:problem:<slug>`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:latchkey:problem:username-taken")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// A sentence saying what happened and what to do next.
    pub detail: String,
    /// Only on `unknown-credential`: the credential id (base64url) to pass to `signalUnknownCredential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Only on `device-limit`: the account's active devices, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceSummary>>,
}

/// A device as a `device-limit` problem lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceSummary {
    /// The device key's JWK thumbprint (`DELETE /api/me/devices/{id}` removes it).
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub last_sync: String,
}

impl Problem {
    /// A problem for `status` with the slug's type.
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type(slug),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            credential_id: None,
            devices: None,
        }
    }
}

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl AppError {
    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest(slug, detail.into())
    }
    pub fn unauthorized(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized(slug, detail.into())
    }
    pub fn not_found(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound(slug, detail.into())
    }
    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict(slug, detail.into())
    }
    pub fn forbidden(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden(slug, detail.into())
    }
    pub fn not_signed_in() -> Self {
        Self::unauthorized(
            "not-signed-in",
            "You are not signed in. Sign in with a passkey first.",
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(..) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(..) | Self::UnknownCredential { .. } => StatusCode::UNAUTHORIZED,
            Self::Dpop { resource: true, .. } => StatusCode::UNAUTHORIZED,
            Self::Dpop {
                resource: false, ..
            } => StatusCode::BAD_REQUEST,
            Self::Forbidden(..) => StatusCode::FORBIDDEN,
            Self::NotFound(..) => StatusCode::NOT_FOUND,
            Self::Conflict(..) | Self::DeviceLimit { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(..) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem slug of this error.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(s, _)
            | Self::Unauthorized(s, _)
            | Self::Forbidden(s, _)
            | Self::NotFound(s, _)
            | Self::Conflict(s, _)
            | Self::UnsupportedMediaType(s, _)
            | Self::Unprocessable(s, _) => s,
            Self::Dpop { slug, .. } => slug,
            Self::UnknownCredential { .. } => "unknown-credential",
            Self::DeviceLimit { .. } => "device-limit",
            Self::PayloadTooLarge => "payload-too-large",
            Self::TooManyRequests { .. } => "rate-limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

/// The problem `type` URI for a slug.
pub fn problem_type(slug: &str) -> String {
    format!("urn:latchkey:problem:{slug}")
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "The server could not complete the request. Try again later.".to_owned()
            }
            Self::Unavailable(why) => {
                tracing::warn!(reason = %why, "dependency unavailable");
                "The service is temporarily unavailable. Try again in a moment.".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = Problem::new(status, self.slug(), detail);
        if let Self::UnknownCredential { credential_id } = &self {
            body.credential_id = Some(credential_id.clone());
        }
        if let Self::DeviceLimit { devices, .. } = &self {
            body.devices = Some(devices.clone());
        }
        let mut response = body.into_response();
        let headers = response.headers_mut();
        match &self {
            Self::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Dpop {
                resource,
                error,
                detail,
                nonce,
                ..
            } => {
                let challenge = format!(
                    "DPoP error=\"{error}\", error_description=\"{}\", algs=\"EdDSA ES256\"",
                    detail.replace(['"', '\\'], "'")
                );
                if *resource {
                    if let Ok(value) = HeaderValue::from_str(&challenge) {
                        headers.insert(header::WWW_AUTHENTICATE, value);
                    }
                }
                if let Some(nonce) = nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
                    headers.insert("dpop-nonce", nonce);
                }
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<crate::store::Error> for AppError {
    fn from(err: crate::store::Error) -> Self {
        use crate::store::Error as E;
        match err {
            E::Unavailable(why) => Self::Unavailable(why),
            E::Conflict(_) => Self::conflict(
                "conflict",
                "This conflicts with something that already exists.",
            ),
            E::NotFound => Self::not_found("not-found", "There is nothing here."),
            E::Other(err) => Self::Internal(err),
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        match err {
            tower_sessions::session::Error::Store(store) => {
                Self::Unavailable(format!("session store: {store}"))
            }
            other => Self::Internal(anyhow::Error::new(other).context("session")),
        }
    }
}
