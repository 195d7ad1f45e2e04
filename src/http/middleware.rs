//! Cross-cutting HTTP layers: the client's address, security headers, the
//! same-origin rule for writes, problem documents for every API error, and
//! request metrics with bounded labels.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ClientAddr;
use crate::error::{AppError, Problem, PROBLEM_JSON};

/// The Content-Security-Policy of every page: scripts, styles and connections
/// from this origin only; no inline code; never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; \
                       base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response; HSTS only when the public origin is https.
pub async fn security_headers(State(https): State<bool>, request: Request, next: Next) -> Response {
    let is_sw = request.uri().path() == "/sw.js";
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "x-frame-options", "DENY");
    set(
        h,
        "permissions-policy",
        "publickey-credentials-get=(self), publickey-credentials-create=(self)",
    );
    if https {
        set(
            h,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    if is_sw {
        // The service worker must be re-checked on every load so updates are picked up.
        // (No Service-Worker-Allowed: its scope is its own folder, the base path.)
        set(h, "cache-control", "no-cache");
    } else if is_api && !h.contains_key(header::CACHE_CONTROL) {
        // API answers carry sessions, challenges, tokens or personal data unless they say otherwise.
        set(h, "cache-control", "no-store");
    } else if !h.contains_key(header::CACHE_CONTROL) {
        // Pages and assets: revalidate (ETag / Last-Modified) rather than trust a stale copy.
        set(h, "cache-control", "no-cache");
    }
    response
}

/// Decides the client's address once ([`ClientAddr`]) for everything after it.
pub async fn client_addr(
    State(trust_forwarded): State<bool>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(addr) = ClientAddr::of(request.headers(), peer, trust_forwarded) {
        request.extensions_mut().insert(addr);
    }
    next.run(request).await
}

/// Drops an incoming `x-request-id` that is not a short token, so that logs
/// never carry what a client wrote there; a new id is made instead.
pub async fn sane_request_id(mut request: Request, next: Next) -> Response {
    let sane = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !sane {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// State-changing requests must come from the service's own origin (CSRF defence
/// in depth, on top of SameSite=Strict cookies). The problem names the origin
/// expected, so a misconfigured deployment is easy to diagnose.
pub async fn same_origin_writes(
    State(origin): State<std::sync::Arc<str>>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_bearer(&request) {
        // A machine with an API key: browsers never add an Authorization
        // header on their own, so there is no forgery to defend against; the
        // request's cookies are dropped so that it is judged by the key alone.
        request.headers_mut().remove(header::COOKIE);
        return next.run(request).await;
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let sent = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if sent != Some(&*origin) {
            return AppError::forbidden(
                "cross-origin-request",
                format!("State-changing requests must come from this service's origin, {origin}."),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether the request carries `Authorization: Bearer …` (an API key).
fn is_bearer(request: &Request) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// Every error answer that is not already a problem document (or an HTML
/// page) becomes one: unknown API routes, wrong methods (keeping `Allow`),
/// body limits and timeouts from the tower layers.
pub async fn problems(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with(PROBLEM_JSON) || content_type.starts_with("text/html") {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "There is nothing at this address.".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (
                "method-not-allowed",
                format!("{method} is not allowed here; use {allowed}."),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            "The request body is larger than this service accepts.".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "The service is temporarily unavailable. Try again in a moment.".to_owned(),
        ),
        _ => ("error", format!("The request failed ({status}).")),
    };
    let problem = Problem::new(status, slug, detail).into_response();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE && !parts.headers.contains_key(header::RETRY_AFTER)
    {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Response::from_parts(parts, body)
}

/// Answers unknown `/api/` paths (every method) with a 404 problem that points
/// at the OpenAPI document (under the base path, if any).
pub async fn no_such_endpoint(document: std::sync::Arc<str>) -> AppError {
    AppError::not_found(
        "not-found",
        format!("There is no API endpoint at this address; {document} lists them all."),
    )
}

/// Records request metrics. Labels are bounded whatever clients send: the
/// matched route template (or `unmatched`, or `static` for pages), a fixed set
/// of methods (or `other`), and the status code.
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None if request.uri().path().starts_with("/api/") => "unmatched".to_owned(),
        None => "static".to_owned(),
    };
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::record_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The span of a request: its id and matched route, never the raw URI with its query.
pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("static");
    tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_has_no_inline_or_eval_and_forbids_framing() {
        assert!(!CSP.contains("unsafe-inline"));
        assert!(!CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn only_the_hop_the_proxy_appended_is_trusted() {
        let mut headers = axum::http::HeaderMap::new();
        let peer: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        assert_eq!(
            ClientAddr::of(&headers, Some(peer), true),
            Some(ClientAddr("203.0.113.7".parse().unwrap()))
        );
        assert_eq!(
            ClientAddr::of(&headers, Some(peer), false),
            Some(ClientAddr(peer))
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.2:41234"),
        );
        assert_eq!(
            ClientAddr::of(&headers, Some(peer), true),
            Some(ClientAddr("10.0.0.2".parse().unwrap())),
            "ip:port is the proxy's own form"
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, garbage"),
        );
        assert_eq!(
            ClientAddr::of(&headers, Some(peer), true),
            Some(ClientAddr(peer)),
            "an unparseable last hop falls back to the socket, never to an earlier hop"
        );
    }
}
