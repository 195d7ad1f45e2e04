//! DPoP proofs (RFC 9449): checking that a request was signed by the device
//! key a license is, or will be, bound to.

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::jose::{b64, parse_compact, unb64, PublicJwk};

/// A proof that passed every check.
#[derive(Debug, Clone)]
pub struct DpopProof {
    /// Thumbprint of the proof's public key.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

impl DpopProof {
    /// The replay-store key: one use per key and `jti`.
    pub fn replay_id(&self) -> String {
        b64(Sha256::digest(
            format!("{}.{}", self.jkt, self.jti).as_bytes(),
        ))
    }
}

/// What the request the proof came with must match.
pub struct Expected<'a> {
    pub htm: &'a str,
    /// The request URI as the client addressed it (scheme, host, port, path).
    pub htu: &'a str,
    pub now: i64,
    /// Accepted distance of `iat` from `now`, in seconds.
    pub window: i64,
    /// `ath` to require: base64url(SHA-256(access token)).
    pub ath: Option<&'a str>,
    /// When set, the proof must carry a nonce this accepts.
    pub nonce: Option<&'a NonceKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is not a well-formed JWT")]
    Malformed,
    #[error("the DPoP proof must have typ \"dpop+jwt\"")]
    WrongType,
    #[error("the DPoP proof algorithm must be EdDSA or ES256 with a matching public jwk")]
    UnsupportedKey,
    #[error("the DPoP proof header has a member that is not allowed: {0}")]
    ForbiddenHeader(String),
    #[error("the DPoP proof signature is invalid")]
    BadSignature,
    #[error("the DPoP proof claim {0} is missing or of the wrong type")]
    BadClaim(&'static str),
    #[error("the DPoP proof is for another HTTP method")]
    WrongMethod,
    #[error("the DPoP proof is for another URI")]
    WrongUri,
    #[error("the DPoP proof's iat is too far from the server's time")]
    Stale,
    #[error("the DPoP proof's ath does not match the access token")]
    WrongAth,
    #[error("a fresh server nonce is required in the DPoP proof")]
    NonceRequired,
    /// Found by the caller's replay store, not by [`verify_proof`].
    #[error("this DPoP proof was already used")]
    Replayed,
}

/// Verifies a proof: RFC 9449 §4.3 checks 1-11, except replay (checked by the
/// caller against the shared store).
pub fn verify_proof(proof: &str, expected: &Expected<'_>) -> Result<DpopProof, DpopError> {
    if proof.len() > 8 * 1024 {
        return Err(DpopError::Malformed);
    }
    let jws = parse_compact(proof).map_err(|_| DpopError::Malformed)?;
    for member in jws.header.keys() {
        if !matches!(member.as_str(), "typ" | "alg" | "jwk") {
            return Err(DpopError::ForbiddenHeader(member.clone()));
        }
    }
    if jws.header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::WrongType);
    }
    let jwk = jws
        .header
        .get("jwk")
        .and_then(Value::as_object)
        .and_then(PublicJwk::from_json)
        .ok_or(DpopError::UnsupportedKey)?;
    if jws.header.get("alg").and_then(Value::as_str) != Some(jwk.alg()) {
        return Err(DpopError::UnsupportedKey);
    }
    verify_signature(&jwk, jws.signing_input.as_bytes(), &jws.signature)?;

    let claims = &jws.payload;
    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(DpopError::BadClaim(name))
    };
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > 256 {
        return Err(DpopError::BadClaim("jti"));
    }
    if text("htm")? != expected.htm {
        return Err(DpopError::WrongMethod);
    }
    if !same_uri(text("htu")?, expected.htu) {
        return Err(DpopError::WrongUri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::BadClaim("iat"))?;
    if (iat - expected.now).abs() > expected.window {
        return Err(DpopError::Stale);
    }
    if let Some(ath) = expected.ath {
        if claims.get("ath").and_then(Value::as_str) != Some(ath) {
            return Err(DpopError::WrongAth);
        }
    }
    if let Some(key) = expected.nonce {
        let ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| key.accepts(n, expected.now));
        if !ok {
            return Err(DpopError::NonceRequired);
        }
    }
    Ok(DpopProof {
        jkt: jwk.thumbprint(),
        jti: jti.to_owned(),
        iat,
    })
}

fn verify_signature(jwk: &PublicJwk, message: &[u8], signature: &[u8]) -> Result<(), DpopError> {
    match jwk {
        PublicJwk::Okp { x, .. } => {
            let x: [u8; 32] = unb64(x)
                .and_then(|x| x.try_into().ok())
                .ok_or(DpopError::UnsupportedKey)?;
            let key = VerifyingKey::from_bytes(&x).map_err(|_| DpopError::UnsupportedKey)?;
            if key.is_weak() {
                return Err(DpopError::UnsupportedKey);
            }
            let signature =
                Signature::from_slice(signature).map_err(|_| DpopError::BadSignature)?;
            key.verify_strict(message, &signature)
                .map_err(|_| DpopError::BadSignature)
        }
        PublicJwk::Ec { x, y, .. } => {
            let (x, y) = (
                unb64(x).ok_or(DpopError::UnsupportedKey)?,
                unb64(y).ok_or(DpopError::UnsupportedKey)?,
            );
            let point = [&[0x04][..], &x, &y].concat();
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                point,
            )
            .verify(message, signature)
            .map_err(|_| DpopError::BadSignature)
        }
    }
}

/// Compares `htu` with the expected URI ignoring query and fragment (RFC 9449 §4.3 step 9),
/// after normalising both (scheme and host case, default ports).
fn same_uri(htu: &str, expected: &str) -> bool {
    let (Ok(mut a), Ok(mut b)) = (url::Url::parse(htu), url::Url::parse(expected)) else {
        return false;
    };
    for u in [&mut a, &mut b] {
        u.set_query(None);
        u.set_fragment(None);
    }
    a == b
}

/// `base64url(SHA-256(token))`, the `ath` a proof must carry with an access token.
pub fn ath(token: &str) -> String {
    b64(Sha256::digest(token.as_bytes()))
}

/// Server nonces (RFC 9449 §8) without server-side state: a time window and its
/// MAC under a key every instance derives from the KEK. A nonce is good in its
/// window and the next one.
#[derive(Clone)]
pub struct NonceKey {
    key: [u8; 32],
    window_secs: i64,
}

impl NonceKey {
    pub fn new(key: [u8; 32], window_secs: i64) -> Self {
        Self {
            key,
            window_secs: window_secs.max(1),
        }
    }

    fn mac(&self, window: i64) -> Vec<u8> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(),
        };
        mac.update(&window.to_be_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub fn issue(&self, now: i64) -> String {
        let window = now.div_euclid(self.window_secs);
        b64([window.to_be_bytes().as_slice(), &self.mac(window)].concat())
    }

    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Some(bytes) = unb64(nonce) else {
            return false;
        };
        if bytes.len() != 24 {
            return false;
        }
        let Ok(window) = <[u8; 8]>::try_from(&bytes[..8]).map(i64::from_be_bytes) else {
            return false;
        };
        let current = now.div_euclid(self.window_secs);
        (window == current || window == current - 1)
            && bool::from(bytes[8..].ct_eq(&self.mac(window)))
    }
}
