//! `LATCHKEY_BASE_PATH`: every route, page, document and URI the service
//! hands out lives under the prefix, and nothing answers outside it.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::dpop::DeviceKey;
use crate::helpers::{spawn_app_with, unb64, Db, ORIGIN};

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&unb64(payload)).unwrap()
}

#[tokio::test]
async fn the_api_and_the_uris_it_hands_out_follow_the_base_path() {
    let app = spawn_app_with(Db::Sqlite, &["--base-path", "/auth"]).await;
    // Ceremonies and sessions work through the prefix (the helpers prefix every path).
    let mut alice = app.register("alice").await;
    app.cli(&["admin", "grant", "alice", "premium"])
        .await
        .unwrap();
    assert_eq!(app.login(&mut alice).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/me").await.body["username"], "alice");

    // A DPoP proof must name the public URL, base path included.
    let device = DeviceKey::es256();
    let without_base = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    let refused = app
        .send(
            &app.client,
            Method::POST,
            "/api/licenses",
            None,
            &[("dpop", &without_base)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.problem(), "invalid-dpop-proof");
    let minted = app.mint(&app.client, &device).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text);
    let license = minted.body["license"].as_str().unwrap().to_owned();

    // The license's status list is at the base path, and says so in its `sub`.
    let claims = claims(&license);
    assert_eq!(
        claims["iss"], ORIGIN,
        "the issuer is the origin, without a path"
    );
    let uri = claims["status"]["status_list"]["uri"].as_str().unwrap();
    let path = uri
        .strip_prefix(&format!("{ORIGIN}/auth"))
        .unwrap_or_else(|| panic!("{uri}"));
    assert!(path.starts_with("/api/status-lists/"), "{uri}");
    let list = app.get(path).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(claims_of_text(&list.text)["sub"], uri);

    assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK);
    let stale = device.proof(
        "GET",
        &format!("{ORIGIN}/api/premium/example"),
        Some(&license),
        None,
    );
    let auth = format!("DPoP {license}");
    let refused = app
        .send(
            &app.client,
            Method::GET,
            "/api/premium/example",
            None,
            &[("authorization", &auth), ("dpop", &stale)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
}

fn claims_of_text(token: &str) -> Value {
    claims(token.trim())
}

#[tokio::test]
async fn pages_documents_and_probes_are_under_the_base_path_and_nothing_outside_it() {
    let app = spawn_app_with(Db::Sqlite, &["--base-path", "/id/latchkey"]).await;
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at = |path: &str| format!("http://{}{path}", app.addr);

    let bare = raw.get(at("/id/latchkey?x=1")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()["location"], "/id/latchkey/?x=1");

    for (path, kind) in [
        ("/", "text/html"),
        ("/admin", "text/html"),
        ("/latchkey.js", "javascript"),
        ("/sw.js", "javascript"),
        ("/manifest.webmanifest", ""),
        ("/.well-known/jwks.json", "json"),
        ("/healthz", ""),
        ("/readyz", ""),
        ("/openapi.json", "application/json"),
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let content_type = reply.headers["content-type"].to_str().unwrap();
        assert!(content_type.contains(kind), "{path}: {content_type}");
    }
    let sw = app.get("/sw.js").await;
    assert!(
        sw.headers.get("service-worker-allowed").is_none(),
        "the worker's scope is its own folder, the base path"
    );
    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.body["servers"][0]["url"], "/id/latchkey");
    assert!(doc.body["paths"]["/api/licenses"].is_object());

    // The demo page's links are relative, so they resolve under the prefix.
    let index = app.get("/").await.text;
    assert!(
        index.contains(r#"src="app.js""#) && !index.contains(r#"src="/"#),
        "{index}"
    );
    let manifest = app.get("/manifest.webmanifest").await.body;
    assert_eq!(manifest["start_url"], "./");
    assert_eq!(manifest["scope"], "./");

    // The 404 page is shown at any depth: its links carry the prefix.
    let missing = app.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.text.contains(r#"href="/id/latchkey/app.css""#),
        "{}",
        missing.text
    );
    let nothing = app.get("/api/nothing").await;
    assert_eq!(nothing.problem(), "not-found");
    assert!(
        nothing.body["detail"]
            .as_str()
            .unwrap()
            .contains("/id/latchkey/openapi.json"),
        "{}",
        nothing.text
    );

    // Outside the prefix nothing answers, not even the probes.
    for path in [
        "/",
        "/api/me",
        "/readyz",
        "/latchkey.js",
        "/id/latchkeyx/",
        "/id/",
    ] {
        let reply = raw.get(at(path)).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            reply.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        for header in [
            "content-security-policy",
            "x-content-type-options",
            "x-frame-options",
        ] {
            assert!(reply.headers().contains_key(header), "{path}: no {header}");
        }
    }
}

#[tokio::test]
async fn rate_limits_still_apply_under_the_base_path() {
    let app = spawn_app_with(
        Db::Sqlite,
        &["--base-path", "/auth", "--rate-limit-licenses", "1"],
    )
    .await;
    app.register("rita").await;
    let device = DeviceKey::es256();
    assert_eq!(
        app.mint(&app.client, &device).await.status,
        StatusCode::CREATED
    );
    let second = app.mint(&app.client, &device).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.problem(), "rate-limited");
}
