//! The claims of a license and of a status list: one type each, serialized when
//! the service mints and deserialized when anyone verifies, so the format is
//! defined once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JWS `typ` of a license.
pub const LICENSE_TYP: &str = "license+jwt";

/// The JWS `typ` of a status list.
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";

/// The claims of a license (see the design document for their meaning).
///
/// Unknown claims are ignored, as RFC 7519 asks; known ones must have their type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// The service's public origin.
    pub iss: String,
    /// The app's origin (one string, or several).
    pub aud: Audience,
    /// The stable, opaque user id.
    pub sub: String,
    pub iat: i64,
    /// Defaults to `iat` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    /// The license id.
    pub jti: String,
    /// Entitlements at minting time, e.g. `["premium"]`.
    #[serde(default)]
    pub ent: Vec<String>,
    /// The device key the license is bound to (RFC 7800, RFC 9449 §6).
    pub cnf: Confirmation,
    /// Where the license's revocation bit is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusClaim>,
    /// The user's passkey public keys as JWKs (`kid` is the credential id), so
    /// an app can check a passkey assertion offline.
    #[serde(default)]
    pub cks: Vec<Map<String, Value>>,
    /// The username, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Check-in: the longest time, in seconds, the holder may go without a
    /// successful status-list fetch before the license locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chk: Option<u64>,
}

impl LicenseClaims {
    /// The time before which the license is not valid.
    pub fn not_before(&self) -> i64 {
        self.nbf.unwrap_or(self.iat)
    }

    /// The thumbprint of the device key the license is bound to.
    pub fn jkt(&self) -> &str {
        &self.cnf.jkt
    }

    /// The status-list reference, if the license has one.
    pub fn status_ref(&self) -> Option<&StatusRef> {
        self.status.as_ref().map(|s| &s.status_list)
    }
}

/// `aud`: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

/// `cnf`: the confirmation method, a JWK SHA-256 thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// `status`: `{"status_list": {"idx": N, "uri": URI}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClaim {
    pub status_list: StatusRef,
}

/// One entry of a status list: the list's URI and the index in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRef {
    pub idx: u64,
    pub uri: String,
}

/// The claims of a status list token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListClaims {
    /// The URI of this list; a license's `status.status_list.uri` names it.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// How long, in seconds, a client may cache the list.
    pub ttl: i64,
    pub status_list: StatusListBits,
}

/// The list itself: `bits` per entry and the zlib-deflated, base64url bitstring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListBits {
    pub bits: u8,
    pub lst: String,
}
