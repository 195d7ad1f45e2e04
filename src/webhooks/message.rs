//! What a receiver gets: Standard Webhooks headers and signature, and the
//! event as JSON (`type`, `timestamp`, `data`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::http::rfc3339;
use crate::store::webhooks::OutboxRow;

/// The public event type of an audit event, and the name its target goes by.
pub fn event_type(audit_event: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match audit_event {
        "registration" => ("user.registered", None),
        "user.disabled" => ("user.disabled", None),
        "user.enabled" => ("user.enabled", None),
        "entitlement.granted" => ("entitlement.granted", Some("entitlement")),
        "entitlement.removed" => ("entitlement.removed", Some("entitlement")),
        "license.minted" => ("license.minted", Some("license_id")),
        "license.revoked" => ("license.revoked", Some("license_id")),
        "passkey.added" => ("passkey.added", Some("credential_id")),
        "passkey.removed" | "passkey.revoked" => ("passkey.revoked", Some("credential_id")),
        _ => return None,
    })
}

/// The body of a message; the same bytes on every attempt.
pub fn body(row: &OutboxRow) -> Vec<u8> {
    let (kind, target_name) = event_type(&row.event).unwrap_or(("unknown", None));
    let mut data = serde_json::Map::new();
    data.insert("user_id".into(), json!(row.user_id));
    if let (Some(name), Some(target)) = (target_name, &row.target) {
        data.insert(name.into(), json!(target));
    }
    let value = json!({
        "type": kind,
        "timestamp": rfc3339(row.at),
        "data": Value::Object(data),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The key of a `whsec_…` secret: base64 after the prefix.
pub fn key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// `v1,` and base64 HMAC-SHA256 over `"{id}.{timestamp}.{body}"`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example in the Standard Webhooks specification.
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_public_event_has_a_type_and_others_none() {
        for (audit, public) in [
            ("registration", "user.registered"),
            ("passkey.removed", "passkey.revoked"),
            ("license.minted", "license.minted"),
        ] {
            assert_eq!(event_type(audit).map(|t| t.0), Some(public));
        }
        assert_eq!(event_type("signin.success"), None);
    }
}
