//! HTTP helpers every feature uses: extractors whose rejections are problem
//! documents, the client's address, the signed-in session, times as RFC 3339,
//! the middleware stack and rate limits.

pub mod middleware;
pub mod ratelimit;
pub mod session;

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AppError;

/// JSON body extractor whose rejections are problem documents: 415 without a
/// JSON content type, 400 for malformed JSON, 422 for JSON of the wrong shape
/// (not an object, a missing or unknown field, a wrong type), 413 over the
/// body limit.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "json-required",
                "Send the body as JSON with Content-Type: application/json.".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::bad_request("malformed-json", "The body could not be read.")
            }
        })?;
        // Every request body here is an object; serde would also read a struct
        // from an array, which no client means.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
        {
            return Err(AppError::Unprocessable(
                "invalid-body",
                "The JSON body must be an object.".into(),
            ));
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(value)| Self(value))
            .map_err(json_rejection)
    }
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType(
            "json-required",
            "Send the body as JSON with Content-Type: application/json.".into(),
        ),
        JsonRejection::JsonDataError(err) => AppError::Unprocessable(
            "invalid-body",
            format!(
                "The JSON body does not fit this endpoint: {}.",
                err.body_text()
            ),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
        other => AppError::bad_request(
            "malformed-json",
            format!("The body is not valid JSON: {}.", other.body_text()),
        ),
    }
}

/// Query-string extractor whose rejections are 400 problems.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|rejection: QueryRejection| {
                AppError::bad_request(
                    "invalid-query",
                    format!(
                        "The query string is not valid here: {}.",
                        rejection.body_text()
                    ),
                )
            })
    }
}

/// Path-parameter extractor whose rejections are 400 problems.
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|rejection: PathRejection| {
                AppError::bad_request(
                    "invalid-path",
                    format!("The address is not valid here: {}.", rejection.body_text()),
                )
            })
    }
}

/// The address of the client, decided once per request by
/// [`middleware::client_addr`]: the socket peer, or with
/// `LATCHKEY_TRUST_FORWARDED_FOR` the hop the proxy appended to
/// `X-Forwarded-For`. Rate limits, sessions and audit rows all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// From the last `X-Forwarded-For` hop when trusted, else the socket peer.
    /// A last hop that does not parse falls back to the peer, never to an
    /// earlier hop, which the client itself could have written.
    pub fn of(
        parts_headers: &axum::http::HeaderMap,
        peer: Option<IpAddr>,
        trust_forwarded: bool,
    ) -> Option<Self> {
        if trust_forwarded {
            let last = parts_headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
                .and_then(|hop| {
                    hop.parse::<IpAddr>()
                        .ok()
                        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
                });
            if let Some(ip) = last {
                return Some(Self(ip));
            }
        }
        peer.map(Self)
    }
}

/// Where a request came from, for the audit log and the session record.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub addr: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| c.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            .map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        Ok(Self { addr, user_agent })
    }
}

/// RFC 3339 text for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A point in time in a response, written as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub i64);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

impl utoipa::PartialSchema for Time {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for Time {}
