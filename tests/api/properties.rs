//! Property tests: hostile bytes never panic the parsers, and encodings round-trip.

use ed25519_dalek::SigningKey;
use latchkey_core::dpop::{verify_proof, Expected};
use latchkey_core::jose::b64;
use latchkey_core::status_list;
use latchkey_core::{sign_jwt, JwkSet, StatusRef, Verifier};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::dpop::DeviceKey;

const ISS: &str = "https://app.example";

fn verifier() -> (SigningKey, Verifier) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut jwks = JwkSet::default();
    jwks.insert("k1", key.verifying_key());
    (
        key,
        Verifier {
            jwks,
            issuer: ISS.into(),
            audience: ISS.into(),
        },
    )
}

fn expected(now: i64) -> Expected<'static> {
    Expected {
        htm: "POST",
        htu: "https://app.example/api/licenses",
        now,
        window: 60,
        ath: None,
        nonce: None,
    }
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "\\PC{0,40}".prop_map(Value::from),
        "[A-Za-z0-9_-]{0,80}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::hash_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(b64),
        "[A-Za-z0-9_\\-=+/.]{0,80}",
        json_value().prop_map(|v| b64(v.to_string())).boxed(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_license_verifier(token in "\\PC{0,400}") {
        let (_, v) = verifier();
        let _ = v.verify(&token, 1_000);
    }

    #[test]
    fn arbitrary_segments_never_panic_or_verify(h in segment(), p in segment(), s in segment()) {
        let (_, v) = verifier();
        let token = [h, p, s].join(".");
        prop_assert!(v.verify(&token, 1_000).is_err());
        prop_assert!(verify_proof(&token, &expected(1_000)).is_err());
    }

    #[test]
    fn licenses_round_trip_through_sign_and_verify(
        sub in "[a-z0-9-]{1,40}",
        jti in "[a-zA-Z0-9]{1,40}",
        ent in proptest::collection::vec("[a-z]{1,12}", 0..5),
        idx in 0u64..(1 << 20),
        iat in 1_000_000i64..2_000_000_000,
        ttl in 1i64..100_000_000,
    ) {
        let (key, v) = verifier();
        let claims = json!({"iss": ISS, "aud": ISS, "sub": sub, "jti": jti, "ent": ent, "iat": iat, "nbf": iat,
            "exp": iat + ttl, "cnf": {"jkt": "x"}, "status": {"status_list": {"idx": idx, "uri": "https://app.example/api/status-lists/1"}}});
        let token = sign_jwt(&key, "k1", "license+jwt", &claims).unwrap();
        let out = v.verify(&token, iat).unwrap();
        prop_assert_eq!(&out.sub, &sub);
        prop_assert_eq!(&out.jti, &jti);
        prop_assert_eq!(&out.ent, &ent);
        prop_assert_eq!(out.exp, iat + ttl);
        prop_assert_eq!(out.status_ref(), Some(&StatusRef { idx, uri: "https://app.example/api/status-lists/1".into() }));
        // Any single flipped character breaks it.
        let mut bytes = token.into_bytes();
        let at = (idx as usize) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        if let Ok(tampered) = String::from_utf8(bytes) {
            prop_assert!(v.verify(&tampered, iat).is_err());
        }
    }

    #[test]
    fn dpop_proofs_round_trip_and_any_other_method_or_uri_fails(jti in "[a-zA-Z0-9_-]{1,64}", ed in any::<bool>(), path in "/[a-z]{1,10}") {
        let device = if ed { DeviceKey::ed25519() } else { DeviceKey::es256() };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = device.claims("POST", "https://app.example/api/licenses", None, None);
        claims["jti"] = json!(jti);
        let proof = device.jws(&device.header(), &claims);
        let checked = verify_proof(&proof, &expected(now)).unwrap();
        prop_assert_eq!(checked.jkt, device.thumbprint());
        let other_uri = format!("https://app.example{path}");
        let other = Expected { htu: &other_uri, ..expected(now) };
        let get = Expected { htm: "GET", ..expected(now) };
        prop_assert!(verify_proof(&proof, &get).is_err());
        prop_assert!(verify_proof(&proof, &other).is_err());
    }

    #[test]
    fn status_lists_round_trip_for_any_revoked_set(size in 1u64..50_000, revoked in proptest::collection::btree_set(0u64..50_000, 0..200)) {
        let revoked: Vec<u64> = revoked.into_iter().filter(|i| *i < size).collect();
        let bits = status_list::bitstring(size, revoked.iter().copied());
        let decoded = status_list::decode_lst(&status_list::encode_lst(&bits).unwrap()).unwrap();
        prop_assert_eq!(&decoded, &bits);
        for i in 0..size.min(2_000) {
            let set = (decoded[(i / 8) as usize] >> (i % 8)) & 1 == 1;
            prop_assert_eq!(set, revoked.contains(&i));
        }
    }

    #[test]
    fn arbitrary_status_list_input_never_panics(lst in "\\PC{0,200}", token in "\\PC{0,300}", idx in any::<u64>()) {
        let _ = status_list::decode_lst(&lst);
        let (_, v) = verifier();
        let status = StatusRef { idx, uri: "https://app.example/api/status-lists/1".into() };
        prop_assert!(!matches!(status_list::check(&status, &token, &v.jwks, 1_000), status_list::Status::Valid));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_webauthn_json_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<webauthn_rs::prelude::PublicKeyCredential>(&bytes);
        let _ = serde_json::from_slice::<webauthn_rs::prelude::RegisterPublicKeyCredential>(&bytes);
    }
}

/// Random damage to a real assertion's JSON: every answer is a 4xx problem, never a 5xx.
#[tokio::test]
async fn mangled_assertions_are_always_client_errors() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let app = crate::helpers::spawn_app(crate::helpers::Db::Sqlite).await;
    let mut account = app.register("ana").await;
    let mut runner = TestRunner::deterministic();
    let fields = [
        "id",
        "rawId",
        "type",
        "response.clientDataJSON",
        "response.authenticatorData",
        "response.signature",
        "response.userHandle",
        "response",
    ];
    for case in 0..48 {
        let options = app
            .post("/api/login/start", &json!({"username": "ana"}))
            .await;
        let mut assertion = account
            .authenticator
            .get(
                &options.body,
                crate::helpers::ORIGIN,
                &crate::authenticator::Tweaks::default(),
            )
            .unwrap();
        let value = json_value().new_tree(&mut runner).unwrap().current();
        let field = fields[case % fields.len()];
        match field.split_once('.') {
            Some((outer, inner)) => assertion[outer][inner] = value,
            None => assertion[field] = value,
        }
        let reply = app.post("/api/login/finish", &assertion).await;
        assert!(
            reply.status.is_client_error(),
            "{field}: {} {}",
            reply.status,
            reply.text
        );
        reply.problem();
    }
}
