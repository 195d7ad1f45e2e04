//! A software passkey authenticator that emits exactly what a browser's
//! `PublicKeyCredential.toJSON()` sends (WebAuthn Level 3), with knobs for hostile variants.
//!
//! The server verifies these with webauthn-rs, so every byte layout follows WebAuthn / CTAP2:
//! a layout mistake shows up as a failed honest ceremony, never as a silently accepted forgery.

// Each test file uses only some of the knobs; unused ones must not break `-D warnings`.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::value::Value as Cbor;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use rand::RngCore as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
/// COSE algorithm identifier for ES256, the only algorithm this authenticator speaks.
const COSE_ES256: i64 = -7;

/// One resident (discoverable) credential held by a [`SoftAuthenticator`].
#[derive(Clone)]
pub struct SoftCredential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    pub counter: u32,
    key: SigningKey,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

/// A platform authenticator holding resident ES256 credentials in memory.
pub struct SoftAuthenticator {
    credentials: Vec<SoftCredential>,
    aaguid: [u8; 16],
    synced: bool,
}

/// Knobs for one ceremony; Default is the honest browser behaviour.
#[derive(Clone, Default)]
pub struct Tweaks {
    /// Override clientDataJSON.origin (default: the origin passed in).
    pub origin: Option<String>,
    /// Override clientDataJSON.type ("webauthn.create" / "webauthn.get").
    pub ceremony_type: Option<String>,
    /// Override the challenge (base64url) written into clientDataJSON.
    pub challenge: Option<String>,
    /// Hash this RP ID into authenticatorData instead of the requested one.
    pub rp_id: Option<String>,
    /// UP flag (default true).
    pub user_present: Option<bool>,
    /// UV flag (default true).
    pub user_verified: Option<bool>,
    /// Use this signCount instead of incrementing the stored one.
    pub counter: Option<u32>,
    /// Registration: use this credential id (e.g. 2000 bytes long, or an already registered one).
    /// webauthn-rs 0.6 itself accepts ids up to 4096 bytes, not the 1023 that WebAuthn L3 allows.
    pub credential_id: Option<Vec<u8>>,
    /// Flip a bit in the signature.
    pub corrupt_signature: bool,
    /// get(): leave response.userHandle null.
    pub omit_user_handle: bool,
    /// clientDataJSON.crossOrigin true: the ceremony ran in a cross-origin frame.
    pub cross_origin: bool,
    /// clientDataJSON.topOrigin: the origin of the page that framed it.
    pub top_origin: Option<String>,
}

impl SoftCredential {
    /// The credential with its private key, as JSON: test fixtures keep passkeys this way.
    pub fn export(&self) -> Value {
        json!({
            "id": b64(&self.id),
            "rp_id": self.rp_id,
            "user_handle": b64(&self.user_handle),
            "counter": self.counter,
            "key": b64(&self.key.to_bytes()),
            "backup_eligible": self.backup_eligible,
            "backup_state": self.backup_state,
        })
    }

    /// The credential [`SoftCredential::export`] wrote.
    pub fn import(v: &Value) -> Self {
        let bytes = |name: &str| decode_b64(v[name].as_str().expect("field")).expect("base64url");
        Self {
            id: bytes("id"),
            rp_id: v["rp_id"].as_str().expect("rp_id").to_owned(),
            user_handle: bytes("user_handle"),
            counter: u32::try_from(v["counter"].as_u64().expect("counter")).expect("u32"),
            key: SigningKey::from_slice(&bytes("key")).expect("P-256 key"),
            backup_eligible: v["backup_eligible"].as_bool().expect("flag"),
            backup_state: v["backup_state"].as_bool().expect("flag"),
        }
    }
}

impl SoftAuthenticator {
    /// An authenticator holding these credentials.
    pub fn with_credentials(credentials: Vec<SoftCredential>) -> Self {
        Self {
            credentials,
            ..Self::new()
        }
    }
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftAuthenticator {
    pub fn new() -> Self {
        // An all-zero AAGUID is what an authenticator reports when it stays anonymous,
        // which matches "none" attestation.
        Self {
            credentials: Vec::new(),
            aaguid: [0; 16],
            synced: false,
        }
    }

    /// navigator.credentials.create(): `options` is `{"publicKey": {...}}` or the inner object.
    pub fn create(
        &mut self,
        options: &Value,
        origin: &str,
        tweaks: &Tweaks,
    ) -> Result<Value, String> {
        let pk = public_key_options(options);
        let challenge = challenge_of(pk, tweaks)?;
        let rp_id = match (&tweaks.rp_id, pk.pointer("/rp/id").and_then(Value::as_str)) {
            (Some(tweaked), _) => tweaked.clone(),
            (None, Some(requested)) => requested.to_owned(),
            // A browser defaults rp.id to the origin's effective domain.
            (None, None) => host_of(origin),
        };
        let user_handle = decode_b64(str_at(pk, "/user/id")?)?;
        // A browser refuses when the RP accepts no algorithm the authenticator has.
        let algs: Vec<i64> = pk
            .get("pubKeyCredParams")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |params| {
                params.iter().filter_map(|p| p["alg"].as_i64()).collect()
            });
        if !algs.is_empty() && !algs.contains(&COSE_ES256) {
            return Err("NotSupportedError: ES256 is not among pubKeyCredParams".into());
        }
        let excluded = credential_ids(pk, "excludeCredentials")?;
        if self.credentials.iter().any(|c| excluded.contains(&c.id)) {
            return Err("InvalidStateError: an excluded credential is already here".into());
        }

        let id = tweaks.credential_id.clone().unwrap_or_else(|| {
            let mut id = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut id);
            id
        });
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let counter = tweaks.counter.unwrap_or(0);
        let (backup_eligible, backup_state) = (self.synced, self.synced);

