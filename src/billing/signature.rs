//! Webhook signatures of the payment providers, checked exactly as each
//! specifies: HMAC-SHA256 with the endpoint secret over the timestamp and the
//! raw body, any of several signatures (providers send one per active secret
//! during a rotation), a timestamp within five minutes, constant-time
//! comparison.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::config::Secret;

/// How far a signed timestamp may be from the server's clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused; said in the problem, never with a secret in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Stale,
    NoMatch,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "the signature header is missing",
            Self::Malformed => "the signature header cannot be read",
            Self::Stale => "its timestamp is more than five minutes from the server's clock",
            Self::NoMatch => "no signature matches a configured secret",
        }
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Checks `signatures` (hex) against every secret over `parts`, touching every
/// pair so the time taken says nothing about which came close.
fn any_matches(secrets: &[Secret], parts: &[&[u8]], signatures: &[&str]) -> bool {
    let mut found = Choice::from(0);
    for secret in secrets {
        let expected = mac(secret.expose().as_bytes(), parts);
        for signature in signatures {
            if let Some(given) = unhex(signature) {
                found |= expected.ct_eq(&given);
            }
        }
    }
    found.into()
}

fn fresh(timestamp: i64, now: i64) -> bool {
    (now - timestamp).abs() <= TOLERANCE_SECS
}

/// How a provider writes its signature header: `{time}={t}{items}{sig}={hex}…`, signed over
/// `"{t}{joiner}{body}"`.
struct Scheme {
    items: char,
    time: &'static str,
    signature: &'static str,
    joiner: &'static [u8],
}

/// `Stripe-Signature: t=…,v1=…,v1=…` over `"{t}.{body}"`. Other schemes
/// (`v0`, test-mode extras) are ignored, as Stripe's own libraries do.
const STRIPE: Scheme = Scheme {
    items: ',',
    time: "t",
    signature: "v1",
    joiner: b".",
};

/// `Paddle-Signature: ts=…;h1=…;h1=…` over `"{ts}:{body}"`.
const PADDLE: Scheme = Scheme {
    items: ';',
    time: "ts",
    signature: "h1",
    joiner: b":",
};

/// Checks a `Stripe-Signature` header against any of `secrets`, then its age.
pub fn verify_stripe(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), Refusal> {
    verify(&STRIPE, header, body, secrets, now)
}

/// Checks a `Paddle-Signature` header against any of `secrets`, then its age.
pub fn verify_paddle(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), Refusal> {
    verify(&PADDLE, header, body, secrets, now)
}

fn verify(
    scheme: &Scheme,
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(scheme.items) {
        match item.trim().split_once('=') {
            Some((key, t)) if key == scheme.time => {
                timestamp = Some(t.parse::<i64>().map_err(|_| Refusal::Malformed)?)
            }
            Some((key, v)) if key == scheme.signature => signatures.push(v),
            Some(_) => {}
            None => return Err(Refusal::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(Refusal::Malformed)?;
    if signatures.is_empty() {
        return Err(Refusal::Malformed);
    }
    let t = timestamp.to_string();
    if !any_matches(secrets, &[t.as_bytes(), scheme.joiner, body], &signatures) {
        return Err(Refusal::NoMatch);
    }
    if !fresh(timestamp, now) {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// Lower-case hex of HMAC-SHA256(`key`, `message`), as the providers write it.
pub fn hex_mac(key: &str, message: &[u8]) -> String {
    mac(key.as_bytes(), &[message])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn secret(s: &str) -> Secret {
        Secret::from_str(s).unwrap()
    }

    #[test]
    fn a_stripe_signature_made_with_any_configured_secret_verifies() {
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let sig = hex_mac(
            "whsec_new",
            b"1700000000.{\"id\":\"evt_1\",\"type\":\"invoice.paid\"}",
        );
        let header = format!("t=1700000000,v1=deadbeef,v1={sig},v0=ignored");
        let secrets = [secret("whsec_old"), secret("whsec_new")];
        assert_eq!(
            verify_stripe(Some(&header), body, &secrets, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verify_stripe(Some(&header), body, &secrets[..1], 1_700_000_100),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            verify_stripe(Some(&header), body, &secrets, 1_700_000_301),
            Err(Refusal::Stale)
        );
        let mut tampered = body.to_vec();
        tampered[8] = b'2';
        assert_eq!(
            verify_stripe(Some(&header), &tampered, &secrets, 1_700_000_000),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            verify_stripe(None, body, &secrets, 0),
            Err(Refusal::Missing)
        );
        assert_eq!(
            verify_stripe(Some("t=x,v1=00"), body, &secrets, 0),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn a_paddle_signature_is_over_the_timestamp_a_colon_and_the_body() {
        let body = br#"{"event_id":"evt_01"}"#;
        let sig = hex_mac("pdl_ntfset_key", b"1700000000:{\"event_id\":\"evt_01\"}");
        let header = format!("ts=1700000000;h1={sig}");
        let secrets = [secret("pdl_ntfset_key")];
        assert_eq!(
            verify_paddle(Some(&header), body, &secrets, 1_700_000_000),
            Ok(())
        );
        let dot = hex_mac("pdl_ntfset_key", b"1700000000.{\"event_id\":\"evt_01\"}");
        assert_eq!(
            verify_paddle(
                Some(&format!("ts=1700000000;h1={dot}")),
                body,
                &secrets,
                1_700_000_000
            ),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            verify_paddle(Some(&header), body, &secrets, 1_699_999_000),
            Err(Refusal::Stale)
        );
    }
}
