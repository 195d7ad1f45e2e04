//! Two real instances over one PostgreSQL database behave as one service.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;
use crate::helpers::{create_pg_database, new_client, unb64, ORIGIN};
use crate::process::ServerProcess;

fn claims(token: &str) -> Value {
    serde_json::from_slice(&unb64(token.split('.').nth(1).unwrap())).unwrap()
}

fn cli(dir: &std::path::Path, url: &str, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_clear()
        .env("LATCHKEY_DATA_DIR", dir)
        .env("LATCHKEY_DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls until `check` holds, up to `bound`; returns how long it took.
async fn within<F, Fut>(bound: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < bound, "not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn status_bit(client: &reqwest::Client, server: &ServerProcess, license: &str) -> u8 {
    let list = &claims(license)["status"]["status_list"];
    let path = list["uri"].as_str().unwrap().strip_prefix(ORIGIN).unwrap();
    let idx = list["idx"].as_u64().unwrap();
    let token = client
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lst = claims(&token)["status_list"]["lst"]
        .as_str()
        .unwrap()
        .to_owned();
    let bits = latchkey_core::status_list::decode_lst(&lst).unwrap();
    (bits[(idx / 8) as usize] >> (idx % 8)) & 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_behave_as_one_service() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = create_pg_database().await;
    // Shared: the database and the KEK (the key file in the shared data directory).
    let env = [
        ("LATCHKEY_DATABASE_URL", url.as_str()),
        ("LATCHKEY_CACHE_REFRESH", "250ms"),
    ];
    let a = ServerProcess::start(dir.path(), &env).await;
    let b = ServerProcess::start(dir.path(), &env).await;
    let browser = new_client();
    let post = |server: &ServerProcess, path: &str, body: &Value| {
        browser.post(server.url(path)).json(body).send()
    };

    // A ceremony started on A finishes on B (no sticky sessions).
    let options: Value = post(&a, "/api/register/start", &json!({"username": "ana"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut authenticator = SoftAuthenticator::new();
    let credential = authenticator
        .create(&options, ORIGIN, &Tweaks::default())
        .unwrap();
    let registered = post(&b, "/api/register/finish", &credential).await.unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let options: Value = post(&b, "/api/login/start", &json!({"username": "ana"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assertion = authenticator
        .get(&options, ORIGIN, &Tweaks::default())
        .unwrap();
    assert_eq!(
        post(&a, "/api/login/finish", &assertion)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    cli(dir.path(), &url, &["admin", "grant", "ana", "premium"]);

    // A license minted on A verifies with B's JWKS.
    let device = DeviceKey::es256();
    let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    let minted: Value = browser
        .post(a.url("/api/licenses"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let license = minted["license"].as_str().unwrap().to_owned();
    let jwks_b = browser
        .get(b.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let verifier = latchkey_core::Verifier {
        jwks: latchkey_core::JwkSet::from_json(jwks_b.as_bytes()).unwrap(),
        issuer: ORIGIN.into(),
        audience: ORIGIN.into(),
    };
    verifier
        .verify(&license, time::OffsetDateTime::now_utc().unix_timestamp())
        .unwrap();

    // A DPoP proof accepted on A is refused on B.
    let premium_proof = device.proof(
        "GET",
        &format!("{ORIGIN}/api/premium/example"),
        Some(&license),
        None,
    );
    let call = |server: &ServerProcess, proof: String| {
        browser
            .get(server.url("/api/premium/example"))
            .header("authorization", format!("DPoP {license}"))
            .header("dpop", proof)
            .send()
    };
    assert_eq!(
        call(&a, premium_proof.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&b, premium_proof).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "replayed on the other instance"
    );

    // A revocation made on A is refused at once by B, and reaches B's status list within its cache time.
    let admin = new_client();
    let root_options: Value = admin
        .post(a.url("/api/register/start"))
        .json(&json!({"username": "root"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root_credential = SoftAuthenticator::new()
        .create(&root_options, ORIGIN, &Tweaks::default())
        .unwrap();
    assert_eq!(
        admin
            .post(a.url("/api/register/finish"))
            .json(&root_credential)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    cli(dir.path(), &url, &["admin", "promote", "root"]);
    assert_eq!(status_bit(&browser, &b, &license).await, 0);
    let jti = claims(&license)["jti"].as_str().unwrap().to_owned();
    let revoked = admin
        .post(a.url(&format!("/api/admin/licenses/{jti}/revoke")))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let fresh = device.proof(
        "GET",
        &format!("{ORIGIN}/api/premium/example"),
        Some(&license),
        None,
    );
    assert_eq!(
        call(&b, fresh).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "B refuses at once"
    );
    let took = within(Duration::from_secs(5), || async {
        status_bit(&browser, &b, &license).await == 1
    })
    .await;
    println!("revocation reached B's status list in {took:?} (refresh 250 ms)");

    // A key rotation done on A's side reaches B without a restart.
    let kid_before = claims_header(&license);
    cli(dir.path(), &url, &["keys", "rotate", "--now"]);
    let took = within(Duration::from_secs(5), || async {
        let jwks: Value = browser
            .get(b.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"].as_array().unwrap().len() == 2
    })
    .await;
    println!("rotation reached B's JWKS in {took:?} (refresh 250 ms)");
    let options: Value = post(&b, "/api/login/start", &json!({"username": "ana"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assertion = authenticator
        .get(&options, ORIGIN, &Tweaks::default())
        .unwrap();
    assert_eq!(
        post(&b, "/api/login/finish", &assertion)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    let minted: Value = browser
        .post(b.url("/api/licenses"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        claims_header(minted["license"].as_str().unwrap()),
        kid_before,
        "B signs with the new key"
    );
}

fn claims_header(token: &str) -> String {
    let header: Value = serde_json::from_slice(&unb64(token.split('.').next().unwrap())).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}
