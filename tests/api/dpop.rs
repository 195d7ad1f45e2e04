//! Device keys for tests: make DPoP proofs the way latchkey.js does.
#![allow(dead_code)] // shared with examples/loadgen.rs, which uses a part of it

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub enum DeviceKey {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

impl DeviceKey {
    pub fn ed25519() -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn es256() -> Self {
        Self::Es256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The private key as JSON, for test fixtures.
    pub fn export(&self) -> Value {
        match self {
            Self::Ed25519(k) => json!({"alg": "EdDSA", "d": b64(k.to_bytes())}),
            Self::Es256(k) => json!({"alg": "ES256", "d": b64(k.to_bytes())}),
        }
    }

    /// The key [`DeviceKey::export`] wrote.
    pub fn import(v: &Value) -> Self {
        let d = URL_SAFE_NO_PAD
            .decode(v["d"].as_str().expect("d"))
            .expect("base64url");
        match v["alg"].as_str() {
            Some("EdDSA") => Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &d.try_into().expect("32 bytes"),
            )),
            _ => Self::Es256(p256::ecdsa::SigningKey::from_slice(&d).expect("P-256 key")),
        }
    }

    pub fn jwk(&self) -> Value {
        match self {
            Self::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
            Self::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))})
            }
        }
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = match self {
            Self::Ed25519(_) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                jwk["x"].as_str().expect("x")
            ),
            Self::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().expect("x"),
                jwk["y"].as_str().expect("y")
            ),
        };
        b64(Sha256::digest(canonical.as_bytes()))
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "EdDSA",
            Self::Es256(_) => "ES256",
        }
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.sign(input).to_bytes().to_vec(),
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, input);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// A JWS with this key over arbitrary header and claims.
    pub fn jws(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    pub fn claims(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Value {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": htm,
            "htu": htu,
            "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(b64(Sha256::digest(token.as_bytes())));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        claims
    }

    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        self.jws(&self.header(), &self.claims(htm, htu, access_token, nonce))
    }
}
