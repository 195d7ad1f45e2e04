//! Strict verification of licenses (and other Latchkey JWTs) against a JWK set.
//!
//! Every path refuses: another `alg` or `typ`, an unknown `kid`, keys named in
//! the header, any `crit`, duplicate members, a non-canonical signature
//! (`verify_strict`), claims of the wrong type, wrong `iss`/`aud`, and expiry
//! beyond a fixed leeway (RFC 8725).

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::jose::{parse_compact, unb64, StrictJson};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// The `typ` of a license.
pub const LICENSE_TYP: &str = "license+jwt";

/// Public keys that may sign, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    keys: HashMap<String, VerifyingKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("the JWK set is not a JSON object with a \"keys\" array")]
    NotAJwkSet,
    #[error("key {0:?} is not a valid Ed25519 public key")]
    BadKey(String),
    #[error("key {0:?} is a weak (small-order) Ed25519 key")]
    WeakKey(String),
}

impl JwkSet {
    /// Reads the Ed25519 keys of a JWK set; other key types are skipped, weak
    /// and malformed Ed25519 keys are an error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JwksError> {
        let StrictJson(value) = serde_json::from_slice(bytes).map_err(|_| JwksError::NotAJwkSet)?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwkSet)?;
        let mut set = Self::default();
        for jwk in keys {
            let text = |k: &str| jwk.get(k).and_then(Value::as_str);
            if text("kty") != Some("OKP") || text("crv") != Some("Ed25519") {
                continue;
            }
            let kid = text("kid").unwrap_or_default().to_owned();
            let key = text("x")
                .and_then(unb64)
                .and_then(|x| <[u8; 32]>::try_from(x.as_slice()).ok())
                .and_then(|x| VerifyingKey::from_bytes(&x).ok())
                .ok_or_else(|| JwksError::BadKey(kid.clone()))?;
            if key.is_weak() {
                return Err(JwksError::WeakKey(kid));
            }
            set.keys.insert(kid, key);
        }
        Ok(set)
    }

    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyingKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a compact JWS with JSON header and payload")]
    Malformed,
    #[error("algorithm must be EdDSA")]
    UnsupportedAlgorithm,
    #[error("wrong token type")]
    WrongType,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("header member {0:?} is not allowed")]
    ForbiddenHeader(String),
    #[error("signature invalid")]
    BadSignature,
    #[error("claim {0:?} is missing")]
    MissingClaim(&'static str),
    #[error("claim {0:?} has the wrong type")]
    WrongClaimType(&'static str),
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
}

/// Verifies the signature and header of a JWT of type `typ`; returns its claims unchecked.
pub fn verify_jws(
    token: &str,
    typ: &str,
    jwks: &JwkSet,
) -> Result<Map<String, Value>, VerifyError> {
    let jws = parse_compact(token).map_err(|_| VerifyError::Malformed)?;
    for member in jws.header.keys() {
        if !matches!(member.as_str(), "alg" | "typ" | "kid") {
            return Err(VerifyError::ForbiddenHeader(member.clone()));
        }
    }
    if jws.header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    if jws.header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(VerifyError::WrongType);
    }
    let kid = jws
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownKey)?;
    let key = jwks.get(kid).ok_or(VerifyError::UnknownKey)?;
    let signature = Signature::from_slice(&jws.signature).map_err(|_| VerifyError::BadSignature)?;
    key.verify_strict(jws.signing_input.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(jws.payload)
}

/// Claims of a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub ent: Vec<String>,
    /// RFC 7638 thumbprint of the device key the license is bound to.
    pub jkt: String,
    pub status: Option<StatusRef>,
    pub cks: Vec<Value>,
    pub name: Option<String>,
}

/// `status.status_list` of a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRef {
    pub idx: u64,
    pub uri: String,
}

/// Verifies licenses for one issuer and audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub jwks: JwkSet,
    pub issuer: String,
    pub audience: String,
}

fn text(claims: &Map<String, Value>, name: &'static str) -> Result<String, VerifyError> {
    match claims.get(name) {
        None => Err(VerifyError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(VerifyError::WrongClaimType(name)),
    }
}

fn number(claims: &Map<String, Value>, name: &'static str) -> Result<i64, VerifyError> {
    match claims.get(name) {
        None => Err(VerifyError::MissingClaim(name)),
        Some(Value::Number(n)) => n.as_i64().ok_or(VerifyError::WrongClaimType(name)),
        Some(_) => Err(VerifyError::WrongClaimType(name)),
    }
}

impl Verifier {
    /// Verifies a license at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<LicenseClaims, VerifyError> {
        let claims = verify_jws(token, LICENSE_TYP, &self.jwks)?;
        let iss = text(&claims, "iss")?;
        let sub = text(&claims, "sub")?;
        let jti = text(&claims, "jti")?;
        let exp = number(&claims, "exp")?;
        let iat = number(&claims, "iat")?;
        let nbf = match claims.get("nbf") {
            None => iat,
            Some(_) => number(&claims, "nbf")?,
        };
        let aud = match claims.get("aud") {
            None => return Err(VerifyError::MissingClaim("aud")),
            Some(Value::String(s)) => (s == &self.audience).then(|| s.clone()),
            Some(Value::Array(list)) => {
                if list.iter().any(|v| !v.is_string()) {
                    return Err(VerifyError::WrongClaimType("aud"));
                }
                list.iter()
                    .any(|v| v.as_str() == Some(&self.audience))
                    .then(|| self.audience.clone())
            }
            Some(_) => return Err(VerifyError::WrongClaimType("aud")),
        };
        let ent = match claims.get("ent") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(VerifyError::WrongClaimType("ent"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(VerifyError::WrongClaimType("ent")),
        };
        let jkt = match claims.get("cnf") {
            None => return Err(VerifyError::MissingClaim("cnf")),
            Some(Value::Object(cnf)) => {
                text(cnf, "jkt").map_err(|_| VerifyError::WrongClaimType("cnf"))?
            }
            Some(_) => return Err(VerifyError::WrongClaimType("cnf")),
        };
        let status = match claims.get("status") {
            None => None,
            Some(status) => {
                let list = status
                    .get("status_list")
                    .ok_or(VerifyError::WrongClaimType("status"))?;
                let idx = list
                    .get("idx")
                    .and_then(Value::as_u64)
                    .ok_or(VerifyError::WrongClaimType("status"))?;
                let uri = list
                    .get("uri")
                    .and_then(Value::as_str)
                    .ok_or(VerifyError::WrongClaimType("status"))?;
                Some(StatusRef {
                    idx,
                    uri: uri.to_owned(),
                })
            }
        };
        let cks = match claims.get("cks") {
            None => Vec::new(),
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(VerifyError::WrongClaimType("cks")),
        };
        let name = match claims.get("name") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(VerifyError::WrongClaimType("name")),
        };
        if iss != self.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        let aud = aud.ok_or(VerifyError::WrongAudience)?;
        if now > exp + LEEWAY_SECS {
            return Err(VerifyError::Expired);
        }
        if now + LEEWAY_SECS < nbf {
            return Err(VerifyError::NotYetValid);
        }
        Ok(LicenseClaims {
            iss,
            aud,
            sub,
            iat,
            nbf,
            exp,
            jti,
            ent,
            jkt,
            status,
            cks,
            name,
        })
    }
}
