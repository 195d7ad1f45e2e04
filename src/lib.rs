//! Latchkey: passkey sign-in and offline, device-bound entitlement licenses for PWAs.
#![forbid(unsafe_code)]

/// `latchkey admin …` and `latchkey keys …` commands.
pub mod admin;
/// Application state, router and serving.
pub mod app;
/// Flags and environment variables.
pub mod config;
/// The problem+json error type.
pub mod error;
/// Licenses: signing keys, minting, DPoP, verification.
pub mod license;
/// Prometheus metrics.
pub mod metrics;
/// Security headers, request ids, timeouts, rate limits.
pub mod middleware;
/// The OpenAPI document.
pub mod openapi;
/// Passkey registration, sign-in and self-service.
pub mod passkey;
/// Status lists that carry revocations to offline apps.
pub mod revocation;
/// The database layer (SQLite or PostgreSQL).
pub mod store;
