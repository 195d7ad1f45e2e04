use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;
use crate::helpers::{create_pg_database, spawn_app_at, Db, ORIGIN};
use crate::on_both_databases;
use crate::process::ServerProcess;

/// A TCP proxy in front of PostgreSQL that can be cut: existing connections
/// drop and new ones are refused, as when the server stops.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, t) = (down.clone(), tasks.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                t.lock().unwrap().push(task);
            }
        });
        Self { port, down, tasks }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

async fn wait_ready(app: &crate::helpers::TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("/readyz").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_going_away_gives_503s_keeps_nothing_half_written_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let direct = create_pg_database().await;
    let through_proxy = direct.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = spawn_app_at(
        Db::Postgres,
        &through_proxy,
        Arc::new(tempfile::TempDir::new().unwrap()),
        &[],
    )
    .await;
    let mut account = app.register("ana").await;
    // A registration started before the outage and finished during it.
    let other = crate::helpers::new_client();
    let options = app
        .send(
            &other,
            Method::POST,
            "/api/register/start",
            Some(&json!({"username": "ben"})),
            &[],
        )
        .await;
    let credential = SoftAuthenticator::new()
        .create(&options.body, ORIGIN, &Tweaks::default())
        .unwrap();

    proxy.cut();
    let started = Instant::now();
    let ready = app.get("/readyz").await;
    let waited = started.elapsed();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.problem(), "unavailable");
    assert!(
        waited < Duration::from_secs(5),
        "gave up after its 1 s timeout, not hung ({waited:?})"
    );
    let finish = app
        .send(
            &other,
            Method::POST,
            "/api/register/finish",
            Some(&credential),
            &[],
        )
        .await;
    assert_eq!(
        finish.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        finish.text
    );
    assert_eq!(finish.problem(), "unavailable");
    assert!(finish.headers.get("retry-after").is_some());
    let me = app.get("/api/me").await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{}", me.text);

    proxy.restore();
    wait_ready(&app).await;
    assert_eq!(
        app.login(&mut account).await.status,
        StatusCode::OK,
        "recovered without a restart"
    );
    let pool = sqlx::PgPool::connect(&direct).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1, "the registration that failed left nothing behind");
}

#[tokio::test]
async fn a_locked_sqlite_database_gives_503s_and_recovers_when_released() {
    let app = crate::helpers::spawn_app(Db::Sqlite).await;
    let mut account = app.register("ana").await;
    let blocker = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
    let mut held = blocker.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO audit_log (at, event) VALUES (1, 'held')")
        .execute(&mut *held)
        .await
        .unwrap();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let reply = app
        .post("/api/register/start", &json!({"username": "ben"}))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    held.rollback().await.unwrap();
    wait_ready(&app).await;
    assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
    assert_eq!(
        app.count("ceremonies").await,
        0,
        "the refused start left no ceremony (and the sign-in used its own)"
    );
}

/// PostgreSQL: a connection kept for the hot reads that the server closed
/// while it sat idle (a restart, `pg_terminate_backend`, a proxy's idle
/// timeout) costs no failed read: the read runs once more on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_postgres_connection_the_server_closed_costs_no_failed_read() {
    let app = crate::helpers::spawn_app(Db::Postgres).await;
    let store = &app.state.store;
    // Sequential reads go round the slots: every kept connection gets opened.
    for _ in 0..8 {
        assert!(!store.license_in_force("no-such-license").await.unwrap());
    }
    let closed = sqlx_scalar(
        Db::Postgres,
        &app.database_url,
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(closed >= 1, "the service had connections open");
    for n in 0..8 {
        let read = store.license_in_force("no-such-license").await;
        assert!(
            matches!(read, Ok(false)),
            "read {n} after the close: {read:?}"
        );
    }
}

on_both_databases! {
    async fn hot_reads_after_the_store_is_closed_are_refused_as_unavailable(app) {
        let store = &app.state.store;
        assert!(!store.license_in_force("no-such-license").await.unwrap());
        store.close().await;
        let read = store.license_in_force("no-such-license").await;
        assert!(
            matches!(read, Err(latchkey::store::Error::Unavailable(_))),
            "{read:?}"
        );
    }
}

