//! Cross-cutting HTTP layers: security headers, request ids and spans, request
//! timeouts, and per-client rate limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::AppError;

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
        set(h, "cache-control", "no-cache");
        set(h, "service-worker-allowed", "/");
    } else if is_api && !h.contains_key(header::CACHE_CONTROL) {
        // API answers carry sessions, challenges, tokens or personal data unless they say otherwise.
        set(h, "cache-control", "no-store");
    } else if !h.contains_key(header::CACHE_CONTROL) {
        // Pages and assets: revalidate (ETag / Last-Modified) rather than trust a stale copy.
        set(h, "cache-control", "no-cache");
    }
    response
}

/// A request id (from `x-request-id` if the load balancer set a sane one, else
/// new) and a span with the matched route, never the raw URI with its query.
pub async fn trace(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "static".to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::debug!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "response"));
    crate::metrics::record_request(method.as_str(), &route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Bounds the time a request may take; a request over the limit gets a 503 problem.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::Unavailable("request timed out".into()).into_response(),
    }
}

/// Which rate-limit bucket a path belongs to, if any.
pub fn class_of(path: &str) -> Option<usize> {
    if path.starts_with("/api/register/")
        || path.starts_with("/api/login/")
        || path.starts_with("/api/me/passkeys")
    {
        Some(0)
    } else if path == "/api/licenses" {
        Some(1)
    } else if path.starts_with("/api/admin/") {
        Some(2)
    } else {
        None
    }
}

/// Token buckets per client address and endpoint class, kept in memory.
///
/// Per instance by design: behind a load balancer each instance allows the
/// configured rate, so N instances allow at most N times it. The counters are
/// a brake on abuse, not an accounting system, so that bound is enough.
pub struct RateLimiter {
    /// Requests per minute for ceremonies, licenses, admin; 0 turns a class off.
    per_minute: [u32; 3],
    trust_forwarded_for: bool,
    buckets: Mutex<HashMap<(IpAddr, usize), (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: [u32; 3], trust_forwarded_for: bool) -> Arc<Self> {
        Arc::new(Self {
            per_minute,
            trust_forwarded_for,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token; on refusal returns the seconds until one is available.
    fn take(&self, ip: IpAddr, class: usize) -> Result<(), u64> {
        let rate = self.per_minute[class];
        if rate == 0 {
            return Ok(());
        }
        let capacity = f64::from(rate);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > 100_000 {
            // Forget clients that have been quiet long enough to be full again.
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() * per_sec < capacity);
        }
        let (tokens, at) = buckets.entry((ip, class)).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }

    /// The client's address: the socket peer, or the last `X-Forwarded-For`
    /// hop when the service is configured to sit behind a trusted proxy.
    pub fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|v| v.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }
}

pub async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    if let (Some(class), Some(ip)) = (class_of(request.uri().path()), limiter.client_ip(&request)) {
        if let Err(retry_after_secs) = limiter.take(ip, class) {
            tracing::info!(%ip, class, "rate limited");
            return AppError::TooManyRequests { retry_after_secs }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_over_the_time_limit_gets_a_503_problem() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(50),
                timeout,
            ));
        let slow = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(slow.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()["content-type"], "application/problem+json");
        let fast = app
            .oneshot(Request::get("/fast").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fast.status(), axum::http::StatusCode::OK);
    }

    #[test]
    fn token_buckets_refill_and_say_when_to_retry() {
        let limiter = RateLimiter::new([2, 0, 1], false);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.take(ip, 0).is_ok());
        assert!(limiter.take(ip, 0).is_ok());
        let retry = limiter.take(ip, 0).unwrap_err();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(
            limiter.take("10.0.0.2".parse().unwrap(), 0).is_ok(),
            "per address"
        );
        for _ in 0..100 {
            assert!(limiter.take(ip, 1).is_ok(), "0 means no limit");
        }
        assert!(limiter.take(ip, 2).is_ok());
        assert!(limiter.take(ip, 2).is_err());
    }

    #[test]
    fn the_policy_has_no_inline_or_eval_and_forbids_framing() {
        assert!(!CSP.contains("unsafe-inline"));
        assert!(!CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }
}
