//! Micro-benchmarks of the CPU work behind each request: license signing and
//! verification, DPoP proof verification (Ed25519 and ES256 device keys),
//! passkey assertion verification (webauthn-rs), and building the status list
//! for 1,000,000 licenses with 1% revoked.
//!
//! Run with `cargo bench --bench micro` (see BENCHMARKS.md). Under
//! `cargo test --all-targets` criterion runs every routine once, as a smoke
//! test, and the set-up is kept small.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/api/authenticator.rs"]
mod authenticator;
#[path = "../tests/api/dpop.rs"]
mod dpop;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use authenticator::{SoftAuthenticator, Tweaks};
use dpop::DeviceKey;
use latchkey_core::dpop::{ath, verify_proof, Expected};
use latchkey_core::jose::b64;
use latchkey_core::status_list::{bitstring, claims, encode_lst, STATUS_LIST_TYP};
use latchkey_core::{sign_jwt, JwkSet, PublishedJwk, Verifier};

const ORIGIN: &str = "http://localhost:8080";
const LICENSE_TYP: &str = "license+jwt";
/// Entries in the benchmarked status list, and how many of them are revoked (1%).
const LIST_SIZE: u64 = 1_000_000;
const LIST_REVOKED: usize = 10_000;
/// Seed of the revoked indexes, so every run compresses the same bitstring.
const LIST_SEED: u64 = 0x1a7c_4e75;

/// True when criterion runs for measurements (`cargo bench`), false in
/// `cargo test`'s one-shot mode, where the set-up is kept small.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The service's signing key and kid, fixed so runs are comparable.
fn signing_key() -> (SigningKey, String) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let kid = PublishedJwk::ed25519(&key.verifying_key()).kid;
    (key, kid)
}

/// License claims shaped like the ones `POST /api/licenses` signs: one
/// entitlement, one passkey in `cks`, a status-list reference.
fn license_claims(device: &DeviceKey) -> Value {
    let now = now();
    json!({
        "iss": ORIGIN,
        "aud": ORIGIN,
        "sub": "0b6f6a1e-5d1c-4f3e-9a4b-2c7d8e9f0a1b",
        "name": "bench-user",
        "iat": now,
        "nbf": now,
        "exp": now + 30 * 86_400,
        "jti": "4f9d2c7a1b3e4d5f8a6b7c8d9e0f1a2b",
        "ent": ["premium"],
        "cnf": {"jkt": device.thumbprint()},
        "status": {"status_list": {"idx": 123_456, "uri": format!("{ORIGIN}/api/status-lists/1")}},
        "cks": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "kid": "q3Zlb2xQbWVQYXNza2V5SWQ",
        }],
    })
}

fn licenses(c: &mut Criterion) {
    let (key, kid) = signing_key();
    let device = DeviceKey::ed25519();
    let claims = license_claims(&device);
    let token = sign_jwt(&key, &kid, LICENSE_TYP, &claims).unwrap();
    let mut jwks = JwkSet::default();
    jwks.insert(kid.clone(), key.verifying_key());
    let verifier = Verifier {
        jwks,
        issuer: ORIGIN.into(),
        audience: ORIGIN.into(),
    };
    let now = now();
    // Make sure what is timed is the success path.
    verifier.verify(&token, now).unwrap();

    let mut group = c.benchmark_group("license");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| sign_jwt(black_box(&key), &kid, LICENSE_TYP, black_box(&claims)).unwrap());
    });
    group.bench_function("verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), now).unwrap());
    });
    group.finish();
}

fn dpop_proofs(c: &mut Criterion) {
    let htu = format!("{ORIGIN}/api/licenses");
    let now = now();
    let expected = Expected {
        htm: "POST",
        htu: &htu,
        now,
        window: 60,
        ath: None,
        nonce: None,
    };
    let mut group = c.benchmark_group("dpop_verify");
    group.throughput(Throughput::Elements(1));
    for (name, device) in [
        ("ed25519", DeviceKey::ed25519()),
        ("es256", DeviceKey::es256()),
    ] {
        let proof = device.proof("POST", &htu, None, None);
        verify_proof(&proof, &expected).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| verify_proof(black_box(&proof), &expected).unwrap());
        });
    }
    // The premium endpoint's variant: same proof checks plus `ath`.
    let license = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";
    let premium_htu = format!("{ORIGIN}/api/premium/example");
    let ath = ath(license);
    let premium = Expected {
        htm: "GET",
        htu: &premium_htu,
        now,
        window: 60,
        ath: Some(&ath),
        nonce: None,
    };
    let device = DeviceKey::ed25519();
    let proof = device.proof("GET", &premium_htu, Some(license), None);
    verify_proof(&proof, &premium).unwrap();
    group.bench_function("ed25519_with_ath", |b| {
        b.iter(|| verify_proof(black_box(&proof), &premium).unwrap());
    });
    group.finish();
}

fn webauthn() -> Webauthn {
    let origin = Url::parse(ORIGIN).unwrap();
    WebauthnBuilder::new("localhost", &origin)
        .unwrap()
        .rp_name("Latchkey")
        .build()
        .unwrap()
}

/// Registers one synced passkey (counter stays 0, as the load generator's do).
fn register(webauthn: &Webauthn, soft: &mut SoftAuthenticator) -> Passkey {
    let (options, state) = webauthn
        .start_passkey_registration(Uuid::new_v4(), "bench-user", "Bench User", None)
        .unwrap();
    let options = serde_json::to_value(options).unwrap();
    let credential = soft.create(&options, ORIGIN, &Tweaks::default()).unwrap();
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential).unwrap();
    webauthn
        .finish_passkey_registration(&credential, &state)
        .unwrap()
}