/// SQLite: committed writes reach the database file itself within moments,
/// copied by the checkpoint thread; the writer alone would leave them in the
/// WAL until it holds 4,000 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_are_checkpointed_into_the_database_file_beside_the_writer() {
    let app = crate::helpers::spawn_app(Db::Sqlite).await;
    app.register("checkpointed").await;
    // `immutable=1`: the file alone, without the WAL.
    let file = format!(
        "file:{}?immutable=1",
        app.data_dir.path().join("latchkey.db").display()
    );
    let in_file = || -> rusqlite::Result<i64> {
        let conn = rusqlite::Connection::open_with_flags(
            &file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.query_row(
            "SELECT COUNT(*) FROM users WHERE username = 'checkpointed'",
            [],
            |r| r.get(0),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    // A read of a file being written may fail or miss the row: try again.
    while !matches!(in_file(), Ok(1)) {
        assert!(
            Instant::now() < deadline,
            "the user is still only in the WAL: {:?}",
            in_file()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sqlx_scalar(db: Db, url: &str, sql: &str) -> i64 {
    match db {
        Db::Sqlite => sqlx::query_scalar(sql)
            .fetch_one(&sqlx::SqlitePool::connect(url).await.unwrap())
            .await
            .unwrap(),
        Db::Postgres => sqlx::query_scalar(sql)
            .fetch_one(&sqlx::PgPool::connect(url).await.unwrap())
            .await
            .unwrap(),
    }
}

/// Registrations and license mints stream in; the server is killed with
/// SIGKILL; after a restart everything acknowledged is there, and nothing is
/// half-written.
async fn sigkill(db: Db) {
    let dir = tempfile::TempDir::new().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("latchkey.db").display()),
        Db::Postgres => create_pg_database().await,
    };
    let env = [
        ("LATCHKEY_DATABASE_URL", url.as_str()),
        ("LATCHKEY_RATE_LIMIT_CEREMONIES", "0"),
        ("LATCHKEY_RATE_LIMIT_LICENSES", "0"),
    ];
    let mut server = ServerProcess::start(dir.path(), &env).await;
    let base = server.url("");
    let acked_users: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let acked_licenses: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (base, users, licenses, stop) = (
            base.clone(),
            acked_users.clone(),
            acked_licenses.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let client = crate::helpers::new_client();
                let post = |path: &str, body: Value| {
                    client.post(format!("{base}{path}")).json(&body).send()
                };
                let Ok(options) = post(
                    "/api/register/start",
                    json!({"username": format!("u{w}x{n}")}),
                )
                .await
                else {
                    break;
                };
                let Ok(options) = options.json::<Value>().await else {
                    break;
                };
                let Ok(credential) =
                    SoftAuthenticator::new().create(&options, ORIGIN, &Tweaks::default())
                else {
                    break;
                };
                let Ok(done) = post("/api/register/finish", credential).await else {
                    break;
                };
                if done.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(body) = done.json::<Value>().await else {
                    break;
                };
                users.lock().unwrap().push((
                    body["user_id"].as_str().unwrap().into(),
                    body["credential_id"].as_str().unwrap().into(),
                ));
                let proof = DeviceKey::ed25519().proof(
                    "POST",
                    &format!("{ORIGIN}/api/licenses"),
                    None,
                    None,
                );
                let Ok(minted) = client
                    .post(format!("{base}/api/licenses"))
                    .header("dpop", proof)
                    .send()
                    .await
                else {
                    break;
                };
                if minted.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(body) = minted.json::<Value>().await else {
                    break;
                };
                let token = body["license"].as_str().unwrap();
                let claims: Value = serde_json::from_slice(&crate::helpers::unb64(
                    token.split('.').nth(1).unwrap(),
                ))
                .unwrap();
                licenses
                    .lock()
                    .unwrap()
                    .push(claims["jti"].as_str().unwrap().into());
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked_licenses.lock().unwrap().len() < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let users = acked_users.lock().unwrap().clone();
    let licenses = acked_licenses.lock().unwrap().clone();
    assert!(
        licenses.len() >= 30,
        "the stream ran ({} licenses)",
        licenses.len()
    );

    let server = ServerProcess::start(dir.path(), &env).await;
    for (user, credential) in &users {
        let n = sqlx_scalar(db, &url, &format!("SELECT COUNT(*) FROM credentials c JOIN users u ON u.id = c.user_id WHERE u.id = '{user}' AND c.id = '{credential}'")).await;
        assert_eq!(n, 1, "acknowledged registration {user} survived");
    }
    for jti in &licenses {
        assert_eq!(
            sqlx_scalar(
                db,
                &url,
                &format!("SELECT COUNT(*) FROM licenses WHERE jti = '{jti}'")
            )
            .await,
            1,
            "license {jti} survived"
        );
    }
    let half = sqlx_scalar(db, &url, "SELECT COUNT(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM credentials c WHERE c.user_id = u.id)").await;
    assert_eq!(half, 0, "no user without a passkey");
    let orphan = sqlx_scalar(db, &url, "SELECT COUNT(*) FROM licenses l WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = l.user_id)").await;
    assert_eq!(orphan, 0);
    let audit_gaps = sqlx_scalar(db, &url, "SELECT COUNT(*) FROM licenses l WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.target = l.jti)").await;
    assert_eq!(
        audit_gaps, 0,
        "every license has its audit row (same transaction)"
    );
    assert_eq!(
        reqwest::get(server.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_registration_or_license_sqlite() {
    sigkill(Db::Sqlite).await
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_registration_or_license_postgres() {
    sigkill(Db::Postgres).await
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = reqwest::Client::new()
        .post(server.url("/api/register/start"))
        .header("origin", ORIGIN)
        .header("content-type", "application/json")
        .body(body)
        .send();
    let pending = tokio::spawn(request);
    tx.send(Ok(b"{\"username\":".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still serving the request in flight"
    );
    tx.send(Ok(b"\"late\"}".to_vec())).await.unwrap();
    drop(tx);
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    assert!(server.log_text().contains("shutting down"));
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn logs_are_json_with_request_ids_and_never_carry_secrets() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &[("LATCHKEY_LOG", "debug"), ("LATCHKEY_LOG_FORMAT", "json")],
    )
    .await;
    let client = crate::helpers::new_client();
    let base = server.url("");
    let options: Value = client
        .post(format!("{base}/api/register/start"))
        .json(&json!({"username": "ana"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut authenticator = SoftAuthenticator::new();
    let credential = authenticator
        .create(&options, ORIGIN, &Tweaks::default())
        .unwrap();
    let done = client
        .post(format!("{base}/api/register/finish"))
        .json(&credential)
        .send()
        .await
        .unwrap();
    let cookie = done.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(done.status(), StatusCode::CREATED);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["admin", "grant", "ana", "premium"])
        .env_clear()
        .env("LATCHKEY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(status.status.success());
    let device = DeviceKey::ed25519();
    let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    let minted: Value = client
        .post(format!("{base}/api/licenses"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let license = minted["license"].as_str().unwrap().to_owned();
    let premium_proof = device.proof(
        "GET",
        &format!("{ORIGIN}/api/premium/example"),
        Some(&license),
        None,
    );
    let premium = client
        .get(format!("{base}/api/premium/example"))
        .header("authorization", format!("DPoP {license}"))
        .header("dpop", &premium_proof)
        .send()
        .await
        .unwrap();
    assert_eq!(premium.status(), StatusCode::OK);
    client
        .post(format!("{base}/api/logout"))
        .send()
        .await
        .unwrap();
    let passkey_x = crate::helpers::unb64(credential["response"]["publicKey"].as_str().unwrap());
    let passkey_x = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &passkey_x[27..59],
    );
    let kek = std::fs::read_to_string(dir.path().join("kek")).unwrap();
    let signature = license.rsplit('.').next().unwrap().to_owned();

    let log = server.log_text();
    let mut lines = 0;
    let mut with_route = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        lines += 1;
        if value.to_string().contains("\"route\":\"/api/licenses\"")
            && value.to_string().contains("request_id")
        {
            with_route += 1;
        }
    }
    assert!(lines > 5, "{log}");
    assert!(
        with_route > 0,
        "request spans carry the matched route and a request id:\n{log}"
    );
    for (what, secret) in [
        ("license", license.as_str()),
        ("license signature", &signature),
        ("DPoP proof", &proof),
        ("session cookie", &cookie),
        ("passkey public key", &passkey_x),
        ("KEK", kek.trim()),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
}