        let id_len = u16::try_from(id.len())
            .map_err(|_| "credential id longer than 65535 bytes".to_string())?;
        let mut attested = self.aaguid.to_vec();
        attested.extend_from_slice(&id_len.to_be_bytes());
        attested.extend_from_slice(&id);
        attested.extend_from_slice(&cose_key(&key)?);
        let flags = flag_byte(tweaks, backup_eligible, backup_state) | FLAG_AT;
        let auth_data = authenticator_data(&rp_id, flags, counter, &attested);

        let client_data = client_data_json(tweaks, "webauthn.create", &challenge, origin);
        // CTAP2 canonical order sorts text keys by length first: fmt, attStmt, authData.
        let text = |s: &str| Cbor::Text(s.to_owned());
        let attestation_object = cbor_bytes(&Cbor::Map(vec![
            (text("fmt"), text("none")),
            (text("attStmt"), Cbor::Map(Vec::new())),
            (text("authData"), Cbor::Bytes(auth_data.clone())),
        ]))?;
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;

        // Re-using an id overwrites the old resident key, as a real authenticator does.
        self.credentials.retain(|c| c.id != id);
        self.credentials.push(SoftCredential {
            id: id.clone(),
            rp_id,
            user_handle,
            counter,
            key,
            backup_eligible,
            backup_state,
        });

        Ok(json!({
            "id": b64(&id),
            "rawId": b64(&id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&attestation_object),
                "transports": ["internal"],
                "authenticatorData": b64(&auth_data),
                "publicKeyAlgorithm": COSE_ES256,
                "publicKey": b64(spki.as_bytes()),
            },
        }))
    }

    /// navigator.credentials.get(): uses the first stored credential named in allowCredentials,
    /// or (discoverable) the newest one for the rpId.
    pub fn get(&mut self, options: &Value, origin: &str, tweaks: &Tweaks) -> Result<Value, String> {
        let pk = public_key_options(options);
        let challenge = challenge_of(pk, tweaks)?;
        let requested_rp = pk
            .get("rpId")
            .and_then(Value::as_str)
            .map_or_else(|| host_of(origin), str::to_owned);
        let allowed = credential_ids(pk, "allowCredentials")?;
        // The allow list is matched on id alone, so a test can present a credential to an RP it
        // was not made for and watch the server reject the rpIdHash.
        let index = if allowed.is_empty() {
            self.credentials
                .iter()
                .rposition(|c| c.rp_id == requested_rp)
        } else {
            self.credentials
                .iter()
                .position(|c| allowed.contains(&c.id))
        };
        let synced = self.synced;
        let cred = index
            .and_then(|i| self.credentials.get_mut(i))
            .ok_or("NotAllowedError: no matching credential on this authenticator")?;

        // Synced passkeys cannot keep a counter consistent across devices, so they always report 0.
        let counter = match tweaks.counter {
            Some(forced) => forced,
            None if synced => 0,
            None => cred.counter.wrapping_add(1),
        };
        cred.counter = counter;

        let flags = flag_byte(tweaks, cred.backup_eligible, cred.backup_state);
        let auth_data = authenticator_data(
            tweaks.rp_id.as_deref().unwrap_or(&requested_rp),
            flags,
            counter,
            &[],
        );
        let client_data = client_data_json(tweaks, "webauthn.get", &challenge, origin);
        let signature = sign(&cred.key, &auth_data, &client_data, tweaks);
        let user_handle = if tweaks.omit_user_handle {
            Value::Null
        } else {
            Value::String(b64(&cred.user_handle))
        };

        Ok(json!({
            "id": b64(&cred.id),
            "rawId": b64(&cred.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(&signature),
                "userHandle": user_handle,
            },
        }))
    }

    pub fn credentials(&self) -> &[SoftCredential] {
        &self.credentials
    }

    pub fn credential_mut(&mut self, id: &[u8]) -> Option<&mut SoftCredential> {
        self.credentials.iter_mut().find(|c| c.id == id)
    }

    /// Copies one credential (same key and counter) into `other`, modelling a cloned authenticator.
    pub fn clone_credential_into(&self, id: &[u8], other: &mut SoftAuthenticator) {
        if let Some(cred) = self.credentials.iter().find(|c| c.id == id) {
            other.credentials.retain(|c| c.id != id);
            other.credentials.push(cred.clone());
        }
    }

    /// When true, new credentials get BE=BS=1 and every get() reports signCount 0, as a synced
    /// passkey provider does.
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }

    /// The AAGUID new credentials report (all zeros, anonymous, by default).
    pub fn set_aaguid(&mut self, aaguid: uuid::Uuid) {
        self.aaguid = *aaguid.as_bytes();
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_b64(text: &str) -> Result<Vec<u8>, String> {
    // Tolerate padding: the server should not send it, but failing here would hide the real bug.
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("bad base64url {text:?}: {e}"))
}

