//! Offline licenses: signing keys, minting with DPoP device binding, strict
//! verification (also usable by other Rust services), and the premium example.

pub mod dpop;
pub mod jose;
pub mod keys;
pub(crate) mod mint;
pub(crate) mod premium;
pub mod verify;

use axum::routing::{get, post};
use axum::Router;
use ed25519_dalek::Signer;
use serde_json::Value;

pub use verify::{JwkSet, LicenseClaims, StatusRef, Verifier, VerifyError};

use crate::app::AppState;
use jose::b64;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/licenses", post(mint::mint))
        .route("/api/premium/example", get(premium::example))
}

/// The published keys: public, read-only, no session.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(mint::jwks))
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":typ,"kid":kid}`.
pub fn sign_jwt(
    key: &ed25519_dalek::SigningKey,
    kid: &str,
    typ: &str,
    claims: &Value,
) -> anyhow::Result<String> {
    let header = serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": kid});
    let input = format!(
        "{}.{}",
        b64(serde_json::to_vec(&header)?),
        b64(serde_json::to_vec(claims)?)
    );
    let signature = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", b64(signature.to_bytes())))
}
