//! Latchkey's license format, usable by any Rust service that wants to check a
//! license without running Latchkey: typed claims, compact JWS signing and
//! strict verification (RFC 7515, RFC 8725), DPoP proofs (RFC 9449) and token
//! status lists.
//!
//! Pure functions and types only: no web framework, no database, no I/O.
//! A test in the service fails if this crate ever depends on one.
#![forbid(unsafe_code)]

/// License and status-list claims, one type each for minting and verifying.
pub mod claims;
/// DPoP proofs: checking that a request was signed by a device key.
pub mod dpop;
/// base64url, strict JSON, compact JWS parsing, JWKs and thumbprints.
pub mod jose;
/// Signing and verifying compact JWS with Ed25519; JWK sets.
pub mod jws;
/// Token status lists: the bitstring, its encoding, and the check a verifier makes.
pub mod status_list;
/// Strict license verification.
pub mod verify;

pub use claims::{Audience, Confirmation, LicenseClaims, StatusClaim, StatusRef, LICENSE_TYP};
pub use jws::{sign_jwt, JwkSet, JwksError, PublishedJwk, PublishedJwkSet};
pub use verify::{check_time, Verifier, VerifyError, LEEWAY_SECS};
