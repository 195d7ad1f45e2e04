use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::helpers::{new_client, TestApp, ORIGIN};
use crate::on_both_databases;

/// Every hostile variant of a sign-in assertion, each refused with a 400/401 problem.
fn hostile_tweaks() -> Vec<(&'static str, Tweaks)> {
    let t = Tweaks::default;
    vec![
        (
            "another scheme",
            Tweaks {
                origin: Some("https://localhost:8080".into()),
                ..t()
            },
        ),
        (
            "another port",
            Tweaks {
                origin: Some("http://localhost:8081".into()),
                ..t()
            },
        ),
        (
            "a look-alike suffix",
            Tweaks {
                origin: Some("http://evil-localhost:8080".into()),
                ..t()
            },
        ),
        (
            "a subdomain",
            Tweaks {
                origin: Some("http://evil.localhost:8080".into()),
                ..t()
            },
        ),
        (
            "the wrong RP ID hash",
            Tweaks {
                rp_id: Some("evil.example".into()),
                ..t()
            },
        ),
        (
            "the wrong ceremony type",
            Tweaks {
                ceremony_type: Some("webauthn.create".into()),
                ..t()
            },
        ),
        (
            "a bad signature",
            Tweaks {
                corrupt_signature: true,
                ..t()
            },
        ),
        (
            "user presence missing",
            Tweaks {
                user_present: Some(false),
                ..t()
            },
        ),
        (
            "user verification missing",
            Tweaks {
                user_verified: Some(false),
                ..t()
            },
        ),
        (
            "another challenge",
            Tweaks {
                challenge: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
                ..t()
            },
        ),
    ]
}

