//! Reading and checking the `DPoP` header of a request (RFC 9449 §4.3).

use axum::http::HeaderMap;
use latchkey_core::dpop::{verify_proof, DpopError, DpopProof, Expected};

use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::store::now;

/// Where a proof is checked: a protected resource answers 401 with
/// `WWW-Authenticate: DPoP` (RFC 9449 §7.1), the license endpoint 400 (§5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    TokenEndpoint,
    Resource,
}

/// A refused proof or token as a problem, with a fresh nonce when nonces are on.
pub(super) fn dpop_error(state: &AppState, at: At, err: &DpopError) -> AppError {
    let (slug, error) = match err {
        DpopError::NonceRequired => ("use-dpop-nonce", "use_dpop_nonce"),
        _ => ("invalid-dpop-proof", "invalid_dpop_proof"),
    };
    AppError::Dpop {
        resource: at == At::Resource,
        slug,
        error,
        detail: format!("{}.", capitalised(&err.to_string())),
        nonce: state.dpop_nonce.as_ref().map(|k| k.issue(now())),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Reads the single `DPoP` header and checks the proof for this request.
pub(super) fn check_proof(
    state: &AppState,
    headers: &HeaderMap,
    htm: &str,
    path: &str,
    ath: Option<&str>,
    at: At,
) -> Result<DpopProof> {
    let reject = |err: DpopError| dpop_error(state, at, &err);
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(reject(DpopError::Malformed));
    };
    let proof = value.to_str().map_err(|_| reject(DpopError::Malformed))?;
    let htu = state.settings.public_uri(path);
    let expected = Expected {
        htm,
        htu: &htu,
        now: now(),
        window: state.settings.dpop_window_secs,
        ath,
        nonce: state.dpop_nonce.as_ref(),
    };
    verify_proof(proof, &expected).map_err(reject)
}

/// When a proof's `jti` may be forgotten: its `iat` window has passed.
pub(super) fn replay_horizon(state: &AppState, proof: &DpopProof) -> i64 {
    proof.iat + state.settings.dpop_window_secs + 1
}