/// Accepts both the server's `{"publicKey": {...}}` envelope and the bare inner object.
fn public_key_options(options: &Value) -> &Value {
    options.get("publicKey").unwrap_or(options)
}

fn str_at<'a>(pk: &'a Value, pointer: &str) -> Result<&'a str, String> {
    pk.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("options lack publicKey{}", pointer.replace('/', ".")))
}

fn challenge_of(pk: &Value, tweaks: &Tweaks) -> Result<String, String> {
    match &tweaks.challenge {
        Some(challenge) => Ok(challenge.clone()),
        None => str_at(pk, "/challenge").map(str::to_owned),
    }
}

/// Ids from allowCredentials / excludeCredentials; an absent or null list means none.
fn credential_ids(pk: &Value, field: &str) -> Result<Vec<Vec<u8>>, String> {
    match pk.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|d| {
                d.get("id")
                    .and_then(Value::as_str)
                    .ok_or(format!("{field} entry lacks id"))
                    .and_then(decode_b64)
            })
            .collect(),
        Some(_) => Err(format!("{field} is not an array")),
    }
}

/// The effective domain of an origin such as `http://localhost:8080`.
fn host_of(origin: &str) -> String {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_owned()
}

/// The exact bytes a browser produces: fixed member order, no whitespace, crossOrigin present.
fn client_data_json(tweaks: &Tweaks, ceremony: &str, challenge: &str, origin: &str) -> Vec<u8> {
    let quote = |s: &str| Value::String(s.to_owned()).to_string();
    let ceremony = quote(tweaks.ceremony_type.as_deref().unwrap_or(ceremony));
    let origin = quote(tweaks.origin.as_deref().unwrap_or(origin));
    let challenge = quote(challenge);
    let cross = tweaks.cross_origin;
    let top = tweaks
        .top_origin
        .as_deref()
        .map(|t| format!(r#","topOrigin":{}"#, quote(t)))
        .unwrap_or_default();
    format!(
        r#"{{"type":{ceremony},"challenge":{challenge},"origin":{origin},"crossOrigin":{cross}{top}}}"#
    )
    .into_bytes()
}

fn flag_byte(tweaks: &Tweaks, backup_eligible: bool, backup_state: bool) -> u8 {
    let bit = |on: bool, flag: u8| if on { flag } else { 0 };
    bit(tweaks.user_present.unwrap_or(true), FLAG_UP)
        | bit(tweaks.user_verified.unwrap_or(true), FLAG_UV)
        | bit(backup_eligible, FLAG_BE)
        | bit(backup_state, FLAG_BS)
}

fn authenticator_data(rp_id: &str, flags: u8, counter: u32, attested: &[u8]) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data.extend_from_slice(attested);
    data
}

/// COSE_Key for an EC2 P-256 key, integer keys in CTAP2 canonical order 1, 3, -1, -2, -3.
fn cose_key(key: &SigningKey) -> Result<Vec<u8>, String> {
    let point = key.verifying_key().to_encoded_point(false);
    let x = point.x().ok_or("public key has no x coordinate")?;
    let y = point.y().ok_or("public key has no y coordinate")?;
    cbor_bytes(&Cbor::Map(vec![
        (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
        (Cbor::Integer(3.into()), Cbor::Integer(COSE_ES256.into())),
        (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
        (Cbor::Integer((-2).into()), Cbor::Bytes(x.to_vec())),
        (Cbor::Integer((-3).into()), Cbor::Bytes(y.to_vec())),
    ]))
}

fn cbor_bytes(value: &Cbor) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// DER ECDSA over authenticatorData || SHA-256(clientDataJSON), as WebAuthn §6.3.3 prescribes.
fn sign(key: &SigningKey, auth_data: &[u8], client_data: &[u8], tweaks: &Tweaks) -> Vec<u8> {
    let mut message = auth_data.to_vec();
    message.extend_from_slice(&Sha256::digest(client_data));
    let signature: Signature = key.sign(&message);
    let mut der = signature.to_der().as_bytes().to_vec();
    if tweaks.corrupt_signature {
        // Flipping a bit of s keeps the DER well-formed: the server must reject on the maths.
        if let Some(last) = der.last_mut() {
            *last ^= 0x01;
        }
    }
    der
}
