//! Strict verification of licenses against a JWK set.
//!
//! Every path refuses: another `alg` or `typ`, an unknown `kid`, keys named in
//! the header, any `crit`, duplicate members, a non-canonical signature
//! (`verify_strict`), claims of the wrong type, wrong `iss`/`aud`, and expiry
//! beyond a fixed leeway (RFC 8725).

use serde_json::{Map, Value};

use crate::claims::{LicenseClaims, LICENSE_TYP};
use crate::jws::{verify_jws, JwkSet};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;

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
    MissingClaim(String),
    #[error("claim {0:?} has the wrong type")]
    WrongClaimType(String),
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
}

/// Verifies licenses for one issuer and audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub jwks: JwkSet,
    pub issuer: String,
    pub audience: String,
}

impl Verifier {
    /// Verifies a license at time `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<LicenseClaims, VerifyError> {
        let claims = self.verify_signed(token)?;
        check_time(&claims, now)?;
        Ok(claims)
    }

    /// Everything about a license that does not depend on the time: its
    /// header, signature, claim types, issuer and audience. A caller that
    /// keeps the result for the same token must still [`check_time`] it at
    /// each use.
    pub fn verify_signed(&self, token: &str) -> Result<LicenseClaims, VerifyError> {
        let claims: LicenseClaims = typed_claims(verify_jws(token, LICENSE_TYP, &self.jwks)?)?;
        if claims.iss != self.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if !claims.aud.contains(&self.audience) {
            return Err(VerifyError::WrongAudience);
        }
        Ok(claims)
    }
}

/// Whether a license is valid at `now` (Unix seconds), with [`LEEWAY_SECS`]
/// either side.
pub fn check_time(claims: &LicenseClaims, now: i64) -> Result<(), VerifyError> {
    if now > claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(VerifyError::Expired);
    }
    if now.saturating_add(LEEWAY_SECS) < claims.not_before() {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// Reads verified claims into their type, naming the claim that is missing or
/// of the wrong type.
pub fn typed_claims<T: serde::de::DeserializeOwned>(
    claims: Map<String, Value>,
) -> Result<T, VerifyError> {
    serde_path_to_error::deserialize(Value::Object(claims)).map_err(|err| {
        let claim = err.path().iter().next().and_then(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let message = err.inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        match (claim, missing) {
            (None, Some(name)) => VerifyError::MissingClaim(name),
            (Some(name), _) => VerifyError::WrongClaimType(name),
            (None, None) => VerifyError::Malformed,
        }
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::{json, Value};

    use super::*;
    use crate::claims::StatusRef;
    use crate::jose::{b64, unb64};

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
        assert_eq!(claims.jkt(), "abc");
        assert_eq!(
            claims.status_ref(),
            Some(&StatusRef {
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
                VerifyError::WrongClaimType("exp".into()),
            ),
            (
                "exp as float",
                with_claim("exp", Some(json!(2000.5))),
                VerifyError::WrongClaimType("exp".into()),
            ),
            (
                "missing exp",
                with_claim("exp", None),
                VerifyError::MissingClaim("exp".into()),
            ),
            (
                "missing jti",
                with_claim("jti", None),
                VerifyError::MissingClaim("jti".into()),
            ),
            (
                "missing sub",
                with_claim("sub", None),
                VerifyError::MissingClaim("sub".into()),
            ),
            (
                "missing iss",
                with_claim("iss", None),
                VerifyError::MissingClaim("iss".into()),
            ),
            (
                "missing aud",
                with_claim("aud", None),
                VerifyError::MissingClaim("aud".into()),
            ),
            (
                "ent not strings",
                with_claim("ent", Some(json!([1]))),
                VerifyError::WrongClaimType("ent".into()),
            ),
            (
                "cnf not an object",
                with_claim("cnf", Some(json!("abc"))),
                VerifyError::WrongClaimType("cnf".into()),
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
}
