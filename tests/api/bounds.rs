//! Nothing a client sends makes memory or storage grow without bound, and
//! what identifies a client or a user is what it should be: metrics labels,
//! audit rows, connections, forwarded addresses, private files, usernames,
//! framed ceremonies and the premium endpoint.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_with, Db, TestApp, ORIGIN};
use crate::process::{free_port, ServerProcess};

async fn audit_rows(app: &TestApp) -> i64 {
    app.count("audit_log").await
}

crate::on_both_databases! {
    async fn a_credential_id_over_1023_bytes_is_refused_before_anything_is_written(app) {
        app.register("ann").await;
        let start = app.post("/api/login/start", &json!({})).await;
        assert_eq!(start.status, StatusCode::OK);
        let before = audit_rows(&app).await;
        // About 20 KB of credential id: inside the body limit, far over WebAuthn's 1023 bytes.
        let raw = latchkey_core::jose::b64(vec![7u8; 15_000]);
        let hostile = json!({"id": raw, "rawId": raw, "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}});
        let reply = app.post("/api/login/finish", &hostile).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
        assert_eq!(reply.problem(), "malformed-credential");
        assert_eq!(audit_rows(&app).await, before, "no audit row for it");
    }

    async fn audit_rows_keep_at_most_256_characters_of_what_a_client_sent(app) {
        app.register("ann").await;
        let agent = "x".repeat(5_000);
        let client = reqwest::Client::builder().cookie_store(true).user_agent(agent).build().unwrap();
        let start = app.send(&client, Method::POST, "/api/login/start", Some(&json!({})), &[("origin", ORIGIN)]).await;
        assert_eq!(start.status, StatusCode::OK);
        let unknown = latchkey_core::jose::b64([9u8; 1000]);
        let body = json!({"id": unknown, "rawId": unknown, "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}});
        let reply = app.send(&client, Method::POST, "/api/login/finish", Some(&body), &[("origin", ORIGIN)]).await;
        assert_eq!(reply.problem(), "unknown-credential");
        let longest = app.scalar("SELECT CAST(MAX(LENGTH(user_agent)) + MAX(LENGTH(target)) AS BIGINT) FROM audit_log WHERE event = 'signin.failure'").await;
        assert_eq!(longest, 256 + 256, "user agent and credential id cut to 256 characters each");
    }

    async fn failed_sign_ins_from_one_address_reach_the_log_only_up_to_a_limit(app) {
        app.register("ann").await;
        for _ in 0..25 {
            let client = new_client();
            app.send(&client, Method::POST, "/api/login/start", Some(&json!({})), &[]).await;
            let unknown = latchkey_core::jose::b64(uuid::Uuid::new_v4().as_bytes());
            let body = json!({"id": unknown, "rawId": unknown, "type": "public-key",
                "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}});
            let reply = app.send(&client, Method::POST, "/api/login/finish", Some(&body), &[]).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "each failure is still refused");
        }
        let recorded = app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'signin.failure'").await;
        assert_eq!(recorded, 10, "the first ten of the window; the rest are counted");
    }

    async fn audit_rows_past_their_retention_are_pruned_and_younger_ones_stay_append_only(app) {
        app.register("ann").await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let old = now - 401 * 86_400;
        crate::status::execute(&app, &format!("INSERT INTO audit_log (at, event) VALUES ({old}, 'signin.success')")).await;
        let young = audit_rows(&app).await - 1;
        assert!(young >= 1);
        let pruned = app.state.store.prune_audit(now).await.unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(audit_rows(&app).await, young, "only the row past 400 days went");
        let refused = match app.db {
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
                sqlx::query("DELETE FROM audit_log").execute(&pool).await.is_err()
            }
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
                sqlx::query("DELETE FROM audit_log").execute(&pool).await.is_err()
            }
        };
        assert!(refused, "younger rows cannot be deleted, even in SQL");
        assert_eq!(audit_rows(&app).await, young);
    }

    async fn look_alike_usernames_are_refused_and_names_are_compared_as_identifiers(app) {
        assert_eq!(app.post("/api/register/start", &json!({"username": "Alice"})).await.status, StatusCode::OK);
        app.register("alice").await;
        for (name, status, slug) in [
            ("ali\u{200B}ce", StatusCode::UNPROCESSABLE_ENTITY, "invalid-name"),
            ("alice\u{202E}", StatusCode::UNPROCESSABLE_ENTITY, "invalid-name"),
            ("\u{0430}lice", StatusCode::CONFLICT, "username-taken"),
            ("ALICE", StatusCode::CONFLICT, "username-taken"),
            ("\u{FF41}lice", StatusCode::CONFLICT, "username-taken"),
        ] {
            let reply = app.post("/api/register/start", &json!({"username": name})).await;
            assert_eq!(reply.status, status, "{name:?}: {}", reply.text);
            assert_eq!(reply.problem(), slug, "{name:?}");
        }
        let jose = app.register_with(&new_client(), "jos\u{E9}", SoftAuthenticator::new()).await;
        let nfd = app.post("/api/register/start", &json!({"username": "jose\u{301}"})).await;
        assert_eq!(nfd.status, StatusCode::CONFLICT, "NFD spelling of an NFC name");
        assert_eq!(app.count("users").await, 2);
        // Sign-in by any spelling of the same name finds the same user.
        let start = app.post("/api/login/start", &json!({"username": "JOSE\u{301}"})).await;
        assert_eq!(start.body["publicKey"]["allowCredentials"][0]["id"], jose.credential_id.as_str());
    }

    async fn existing_users_get_keys_and_skeletons_and_stay_signed_in(app) {
        let mut carol = app.register("carol").await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // As an earlier version stored them: no skeleton, a lower-cased key.
        crate::status::execute(&app, &format!("INSERT INTO users (id, username, username_key, display_name, role, created_at) VALUES ('legacy-1', 'Mallory', 'mallory', 'M', 'user', {now})")).await;
        crate::status::execute(&app, &format!("INSERT INTO users (id, username, username_key, display_name, role, created_at) VALUES ('legacy-2', 'Mall\u{043E}ry', 'mall\u{043E}ry', 'M2', 'user', {now})")).await;
        latchkey::state::migrate_usernames(&app.state.store).await.unwrap();
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE username_skeleton IS NULL").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE username_skeleton LIKE '%#legacy-2'").await, 1, "the look-alike keeps its account, marked");
        assert_eq!(app.login(&mut carol).await.status, StatusCode::OK);
        let taken = app.post("/api/register/start", &json!({"username": "mallory"})).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
    }

    async fn a_sign_in_without_a_username_needs_the_user_handle(app) {
        let mut account = app.register("hal").await;
        let tweaks = Tweaks { omit_user_handle: true, ..Tweaks::default() };
        let reply = app.login_with(&new_client(), None, &mut account.authenticator, &tweaks).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        assert_eq!(reply.problem(), "ceremony-failed");
        // With a username, the user was identified before the ceremony: no handle needed.
        let named = app.login_with(&new_client(), Some("hal"), &mut account.authenticator, &tweaks).await;
        assert_eq!(named.status, StatusCode::OK, "{}", named.text);
    }

    async fn ceremonies_run_in_a_frame_are_refused(app) {
        let mut account = app.register("ivy").await;
        for tweaks in [
            Tweaks { cross_origin: true, ..Tweaks::default() },
            Tweaks { top_origin: Some("https://evil.example".into()), ..Tweaks::default() },
        ] {
            let reply = app.login_with(&new_client(), Some("ivy"), &mut account.authenticator, &tweaks).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
            assert_eq!(reply.problem(), "ceremony-failed");
            let options = app.post("/api/register/start", &json!({"username": "framed"})).await;
            let credential = SoftAuthenticator::new().create(&options.body, ORIGIN, &tweaks).unwrap();
            let created = app.post("/api/register/finish", &credential).await;
            assert_eq!(created.status, StatusCode::UNAUTHORIZED, "{}", created.text);
        }
        assert_eq!(app.count("users").await, 1);
    }

    async fn a_premium_call_refused_for_its_entitlement_writes_no_replay_row(app) {
        app.register("pat").await;
        let device = DeviceKey::ed25519();
        let license = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let proofs = app.count("dpop_proofs").await;
        let reply = app.premium(&license, &device).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.problem(), "missing-entitlement");
        assert_eq!(app.count("dpop_proofs").await, proofs, "no replay row for a refused call");
    }
}

