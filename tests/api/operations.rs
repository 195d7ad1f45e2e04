use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_with, Db, TestApp, ORIGIN};
use crate::on_both_databases;

on_both_databases! {
    async fn pages_carry_a_strict_content_security_policy_and_friends(app) {
        for path in ["/", "/admin", "/latchkey.js", "/api/me", "/nope"] {
            let reply = app.get(path).await;
            let csp = reply.headers["content-security-policy"].to_str().unwrap();
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}");
            assert_eq!(reply.headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(reply.headers["referrer-policy"], "no-referrer", "{path}");
            assert_eq!(reply.headers["cross-origin-opener-policy"], "same-origin", "{path}");
            assert!(reply.headers.get("strict-transport-security").is_none(), "no HSTS on http");
            assert!(reply.headers.get("x-request-id").is_some());
        }
        assert_eq!(app.get("/").await.status, StatusCode::OK);
        assert_eq!(app.get("/nope").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/sw.js").await.headers["cache-control"], "no-cache");
    }

    async fn no_cors_for_foreign_origins(app) {
        let preflight = app.send(&app.client, Method::OPTIONS, "/api/me", None, &[("origin", "https://evil.example"), ("access-control-request-method", "GET")]).await;
        assert!(preflight.headers.get("access-control-allow-origin").is_none());
        let get = app.send(&new_client(), Method::GET, "/.well-known/jwks.json", None, &[("origin", "https://evil.example")]).await;
        assert!(get.headers.get("access-control-allow-origin").is_none());
        assert!(get.headers.get("access-control-allow-credentials").is_none());
    }

    async fn responses_with_tokens_or_personal_data_are_not_stored(app) {
        app.register("ana").await;
        app.cli(&["admin", "grant", "ana", "premium"]).await.unwrap();
        let start = app.post("/api/login/start", &json!({})).await;
        assert_eq!(start.headers["cache-control"], "no-store");
        let me = app.get("/api/me").await;
        assert_eq!(me.headers["cache-control"], "no-store");
        let mint = app.mint(&app.client, &DeviceKey::ed25519()).await;
        assert_eq!(mint.headers["cache-control"], "no-store");
    }

    async fn anonymous_ceremonies_expire_quickly_and_are_capped(app) {
        let client = new_client();
        app.send(&client, Method::POST, "/api/login/start", Some(&json!({})), &[]).await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expiry = app.scalar("SELECT MAX(expires_at) FROM sessions WHERE user_id IS NULL").await;
        assert!(expiry <= now + 301, "an anonymous session lives as long as its ceremony, not a week");
        // The ceremony lives in its session: starting nothing else writes a row.
        assert_eq!(app.count("sessions").await, 1);
        assert_eq!(app.count("ceremonies").await, 0);
        let data = app.text("SELECT data FROM sessions").await;
        let ceremony: serde_json::Value = serde_json::from_str::<serde_json::Value>(&data).unwrap()["ceremony:login"].clone();
        assert!(ceremony["expires_at"].as_i64().unwrap() <= now + 301, "{data}");
        // Starting again in the same session replaces the ceremony instead of adding one.
        for _ in 0..5 {
            app.send(&client, Method::POST, "/api/login/start", Some(&json!({})), &[]).await;
        }
        assert_eq!(app.count("sessions").await, 1);
        let data = app.text("SELECT data FROM sessions").await;
        let again: serde_json::Value = serde_json::from_str::<serde_json::Value>(&data).unwrap()["ceremony:login"].clone();
        assert_ne!(again["id"], ceremony["id"], "a new ceremony replaced the first");
        assert_eq!(app.state.store.anonymous_sessions(now).await.unwrap(), 1);
        // Expired rows are deleted by the upkeep.
        crate::status::execute(&app, "UPDATE sessions SET expires_at = 1 WHERE user_id IS NULL").await;
        app.state.store.delete_expired(now).await.unwrap();
        assert_eq!(app.count("sessions").await, 0);
        assert_eq!(app.state.store.anonymous_sessions(now).await.unwrap(), 0);
    }
}

async fn with_args(db: Db, args: &[&str]) -> TestApp {
    spawn_app_with(db, args).await
}

async fn rate_limits(db: Db) {
    let app = with_args(
        db,
        &["--rate-limit-ceremonies", "3", "--rate-limit-licenses", "2"],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.post("/api/login/start", &json!({})).await.status,
            StatusCode::OK
        );
    }
    let limited = app.post("/api/login/start", &json!({})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem(), "rate-limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        app.get("/.well-known/jwks.json").await.status,
        StatusCode::OK,
        "other routes are not limited"
    );
    for _ in 0..2 {
        app.mint(&app.client, &DeviceKey::ed25519()).await;
    }
    assert_eq!(
        app.mint(&app.client, &DeviceKey::ed25519()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn pending_cap(db: Db) {
    let app = with_args(db, &["--max-pending-ceremonies", "2"]).await;
    for _ in 0..2 {
        assert_eq!(
            app.send(
                &new_client(),
                Method::POST,
                "/api/login/start",
                Some(&json!({})),
                &[]
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    let third = app
        .send(
            &new_client(),
            Method::POST,
            "/api/login/start",
            Some(&json!({})),
            &[],
        )
        .await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.problem(), "unavailable");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM sessions WHERE user_id IS NULL")
            .await,
        2,
        "the refused start kept nothing"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_sqlite() {
    rate_limits(Db::Sqlite).await
}
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_postgres() {
    rate_limits(Db::Postgres).await
}
#[tokio::test]
async fn pending_ceremonies_are_capped_sqlite() {
    pending_cap(Db::Sqlite).await
}
#[tokio::test]
async fn pending_ceremonies_are_capped_postgres() {
    pending_cap(Db::Postgres).await
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_the_domain_events() {
    let handle = latchkey::metrics::install().unwrap();
    let app = crate::helpers::spawn_app(Db::Sqlite).await;
    app.register("max").await;
    app.cli(&["admin", "grant", "max", "premium"])
        .await
        .unwrap();
    app.mint(&app.client, &DeviceKey::ed25519()).await;
    let router = latchkey::metrics::router(handle);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "latchkey_http_requests_total{method=\"POST\",route=\"/api/register/finish\",status=\"201\"}",
        "latchkey_http_request_duration_seconds_bucket",
        "latchkey_ceremonies_total{kind=\"registration\",outcome=\"success\"}",
        "latchkey_licenses_minted_total",
        "latchkey_db_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[tokio::test]
async fn https_origins_get_hsts_and_a_host_prefixed_secure_cookie() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = format!("sqlite://{}", dir.path().join("db").display());
    let cli = <latchkey::config::Cli as clap::Parser>::try_parse_from([
        "latchkey",
        "--origin",
        "https://localhost",
        "--data-dir",
        &dir.path().display().to_string(),
        "--database-url",
        &db,
        "serve",
    ])
    .unwrap();
    let Some(latchkey::config::Command::Serve(args)) = cli.command else {
        panic!()
    };
    let state = latchkey::state::AppState::build(&cli.common, &args)
        .await
        .unwrap();
    let router = latchkey::app::build_router(state, latchkey::config::default_static_dir(), 65536);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(latchkey::app::serve(
        listener,
        router,
        args.connection_limits(),
        std::future::pending(),
    ));
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/api/login/start"))
        .header("origin", "https://localhost")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let cookie = reply.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-latchkey="), "{cookie}");
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain="), "{cookie}");
}

#[test]
fn a_wrong_setting_stops_start_up_with_one_clear_line() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .env_clear()
            .env(
                "LATCHKEY_DATA_DIR",
                tempfile::TempDir::new().unwrap().path(),
            )
            .env("LATCHKEY_METRICS_LISTEN", "off")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[
        "--origin",
        "https://app.example.com",
        "--rp-id",
        "other.example",
        "serve",
    ]);
    assert!(err.contains("LATCHKEY_RP_ID"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = run(&[
        "--origin",
        "http://app.example.com",
        "--rp-id",
        "app.example.com",
        "serve",
    ]);
    assert!(err.contains("https"), "{err}");
    let err = run(&[
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "serve",
    ]);
    assert!(err.contains("PostgreSQL"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = run(&["--database-url", "mysql://x", "serve"]);
    assert!(err.contains("LATCHKEY_DATABASE_URL"), "{err}");
}

#[test]
fn the_migrate_command_only_migrates() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("migrate")
        .env_clear()
        .env("LATCHKEY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("latchkey.db").exists());
    assert!(!dir.path().join("kek").exists(), "migrate makes no keys");
    let _ = (
        Instant::now(),
        Duration::ZERO,
        SoftAuthenticator::new(),
        Tweaks::default(),
        ORIGIN,
    );
}

/// A request that takes longer than LATCHKEY_REQUEST_TIMEOUT (here: its body
/// never finishes arriving) is answered 503 with a problem, and the service
/// goes on answering others.
#[tokio::test]
async fn a_request_over_the_time_limit_gets_a_503_problem() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Db::Sqlite, &["--request-timeout", "300ms"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/login/start HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let mut read = 0;
    while !String::from_utf8_lossy(&answer[..read]).contains('}') {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer[read..])).await
        {
            Ok(Ok(n)) if n > 0 => read += n,
            other => panic!("no answer: {other:?}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:latchkey:problem:unavailable"),
        "{answer}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the limit"
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}
