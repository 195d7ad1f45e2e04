//! Latchkey: passkey sign-in and offline, device-bound entitlement licenses for PWAs.
//!
//! The ground floor (`config`, `error`, `http`, `state`, `store`, `metrics`)
//! imports no feature; each feature (`passkey`, `license`, `revocation`,
//! `admin`, `health`) owns its routes, typed requests and answers, and rules;
//! `app` puts them together. The license format is the separate, pure
//! `latchkey_core` crate (re-exported), which other Rust services can use alone.
#![forbid(unsafe_code)]

pub use latchkey_core;

/// Administration: the admin API and the operations it shares with the CLI.
pub mod admin;
/// API keys for machines: secrets, scopes, and who is calling.
pub mod apikeys;
/// The router and serving.
pub mod app;
/// Payment webhooks (Stripe, Paddle) that grant and remove entitlements.
pub mod billing;
/// The command line (everything but `serve`).
pub mod cli;
/// Flags and environment variables.
pub mod config;
/// Devices: the device keys licenses are bound to; listing, renaming, removing.
pub mod devices;
/// The problem+json error type.
pub mod error;
/// Liveness and readiness probes.
pub mod health;
/// Extractors, middleware, rate limits, sessions: HTTP helpers every feature uses.
pub mod http;
/// Minting licenses, the published keys, the premium example.
pub mod license;
/// Prometheus metrics.
pub mod metrics;
/// The OpenAPI document, assembled from the features' routers.
pub mod openapi;
/// Passkey registration, sign-in and self-service.
pub mod passkey;
/// Status lists that carry revocations to offline apps.
pub mod revocation;
/// Application state and bootstrap.
pub mod state;
/// The database layer (SQLite or PostgreSQL): the only place with SQL.
pub mod store;
/// Usernames as identifiers: PRECIS keys and confusable skeletons.
pub mod usernames;
/// Event webhooks out (Standard Webhooks): outbox, sender, delivery log.
pub mod webhooks;
