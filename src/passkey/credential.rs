//! The browser's `PublicKeyCredential.toJSON()` output as typed requests, the
//! WebAuthn options we answer with, and the checks webauthn-rs leaves to the
//! application: the outer `type` and `id`, credential-id length, the client
//! data's `crossOrigin` and `topOrigin`, and what the attestation's
//! authenticator data says about the authenticator.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use webauthn_rs::prelude::{
    COSEKeyType, Passkey, PublicKeyCredential, RegisterPublicKeyCredential,
};
use webauthn_rs_proto::{AuthenticatorAssertionResponseRaw, AuthenticatorAttestationResponseRaw};

use crate::error::{AppError, Result};
use latchkey_core::jose::{b64, unb64};

/// WebAuthn's own limit on credential ids (Level 3, §5.1).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;

/// Bytes sent as unpadded base64url, decoded strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        unb64(&text)
            .map(B64)
            .ok_or_else(|| serde::de::Error::custom("not unpadded base64url"))
    }
}

impl utoipa::PartialSchema for B64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_-]*$"))
            .description(Some("unpadded base64url"))
            .into()
    }
}

impl ToSchema for B64 {}

/// The only credential type there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum CredentialType {
    #[serde(rename = "public-key")]
    PublicKey,
}

/// `PublicKeyCredential.toJSON()` of a new passkey (`navigator.credentials.create`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationCredential {
    /// The credential id, base64url; must equal `rawId`.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", max_length = 1364)]
    pub id: String,
    pub raw_id: B64,
    #[serde(rename = "type")]
    pub kind: CredentialType,
    pub response: AttestationResponse,
    /// Unsigned client output; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub client_extension_results: Option<Map<String, Value>>,
    /// `platform` or `cross-platform`; informational.
    #[serde(default)]
    pub authenticator_attachment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: B64,
    pub attestation_object: B64,
    /// Informational; ignored.
    #[serde(default)]
    pub transports: Option<Vec<String>>,
}

/// `PublicKeyCredential.toJSON()` of a sign-in (`navigator.credentials.get`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationCredential {
    /// The credential id, base64url; must equal `rawId`.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", max_length = 1364)]
    pub id: String,
    pub raw_id: B64,
    #[serde(rename = "type")]
    pub kind: CredentialType,
    pub response: AssertionResponse,
    /// Unsigned client output; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub client_extension_results: Option<Map<String, Value>>,
    /// `platform` or `cross-platform`; informational.
    #[serde(default)]
    pub authenticator_attachment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: B64,
    pub authenticator_data: B64,
    pub signature: B64,
    /// The user handle; required for a sign-in without a username.
    #[serde(default)]
    pub user_handle: Option<B64>,
}

/// WebAuthn options as webauthn-rs writes them: pass `publicKey` to
/// `PublicKeyCredential.parseCreationOptionsFromJSON` or `parseRequestOptionsFromJSON`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyOptions {
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    pub public_key: Map<String, Value>,
}

impl PasskeyOptions {
    /// From webauthn-rs's challenge (`{"publicKey": …, "mediation"?: …}`); the page,
    /// not the server, chooses between autofill and a modal request.
    pub fn from_challenge(challenge: impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(challenge).map_err(anyhow::Error::from)?;
        match value.get("publicKey") {
            Some(Value::Object(public_key)) => Ok(Self {
                public_key: public_key.clone(),
            }),
            _ => Err(AppError::Internal(anyhow::anyhow!(
                "webauthn-rs options without publicKey"
            ))),
        }
    }

    /// Asks for a discoverable credential (a passkey that can sign in without a
    /// username), which webauthn-rs leaves at "discouraged".
    pub fn require_resident_key(mut self) -> Self {
        let selection = self
            .public_key
            .entry("authenticatorSelection")
            .or_insert_with(|| json!({}));
        if let Some(selection) = selection.as_object_mut() {
            selection.insert("residentKey".into(), json!("required"));
            selection.insert("requireResidentKey".into(), json!(true));
        }
        self
    }

    /// Limits a sign-in to these credential ids.
    pub fn allow_credentials(mut self, ids: &[String]) -> Self {
        let allow = ids
            .iter()
            .map(|id| json!({"type": "public-key", "id": id}))
            .collect();
        self.public_key
            .insert("allowCredentials".into(), Value::Array(allow));
        self
    }
}

/// A credential whose JSON fits but whose content cannot be used.
fn malformed(detail: &str) -> AppError {
    AppError::Unprocessable("malformed-credential", detail.into())
}