#[tokio::test]
async fn premium_calls_are_rate_limited_per_address() {
    let app = spawn_app_with(Db::Sqlite, &["--rate-limit-premium", "3"]).await;
    app.register("pam").await;
    app.cli(&["admin", "grant", "pam", "premium"])
        .await
        .unwrap();
    let device = DeviceKey::ed25519();
    let license = app.mint(&app.client, &device).await.body["license"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK);
    }
    let limited = app.premium(&license, &device).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem(), "rate-limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn with_trusted_proxies_only_the_appended_hop_names_the_client_everywhere() {
    let app = spawn_app_with(
        Db::Sqlite,
        &["--trust-forwarded-for", "--rate-limit-ceremonies", "2"],
    )
    .await;
    let starts = |hops: &'static str| {
        let app = &app;
        async move {
            let client = new_client();
            app.send(
                &client,
                Method::POST,
                "/api/login/start",
                Some(&json!({})),
                &[("x-forwarded-for", hops)],
            )
            .await
            .status
        }
    };
    // The client wrote "6.6.6.6"; the proxy appended an address it could not
    // parse: the socket address is used, never the client's own hop.
    assert_eq!(starts("6.6.6.6, unparseable").await, StatusCode::OK);
    assert_eq!(starts("7.7.7.7, unparseable").await, StatusCode::OK);
    assert_eq!(
        starts("8.8.8.8, unparseable").await,
        StatusCode::TOO_MANY_REQUESTS,
        "one bucket: the socket's"
    );
    assert_eq!(
        starts("6.6.6.6, 203.0.113.9").await,
        StatusCode::OK,
        "the proxy's hop has its own bucket"
    );
    // Sessions and audit rows record the same address.
    let client = new_client();
    let options = app
        .send(
            &client,
            Method::POST,
            "/api/register/start",
            Some(&json!({"username": "fwd"})),
            &[("x-forwarded-for", "1.2.3.4, 198.51.100.7")],
        )
        .await;
    let credential = SoftAuthenticator::new()
        .create(&options.body, ORIGIN, &Tweaks::default())
        .unwrap();
    let done = app
        .send(
            &client,
            Method::POST,
            "/api/register/finish",
            Some(&credential),
            &[("x-forwarded-for", "1.2.3.4, 198.51.100.7")],
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'registration' AND client_addr = '198.51.100.7'").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL AND client_addr = '198.51.100.7'").await, 1);
}

