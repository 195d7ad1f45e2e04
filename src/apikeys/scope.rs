//! What an API key may do: scopes, and the marker types that name the scope a
//! route needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A permission a key carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// List and read users, the overview.
    #[serde(rename = "users:read")]
    UsersRead,
    /// Create, disable and enable users; set external ids.
    #[serde(rename = "users:write")]
    UsersWrite,
    /// Grant and remove entitlements.
    #[serde(rename = "entitlements:write")]
    EntitlementsWrite,
    /// Revoke licenses.
    #[serde(rename = "licenses:revoke")]
    LicensesRevoke,
    /// Read the audit log and the webhook delivery log.
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::EntitlementsWrite,
        Scope::LicensesRevoke,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::EntitlementsWrite => "entitlements:write",
            Self::LicensesRevoke => "licenses:revoke",
            Self::AuditRead => "audit:read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == text)
    }

    /// Scopes from their stored, space-separated form; unknown names are dropped.
    pub fn parse_list(text: &str) -> Vec<Self> {
        text.split_whitespace().filter_map(Self::parse).collect()
    }
}

/// What a route needs from its caller: a scope a key may carry, or (with
/// `None`) an administrator's own passkey session.
pub trait Needs: Send + Sync + 'static {
    const SCOPE: Option<Scope>;
}

macro_rules! needs {
    ($($(#[doc = $doc:literal])* $name:ident => $scope:expr;)*) => {$(
        $(#[doc = $doc])*
        pub struct $name;
        impl Needs for $name {
            const SCOPE: Option<Scope> = Some($scope);
        }
    )*};
}

needs! {
    /// Reading users (`users:read`).
    UsersRead => Scope::UsersRead;
    /// Changing users (`users:write`).
    UsersWrite => Scope::UsersWrite;
    /// Changing entitlements (`entitlements:write`).
    EntitlementsWrite => Scope::EntitlementsWrite;
    /// Revoking licenses (`licenses:revoke`).
    LicensesRevoke => Scope::LicensesRevoke;
    /// Reading the audit and delivery logs (`audit:read`).
    AuditRead => Scope::AuditRead;
}

/// Only an administrator's passkey session: roles, passkeys, API keys.
pub struct HumanOnly;
impl Needs for HumanOnly {
    const SCOPE: Option<Scope> = None;
}
