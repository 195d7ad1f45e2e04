//! The small part of JOSE that Latchkey needs: base64url, strict JSON,
//! compact JWS parsing, JWKs and RFC 7638 thumbprints.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, refusing padding, other alphabets and
/// non-canonical trailing bits.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A JSON value parsed with duplicate object members refused (RFC 7515 §5.2,
/// RFC 8725 §3.2: a duplicate could make two parsers disagree on a claim).
pub struct StrictJson(pub Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(value) = map.next_value()?;
            if out.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate member {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses bytes as strict JSON and requires an object.
pub fn strict_object(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<StrictJson>(bytes) {
        Ok(StrictJson(Value::Object(map))) => Some(map),
        _ => None,
    }
}

/// A compact JWS split into its parts; nothing is verified yet.
pub struct CompactJws<'a> {
    pub header: serde_json::Map<String, Value>,
    pub payload: serde_json::Map<String, Value>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the signed bytes.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Why a compact JWS could not even be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub fn parse_compact(token: &str) -> Result<CompactJws<'_>, Malformed> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed);
    };
    let header = unb64(h).and_then(|b| strict_object(&b)).ok_or(Malformed)?;
    let payload = unb64(p).and_then(|b| strict_object(&b)).ok_or(Malformed)?;
    let signature = unb64(s).ok_or(Malformed)?;
    Ok(CompactJws {
        header,
        payload,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// A public JWK of one of the kinds Latchkey uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum PublicJwk {
    /// Ed25519 (RFC 8037).
    #[serde(rename = "OKP")]
    Okp { crv: String, x: String },
    /// P-256 (RFC 7518).
    #[serde(rename = "EC")]
    Ec { crv: String, x: String, y: String },
}

impl PublicJwk {
    /// Reads a public JWK, refusing private members and unsupported curves.
    pub fn from_json(jwk: &serde_json::Map<String, Value>) -> Option<Self> {
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| jwk.contains_key(*m))
        {
            return None;
        }
        let text = |k: &str| jwk.get(k).and_then(Value::as_str).map(str::to_owned);
        match text("kty")?.as_str() {
            "OKP" if text("crv")? == "Ed25519" => {
                let x = text("x")?;
                (unb64(&x)?.len() == 32).then_some(Self::Okp {
                    crv: "Ed25519".into(),
                    x,
                })
            }
            "EC" if text("crv")? == "P-256" => {
                let (x, y) = (text("x")?, text("y")?);
                (unb64(&x)?.len() == 32 && unb64(&y)?.len() == 32).then_some(Self::Ec {
                    crv: "P-256".into(),
                    x,
                    y,
                })
            }
            _ => None,
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        match self {
            Self::Okp { crv, x } => thumbprint(&[("crv", crv), ("kty", "OKP"), ("x", x)]),
            Self::Ec { crv, x, y } => {
                thumbprint(&[("crv", crv), ("kty", "EC"), ("x", x), ("y", y)])
            }
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Okp { .. } => "EdDSA",
            Self::Ec { .. } => "ES256",
        }
    }
}

/// RFC 7638 thumbprint: base64url(SHA-256) of the required members as JSON,
/// in lexicographic order, without whitespace.
pub fn thumbprint(required: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = required.iter().copied().collect();
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), Value::from(*v)))
        .collect();
    b64(Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(&[("kty", "RSA"), ("n", n), ("e", "AQAB")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc8037_ed25519_thumbprint() {
        let jwk = PublicJwk::Okp {
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        assert!(strict_object(br#"{"a":1,"b":{"c":2}}"#).is_some());
        assert!(strict_object(br#"{"a":1,"a":1}"#).is_none());
        assert!(strict_object(br#"{"a":{"c":1,"c":2}}"#).is_none());
        assert!(strict_object(br#"[{"c":1,"c":2}]"#).is_none());
        assert!(strict_object(b"[1]").is_none(), "not an object");
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(unb64("AQAB"), Some(vec![1, 0, 1]));
        assert!(unb64("AQAB=").is_none(), "padding");
        assert!(unb64("AQ+B").is_none(), "standard alphabet");
        assert!(unb64("AR").is_none(), "non-canonical trailing bits");
    }

    #[test]
    fn private_or_unsupported_jwks_are_refused() {
        let obj = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert!(PublicJwk::from_json(&obj(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x})
        ))
        .is_some());
        assert!(PublicJwk::from_json(&obj(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": x})
        ))
        .is_none());
        assert!(PublicJwk::from_json(&obj(
            serde_json::json!({"kty": "OKP", "crv": "X25519", "x": x})
        ))
        .is_none());
        assert!(PublicJwk::from_json(&obj(
            serde_json::json!({"kty": "EC", "crv": "P-384", "x": x, "y": x})
        ))
        .is_none());
        assert!(PublicJwk::from_json(&obj(serde_json::json!({"kty": "oct", "k": x}))).is_none());
    }
}
