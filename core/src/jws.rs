//! Compact JWS with Ed25519 (`alg` EdDSA): signing, strict verification, and the
//! JWK sets that publish the keys.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jose::{b64, parse_compact, thumbprint, unb64, StrictJson};
use crate::verify::VerifyError;

/// The protected header of every token Latchkey signs: nothing but these three.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":typ,"kid":kid}`.
pub fn sign_jwt<C: Serialize + ?Sized>(
    key: &SigningKey,
    kid: &str,
    typ: &str,
    claims: &C,
) -> Result<String, serde_json::Error> {
    let header = Header {
        alg: "EdDSA",
        typ,
        kid,
    };
    let input = format!(
        "{}.{}",
        b64(serde_json::to_vec(&header)?),
        b64(serde_json::to_vec(claims)?)
    );
    let signature = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", b64(signature.to_bytes())))
}

/// Verifies the signature and header of a JWT of type `typ`; returns its claims,
/// not yet checked. Refuses another `alg` or `typ`, an unknown `kid`, any other
/// header member (`jwk`, `jku`, `x5u`, `x5c`, `crit`…), duplicate members and
/// non-canonical signatures.
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

/// One published signing key, as `/.well-known/jwks.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedJwk {
    #[cfg_attr(feature = "openapi", schema(example = "OKP"))]
    pub kty: String,
    #[cfg_attr(feature = "openapi", schema(example = "Ed25519"))]
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The RFC 7638 thumbprint of the key.
    pub kid: String,
    #[cfg_attr(feature = "openapi", schema(example = "EdDSA"))]
    pub alg: String,
    #[serde(rename = "use")]
    #[cfg_attr(feature = "openapi", schema(example = "sig"))]
    pub usage: String,
}

impl PublishedJwk {
    /// The JWK of an Ed25519 signing key, with its thumbprint as `kid`.
    pub fn ed25519(key: &VerifyingKey) -> Self {
        let x = b64(key.as_bytes());
        Self {
            kid: thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", &x)]),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            alg: "EdDSA".into(),
            usage: "sig".into(),
        }
    }
}

/// A published JWK set (`application/jwk-set+json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedJwkSet {
    pub keys: Vec<PublishedJwk>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn weak_keys_are_refused_when_a_jwk_set_is_loaded() {
        // The identity point (a small-order key): y = 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let set =
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64(identity)}]});
        assert_eq!(
            JwkSet::from_json(set.to_string().as_bytes()).err(),
            Some(JwksError::WeakKey("weak".into()))
        );
        let bad = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"}]});
        assert!(matches!(
            JwkSet::from_json(bad.to_string().as_bytes()),
            Err(JwksError::BadKey(_))
        ));
        assert_eq!(JwkSet::from_json(b"[]").err(), Some(JwksError::NotAJwkSet));
        let mixed = json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        assert_eq!(
            JwkSet::from_json(mixed.to_string().as_bytes())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_published_key_round_trips_through_a_jwk_set() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let set = PublishedJwkSet {
            keys: vec![PublishedJwk::ed25519(&key.verifying_key())],
        };
        let json = serde_json::to_vec(&set).unwrap();
        let parsed = JwkSet::from_json(&json).unwrap();
        assert_eq!(
            parsed.get(&set.keys[0].kid),
            Some(&key.verifying_key()),
            "{}",
            String::from_utf8_lossy(&json)
        );
        assert!(String::from_utf8_lossy(&json).contains(r#""use":"sig""#));
    }

    #[test]
    fn the_header_has_exactly_alg_typ_and_kid() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let token = sign_jwt(&key, "k1", "x+jwt", &json!({"a": 1})).unwrap();
        let header = token.split('.').next().unwrap();
        assert_eq!(
            String::from_utf8(unb64(header).unwrap()).unwrap(),
            r#"{"alg":"EdDSA","typ":"x+jwt","kid":"k1"}"#
        );
    }
}