#[tokio::test]
async fn request_metrics_have_bounded_labels_whatever_clients_send() {
    let data = tempfile::TempDir::new().unwrap();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = ServerProcess::start(
        data.path(),
        &[
            ("LATCHKEY_METRICS_LISTEN", &metrics),
            ("LATCHKEY_RATE_LIMIT_CEREMONIES", "0"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let series = || async {
        let text = client
            .get(format!("http://{metrics}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("latchkey_http_requests_total{"))
            .count()
    };
    let random = |i: usize| {
        let method =
            Method::from_bytes(format!("M{}X{i}", uuid::Uuid::new_v4().simple()).as_bytes())
                .unwrap();
        let path = match i % 3 {
            0 => format!("/api/{}", uuid::Uuid::new_v4()),
            1 => format!("/{}", uuid::Uuid::new_v4()),
            _ => "/api/me".to_owned(),
        };
        (method, path)
    };
    for i in 0..30 {
        let (method, path) = random(i);
        client
            .request(method, server.url(&path))
            .send()
            .await
            .unwrap();
    }
    let before = series().await;
    for i in 0..300 {
        let (method, path) = random(i);
        client
            .request(method, server.url(&path))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        series().await,
        before,
        "300 more requests with new methods and paths made no new series"
    );
    assert!(before > 0);
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Db::Sqlite, &["--header-read-timeout", "1s"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    match closed {
        Ok(Ok(n)) => assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(_)) => {}
        Err(_) => panic!("the connection was still open after 10 s"),
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(Db::Sqlite, &["--max-connections", "2"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // Let the service accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn({
        let url = app.url("/healthz");
        async move { reqwest::get(url).await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are held"
    );
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "served once a slot is free");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::TempDir::new().unwrap();
    let dir = parent.path().join("fresh");
    let dir_text = dir.display().to_string();
    let env = [("LATCHKEY_DATA_DIR", dir_text.as_str())];
    let server = ServerProcess::start(parent.path(), &env).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("latchkey.db")), 0o600);
    assert_eq!(mode(&dir.join("kek")), 0o600);
    drop(server);
    // An existing directory others can read is used, with a warning.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = ServerProcess::start(parent.path(), &env).await;
    assert!(
        again.log_text().contains("can be read by other users"),
        "{}",
        again.log_text()
    );
}
