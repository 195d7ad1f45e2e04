//! Per-client rate limits: token buckets per address and class of endpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ClientAddr;
use crate::error::AppError;

/// The classes of rate-limited endpoints, in the order of their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Registration, sign-in and adding passkeys.
    Ceremonies = 0,
    /// Minting licenses.
    Licenses = 1,
    /// The admin API.
    Admin = 2,
    /// Premium resources (DPoP-bound licenses).
    Premium = 3,
}

/// Which rate-limit class a path belongs to, if any.
pub fn class_of(path: &str) -> Option<Class> {
    if path.starts_with("/api/register/")
        || path.starts_with("/api/login/")
        || path.starts_with("/api/me/passkeys")
    {
        Some(Class::Ceremonies)
    } else if path == "/api/licenses" {
        Some(Class::Licenses)
    } else if path.starts_with("/api/admin/") {
        Some(Class::Admin)
    } else if path.starts_with("/api/premium/") {
        Some(Class::Premium)
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
    /// Requests per minute for each class; 0 turns a class off.
    per_minute: [u32; 4],
    buckets: Mutex<HashMap<(IpAddr, Class), (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: [u32; 4]) -> Arc<Self> {
        Arc::new(Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token; on refusal returns the seconds until one is available.
    fn take(&self, ip: IpAddr, class: Class) -> Result<(), u64> {
        let rate = self.per_minute[class as usize];
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
}

/// Refuses a request over its class's rate with 429 and `Retry-After`.
pub async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request.extensions().get::<ClientAddr>().map(|c| c.0);
    if let (Some(class), Some(ip)) = (class_of(request.uri().path()), ip) {
        if let Err(retry_after_secs) = limiter.take(ip, class) {
            tracing::info!(%ip, ?class, "rate limited");
            return AppError::TooManyRequests { retry_after_secs }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_buckets_refill_and_say_when_to_retry() {
        let limiter = RateLimiter::new([2, 0, 1, 0]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.take(ip, Class::Ceremonies).is_ok());
        assert!(limiter.take(ip, Class::Ceremonies).is_ok());
        let retry = limiter.take(ip, Class::Ceremonies).unwrap_err();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(
            limiter
                .take("10.0.0.2".parse().unwrap(), Class::Ceremonies)
                .is_ok(),
            "per address"
        );
        for _ in 0..100 {
            assert!(
                limiter.take(ip, Class::Licenses).is_ok(),
                "0 means no limit"
            );
        }
        assert!(limiter.take(ip, Class::Admin).is_ok());
        assert!(limiter.take(ip, Class::Admin).is_err());
    }
}