/// Writes a request by hand (no body beyond `body`) and returns the start of the answer.
async fn raw_request(app: &TestApp, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let mut read = 0;
    while read < answer.len() {
        match stream.read(&mut answer[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        if answer[..read].windows(4).any(|w| w == b"\r\n\r\n")
            && String::from_utf8_lossy(&answer[..read]).contains('}')
        {
            break;
        }
    }
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

async fn refused(app: &TestApp, reply: &crate::helpers::Reply, case: &str) {
    assert!(
        reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::UNAUTHORIZED,
        "{case}: {} {}",
        reply.status,
        reply.text
    );
    reply.problem();
    let _ = app;
}

on_both_databases! {
    async fn hostile_assertions_are_refused_without_a_session(app) {
        let mut account = app.register("alice").await;
        for (case, tweaks) in hostile_tweaks() {
            let client = new_client();
            let reply = app.login_with(&client, Some("alice"), &mut account.authenticator, &tweaks).await;
            refused(&app, &reply, case).await;
            assert_eq!(app.send(&client, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED, "{case}");
        }
        assert_eq!(app.login(&mut account).await.status, StatusCode::OK, "the honest passkey still works");
    }

    async fn hostile_registrations_are_refused_and_create_nothing(app) {
        for (case, tweaks) in hostile_tweaks() {
            if case == "a bad signature" {
                continue; // "none" attestation carries no signature
            }
            let client = new_client();
            let options = app.send(&client, Method::POST, "/api/register/start", Some(&json!({"username": "bob"})), &[]).await;
            let mut tweaks = tweaks;
            if tweaks.ceremony_type.is_some() {
                tweaks.ceremony_type = Some("webauthn.get".into());
            }
            let credential = SoftAuthenticator::new().create(&options.body, ORIGIN, &tweaks).unwrap();
            let reply = app.send(&client, Method::POST, "/api/register/finish", Some(&credential), &[]).await;
            refused(&app, &reply, case).await;
        }
        assert_eq!(app.count("users").await, 0);
        assert_eq!(app.count("credentials").await, 0);
    }

    async fn malformed_credentials_get_a_problem_never_a_500(app) {
        let mut account = app.register("carol").await;
        let options = app.post("/api/login/start", &json!({"username": "carol"})).await;
        let good = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let mut cases: Vec<(&str, Value)> = vec![
            ("not base64", { let mut v = good.clone(); v["response"]["authenticatorData"] = json!("@@@not-base64@@@"); v }),
            ("padded base64", { let mut v = good.clone(); v["rawId"] = json!(format!("{}==", v["rawId"].as_str().unwrap())); v }),
            ("truncated authenticator data", { let mut v = good.clone(); v["response"]["authenticatorData"] = json!("AAAA"); v }),
            ("client data not JSON", { let mut v = good.clone(); v["response"]["clientDataJSON"] = json!("bm90IGpzb24"); v }),
            ("signature not DER", { let mut v = good.clone(); v["response"]["signature"] = json!("AAEC"); v }),
            ("missing response", json!({"id": good["id"], "rawId": good["rawId"], "type": "public-key"})),
            ("wrong types", json!({"id": 5, "rawId": [], "response": "x"})),
            ("empty object", json!({})),
        ];
        cases.push(("array", json!([1, 2, 3])));
        for (case, body) in cases {
            let reply = app.post("/api/login/finish", &body).await;
            assert!(reply.status.is_client_error(), "{case}: {} {}", reply.status, reply.text);
            reply.problem();
            // Each attempt used up the ceremony (or never reached it); start a fresh one.
            app.post("/api/login/start", &json!({"username": "carol"})).await;
        }
        let raw = app.client.post(app.url("/api/login/finish")).header("content-type", "application/json").body("{not json").send().await.unwrap();
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
        assert_eq!(raw.headers()["content-type"], "application/problem+json");
        let registration = app.client.post(app.url("/api/register/finish")).header("content-type", "application/json")
            .body(r#"{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"AA","attestationObject":"oWNmbXQ"}}"#).send().await.unwrap();
        assert!(registration.status().is_client_error());
        let no_type = app.client.post(app.url("/api/login/start")).body("{}").send().await.unwrap();
        assert_eq!(no_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    async fn a_state_changing_request_from_another_origin_is_forbidden_and_changes_nothing(app) {
        let evil = reqwest::Client::builder().cookie_store(true).build().unwrap();
        for origin in [Some("http://evil.example"), Some("http://localhost:8081"), Some("null"), None] {
            let mut request = evil.post(app.url("/api/register/start")).json(&json!({"username": "zed"}));
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::FORBIDDEN, "{origin:?}");
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["type"], "urn:latchkey:problem:cross-origin-request");
        }
        let account = app.register("dave").await;
        let path = format!("/api/me/passkeys/{}", account.credential_id);
        let cross = app.send(&app.client, Method::PATCH, &path, Some(&json!({"name": "pwned"})), &[("origin", "http://evil.example")]).await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN);
        let logout = app.send(&app.client, Method::POST, "/api/logout", None, &[("origin", "http://evil.example")]).await;
        assert_eq!(logout.status, StatusCode::FORBIDDEN);
        let me = app.get("/api/me").await;
        assert_eq!(me.status, StatusCode::OK);
        assert_ne!(me.body["passkeys"][0]["name"], "pwned");
        assert_eq!(app.count("ceremonies").await, 0);
    }

    async fn bodies_over_64_kib_are_refused_with_413(app) {
        // A declared body over the limit is refused before it is read, on any route.
        for path in ["/api/register/start", "/api/logout", "/api/me/passkeys/x", "/"] {
            let reply = raw_request(&app, &format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 70 * 1024), &[]).await;
            assert!(reply.starts_with("HTTP/1.1 413"), "{path}: {reply}");
            assert!(reply.contains("application/problem+json"), "{path}: {reply}");
        }
        // Without a Content-Length (chunked), reading stops one byte past the limit with the same answer.
        let data = vec![b'x'; 64 * 1024 + 1];
        let reply = raw_request(
            &app,
            &format!("POST /api/register/start HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", data.len()),
            &data,
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(reply.contains("payload-too-large"), "{reply}");
        assert_eq!(app.count("users").await, 0);
        assert_eq!(app.count("ceremonies").await, 0);
    }

    async fn unknown_routes_and_methods_do_not_leak_internals(app) {
        let reply = app.get("/api/nope").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        let reply = app.send(&app.client, Method::GET, "/api/login/start", None, &[]).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