fn passkeys(c: &mut Criterion) {
    let webauthn = webauthn();
    let mut soft = SoftAuthenticator::new();
    soft.set_synced(true);
    let passkey = register(&webauthn, &mut soft);
    // Every verification gets its own ceremony (own challenge, own signature);
    // they are made before timing starts and used round-robin.
    let count = if measuring() { 256 } else { 2 };

    let by_username: Vec<(PublicKeyCredential, PasskeyAuthentication)> = (0..count)
        .map(|_| {
            let (options, state) = webauthn
                .start_passkey_authentication(std::slice::from_ref(&passkey))
                .unwrap();
            let options = serde_json::to_value(options).unwrap();
            let assertion = soft.get(&options, ORIGIN, &Tweaks::default()).unwrap();
            (serde_json::from_value(assertion).unwrap(), state)
        })
        .collect();
    // What the server's sign-in does: a discoverable ceremony (the allow list is
    // added to the options by the server), ceremony state and the stored passkey
    // kept as JSON, the assertion arriving as JSON.
    let discoverable: Vec<(String, String)> = (0..count)
        .map(|_| {
            let (options, state) = webauthn.start_discoverable_authentication().unwrap();
            let mut options = serde_json::to_value(options).unwrap();
            options["publicKey"]["allowCredentials"] =
                json!([{"type": "public-key", "id": b64(passkey.cred_id().as_slice())}]);
            let assertion = soft.get(&options, ORIGIN, &Tweaks::default()).unwrap();
            (
                serde_json::to_string(&assertion).unwrap(),
                serde_json::to_string(&state).unwrap(),
            )
        })
        .collect();
    let passkey_json = serde_json::to_string(&passkey).unwrap();

    let mut group = c.benchmark_group("passkey_assertion");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("finish_passkey_authentication", |b| {
        b.iter(|| {
            let (credential, state) = &by_username[i % by_username.len()];
            i += 1;
            webauthn
                .finish_passkey_authentication(black_box(credential), state)
                .unwrap()
        });
    });
    let mut i = 0;
    group.bench_function("server_path_with_json", |b| {
        b.iter(|| {
            let (assertion, state) = &discoverable[i % discoverable.len()];
            i += 1;
            let credential: PublicKeyCredential = serde_json::from_str(assertion).unwrap();
            let state: DiscoverableAuthentication = serde_json::from_str(state).unwrap();
            let mut stored: Passkey = serde_json::from_str(&passkey_json).unwrap();
            let result = webauthn
                .finish_discoverable_authentication_v2(&credential, state, &stored)
                .unwrap();
            stored.update_credential(&result);
            serde_json::to_string(&stored).unwrap()
        });
    });
    group.finish();
}

/// 1% of `LIST_SIZE` distinct indexes, from a fixed seed.
fn revoked_indexes() -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(LIST_SEED);
    let size = usize::try_from(LIST_SIZE).unwrap();
    rand::seq::index::sample(&mut rng, size, LIST_REVOKED)
        .into_iter()
        .map(|i| u64::try_from(i).unwrap())
        .collect()
}

/// What the server's status-list cache does on a rebuild, minus the database read.
fn build_status_list(key: &SigningKey, kid: &str, revoked: &[u64], now: i64) -> (String, String) {
    let bits = bitstring(LIST_SIZE, revoked.iter().copied());
    let lst = encode_lst(&bits).unwrap();
    let uri = format!("{ORIGIN}/api/status-lists/1");
    let claims = claims(&uri, now, now + 7 * 86_400, 300, lst.clone());
    let token = sign_jwt(key, kid, STATUS_LIST_TYP, &claims).unwrap();
    (lst, token)
}

fn status_list(c: &mut Criterion) {
    let (key, kid) = signing_key();
    let revoked = revoked_indexes();
    let now = now();
    let (lst, token) = build_status_list(&key, &kid, &revoked, now);
    let compressed = latchkey_core::jose::unb64(&lst).unwrap().len();
    let lst_len = lst.len();
    // What the token weighs on the wire when the response is gzip-compressed
    // (the service does not compress responses itself today).
    let gzipped = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(token.as_bytes()).unwrap();
        gz.finish().unwrap().len()
    };
    println!(
        "status list: {LIST_SIZE} entries, {LIST_REVOKED} revoked (seed {LIST_SEED:#x}): \
         bitstring {} bytes, zlib {compressed} bytes, lst {lst_len} bytes (base64url), \
         token {} bytes (gzip -6 of the token: {gzipped} bytes)",
        LIST_SIZE.div_ceil(8),
        token.len()
    );

    let mut group = c.benchmark_group("status_list_1m_1pct");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("build_total", |b| {
        b.iter(|| build_status_list(&key, &kid, black_box(&revoked), now));
    });
    group.bench_function("bitstring", |b| {
        b.iter(|| bitstring(LIST_SIZE, black_box(&revoked).iter().copied()));
    });
    let bits = bitstring(LIST_SIZE, revoked.iter().copied());
    group.bench_function("encode_lst", |b| {
        b.iter(|| encode_lst(black_box(&bits)).unwrap());
    });
    let lst = encode_lst(&bits).unwrap();
    let uri = format!("{ORIGIN}/api/status-lists/1");
    group.bench_function("claims_and_sign", |b| {
        b.iter_batched(
            || lst.clone(),
            |lst| {
                let claims = claims(&uri, now, now + 7 * 86_400, 300, lst.clone());
                sign_jwt(&key, &kid, STATUS_LIST_TYP, &claims).unwrap()
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = licenses, dpop_proofs, passkeys, status_list
}

fn main() {
    micro();
    Criterion::default().configure_from_args().final_summary();
}