/// The outer checks webauthn-rs leaves unchecked: `id` must be `rawId` in
/// base64url, and ids are at most 1023 bytes. Runs before anything is written.
fn check_id(id: &str, raw_id: &[u8]) -> Result<()> {
    if raw_id.len() > MAX_CREDENTIAL_ID_BYTES {
        return Err(malformed("Credential ids are at most 1023 bytes."));
    }
    if id != b64(raw_id) {
        return Err(malformed("The credential's id and rawId differ."));
    }
    Ok(())
}

/// Refuses client data that says the ceremony ran in a frame: this service is
/// never framed (`frame-ancestors 'none'`), so `crossOrigin: true` or any
/// `topOrigin` means someone else's page drove the authenticator.
fn check_client_data(client_data_json: &[u8]) -> Result<()> {
    let data: Map<String, Value> = serde_json::from_slice(client_data_json)
        .map_err(|_| malformed("The client data is not a JSON object."))?;
    if data.get("crossOrigin").and_then(Value::as_bool) == Some(true) {
        return Err(AppError::unauthorized(
            "ceremony-failed",
            "The passkey was used inside a frame of another site, which this service never allows.",
        ));
    }
    if data.contains_key("topOrigin") {
        return Err(AppError::unauthorized(
            "ceremony-failed",
            "The passkey was used inside a frame, which this service never allows.",
        ));
    }
    Ok(())
}

impl RegistrationCredential {
    /// Checks what webauthn-rs does not, and converts for it.
    pub fn into_webauthn(self) -> Result<RegisterPublicKeyCredential> {
        check_id(&self.id, &self.raw_id.0)?;
        check_client_data(&self.response.client_data_json.0)?;
        Ok(RegisterPublicKeyCredential {
            id: self.id,
            raw_id: self.raw_id.0,
            response: AuthenticatorAttestationResponseRaw {
                attestation_object: self.response.attestation_object.0,
                client_data_json: self.response.client_data_json.0,
                transports: None,
            },
            type_: "public-key".into(),
            extensions: Default::default(),
        })
    }
}

impl AuthenticationCredential {
    /// The credential id, base64url.
    pub fn credential_id(&self) -> String {
        b64(&self.raw_id.0)
    }

    /// Checks what webauthn-rs does not, and converts for it.
    pub fn into_webauthn(self) -> Result<PublicKeyCredential> {
        check_id(&self.id, &self.raw_id.0)?;
        check_client_data(&self.response.client_data_json.0)?;
        Ok(PublicKeyCredential {
            id: self.id,
            raw_id: self.raw_id.0,
            response: AuthenticatorAssertionResponseRaw {
                authenticator_data: self.response.authenticator_data.0,
                client_data_json: self.response.client_data_json.0,
                signature: self.response.signature.0,
                user_handle: self.response.user_handle.map(|h| h.0),
            },
            extensions: Default::default(),
            type_: "public-key".into(),
        })
    }
}

/// The passkey's public key as a JWK (for a license's `cks`), with `kid` the credential id.
pub fn credential_jwk(passkey: &Passkey) -> Value {
    let kid = b64(passkey.cred_id().as_slice());
    match &passkey.get_public_key().key {
        COSEKeyType::EC_EC2(ec) => {
            json!({"kty": "EC", "crv": "P-256", "x": b64(&ec.x), "y": b64(&ec.y), "alg": "ES256", "kid": kid})
        }
        COSEKeyType::EC_OKP(okp) => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&okp.x), "alg": "EdDSA", "kid": kid})
        }
        COSEKeyType::RSA(rsa) => {
            json!({"kty": "RSA", "n": b64(&rsa.n), "e": b64(rsa.e), "alg": "RS256", "kid": kid})
        }
    }
}

/// AAGUID and backup flags, read from the verified attestation object's authenticator data.
pub struct AuthenticatorInfo {
    pub aaguid: String,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

pub fn authenticator_info(attestation_object: &[u8]) -> Result<AuthenticatorInfo> {
    let bad = || malformed("The attestation object is malformed.");
    let value: ciborium::Value = ciborium::from_reader(attestation_object).map_err(|_| bad())?;
    let auth_data = value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("authData")))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or_else(bad)?;
    let (Some(&flags), Some(aaguid)) = (auth_data.get(32), auth_data.get(37..53)) else {
        return Err(bad());
    };
    let aaguid = uuid::Uuid::from_slice(aaguid)
        .map_err(|_| bad())?
        .hyphenated()
        .to_string();
    Ok(AuthenticatorInfo {
        aaguid,
        backup_eligible: flags & 0x08 != 0,
        backup_state: flags & 0x10 != 0,
    })
}
