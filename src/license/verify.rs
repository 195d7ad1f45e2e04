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

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::{json, Value};

    use super::*;
    use crate::license::jose::{b64, unb64};

    const ISS: &str = "https://app.example";

    fn rfc8037_key() -> SigningKey {
        let d: [u8; 32] = unb64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap()
            .try_into()
            .unwrap();
        SigningKey::from_bytes(&d)
    }

    #[test]
    fn rfc8037_signature_vector() {
        let key = rfc8037_key();
        assert_eq!(
            b64(key.verifying_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        assert_eq!(
            b64(key.sign(input.as_bytes()).to_bytes()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    fn token(header: &Value, claims: &Value, key: &SigningKey) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        format!("{input}.{}", b64(key.sign(input.as_bytes()).to_bytes()))
    }

    fn setup() -> (SigningKey, String, Verifier) {
        let key = rfc8037_key();
        let kid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".to_owned();
        let mut jwks = JwkSet::default();
        jwks.insert(kid.clone(), key.verifying_key());
        (
            key,
            kid,
            Verifier {
                jwks,
                issuer: ISS.into(),
                audience: ISS.into(),
            },
        )
    }

    fn good_claims() -> Value {
        json!({"iss": ISS, "aud": ISS, "sub": "u1", "iat": 1000, "nbf": 1000, "exp": 2000, "jti": "j1",
               "ent": ["premium"], "cnf": {"jkt": "abc"}, "status": {"status_list": {"idx": 3, "uri": "https://app.example/api/status-lists/1"}}})
    }

    #[test]
    fn a_good_license_verifies_with_typed_claims() {
        let (key, kid, v) = setup();
        let t = token(
            &json!({"alg": "EdDSA", "typ": LICENSE_TYP, "kid": kid}),
            &good_claims(),
            &key,
        );
        let claims = v.verify(&t, 1500).unwrap();
        assert_eq!(claims.ent, vec!["premium"]);
        assert_eq!(claims.jkt, "abc");
        assert_eq!(
            claims.status,
            Some(StatusRef {
                idx: 3,
                uri: "https://app.example/api/status-lists/1".into()
            })
        );
    }

    #[test]
    fn every_rejection_of_rfc8725_is_enforced() {
        let (key, kid, v) = setup();
        let h = json!({"alg": "EdDSA", "typ": LICENSE_TYP, "kid": kid});
        let with_header = |k: &str, val: Value| {
            let mut h = h.clone();
            h[k] = val;
            token(&h, &good_claims(), &key)
        };
        let with_claim = |k: &str, val: Option<Value>| {
            let mut c = good_claims();
            match val {
                Some(val) => c[k] = val,
                None => {
                    c.as_object_mut().unwrap().remove(k);
                }
            }
            token(&h, &c, &key)
        };
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": LICENSE_TYP, "kid": kid}).to_string()),
            b64(good_claims().to_string())
        );
        let duplicate = {
            let header =
                format!(r#"{{"alg":"EdDSA","typ":"{LICENSE_TYP}","kid":"{kid}","kid":"{kid}"}}"#);
            let input = format!("{}.{}", b64(header), b64(good_claims().to_string()));
            format!("{input}.{}", b64(key.sign(input.as_bytes()).to_bytes()))
        };
        let duplicate_claim = {
            let payload = r#"{"iss":"https://app.example","aud":"https://app.example","sub":"u1","iat":1000,"exp":2000,"exp":9999999999,"jti":"j","cnf":{"jkt":"a"}}"#;
            let input = format!("{}.{}", b64(h.to_string()), b64(payload));
            format!("{input}.{}", b64(key.sign(input.as_bytes()).to_bytes()))
        };
        let good = token(&h, &good_claims(), &key);
        let (head, sig) = good.rsplit_once('.').unwrap();
        let mut bad_sig = unb64(sig).unwrap();
        bad_sig[0] ^= 1;
        // A non-canonical signature: S + L (the group order) verifies with lax checks only.
        let mut s_plus_l = unb64(sig).unwrap();
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s_plus_l[32 + i]) + u16::from(l[i]) + carry;
            s_plus_l[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let cases: Vec<(&str, String, VerifyError)> = vec![
            ("alg none", none, VerifyError::UnsupportedAlgorithm),
            (
                "alg HS256",
                with_header("alg", json!("HS256")),
                VerifyError::UnsupportedAlgorithm,
            ),
            (
                "typ JWT",
                with_header("typ", json!("JWT")),
                VerifyError::WrongType,
            ),
            (
                "no typ",
                {
                    let mut x = h.clone();
                    x.as_object_mut().unwrap().remove("typ");
                    token(&x, &good_claims(), &key)
                },
                VerifyError::WrongType,
            ),
            (
                "unknown kid",
                with_header("kid", json!("nope")),
                VerifyError::UnknownKey,
            ),
            (
                "jwk in header",
                with_header("jwk", json!({"kty": "OKP"})),
                VerifyError::ForbiddenHeader("jwk".into()),
            ),
            (
                "jku in header",
                with_header("jku", json!("https://evil")),
                VerifyError::ForbiddenHeader("jku".into()),
            ),
            (
                "x5u in header",
                with_header("x5u", json!("https://evil")),
                VerifyError::ForbiddenHeader("x5u".into()),
            ),
            (
                "x5c in header",
                with_header("x5c", json!(["MII"])),
                VerifyError::ForbiddenHeader("x5c".into()),
            ),
            (
                "crit",
                with_header("crit", json!(["exp"])),
                VerifyError::ForbiddenHeader("crit".into()),
            ),
            ("duplicate header member", duplicate, VerifyError::Malformed),
            ("duplicate claim", duplicate_claim, VerifyError::Malformed),
            (
                "bad signature",
                format!("{head}.{}", b64(&bad_sig)),
                VerifyError::BadSignature,
            ),
            (
                "non-canonical signature",
                format!("{head}.{}", b64(&s_plus_l)),
                VerifyError::BadSignature,
            ),
            (
                "exp as string",
                with_claim("exp", Some(json!("2000"))),
                VerifyError::WrongClaimType("exp"),
            ),
            (
                "exp as float",
                with_claim("exp", Some(json!(2000.5))),
                VerifyError::WrongClaimType("exp"),
            ),
            (
                "missing exp",
                with_claim("exp", None),
                VerifyError::MissingClaim("exp"),
            ),
            (
                "missing jti",
                with_claim("jti", None),
                VerifyError::MissingClaim("jti"),
            ),
            (
                "missing sub",
                with_claim("sub", None),
                VerifyError::MissingClaim("sub"),
            ),
            (
                "missing iss",
                with_claim("iss", None),
                VerifyError::MissingClaim("iss"),
            ),
            (
                "missing aud",
                with_claim("aud", None),
                VerifyError::MissingClaim("aud"),
            ),
            (
                "ent not strings",
                with_claim("ent", Some(json!([1]))),
                VerifyError::WrongClaimType("ent"),
            ),
            (
                "cnf not an object",
                with_claim("cnf", Some(json!("abc"))),
                VerifyError::WrongClaimType("cnf"),
            ),
            (
                "wrong iss",
                with_claim("iss", Some(json!("https://evil.example"))),
                VerifyError::WrongIssuer,
            ),
            (
                "wrong aud",
                with_claim("aud", Some(json!("https://evil.example"))),
                VerifyError::WrongAudience,
            ),
            (
                "aud array without us",
                with_claim("aud", Some(json!(["https://evil.example"]))),
                VerifyError::WrongAudience,
            ),
            ("two parts", "a.b".into(), VerifyError::Malformed),
            ("four parts", format!("{good}.x"), VerifyError::Malformed),
        ];
        for (case, t, expected) in cases {
            assert_eq!(v.verify(&t, 1500), Err(expected), "{case}");
        }
        assert_eq!(
            v.verify(&good, 2000 + LEEWAY_SECS).map(|c| c.jti),
            Ok("j1".into()),
            "within the leeway"
        );
        assert_eq!(
            v.verify(&good, 2001 + LEEWAY_SECS),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            v.verify(&good, 1000 - LEEWAY_SECS - 1),
            Err(VerifyError::NotYetValid)
        );
        let aud_list = with_claim("aud", Some(json!(["https://other", ISS])));
        assert!(v.verify(&aud_list, 1500).is_ok());
    }

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
}
