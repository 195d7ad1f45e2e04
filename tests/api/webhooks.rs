//! Event webhooks out: a real receiver on loopback (tests/webhooks/receiver.py)
//! checks every signature with the `standardwebhooks` package from PyPI; the
//! tests check order, retries, 410, rollback, kill -9 and several instances.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{new_client, spawn_app_at, spawn_app_with, Db, TestApp};

/// The receiver, as a child process; killed when dropped.
pub struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new `whsec_` secret (32 random bytes).
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

impl Receiver {
    /// Starts the receiver for `(path, secret)` endpoints; `None` (and a note)
    /// when the Python environment of scripts/test is missing, except on CI.
    pub fn start(endpoints: &[(&str, &str)]) -> Option<Self> {
        let python = match std::env::var_os("LATCHKEY_PYTHON") {
            Some(p) => p,
            None if std::env::var_os("CI").is_some() => {
                panic!("LATCHKEY_PYTHON is not set: run scripts/test")
            }
            None => {
                eprintln!("LATCHKEY_PYTHON is not set (scripts/test sets it): not run");
                return None;
            }
        };
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(
                endpoints
                    .iter()
                    .map(|(path, secret)| format!("{path}={secret}")),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receiver said {line:?}"));
        Some(Self { child, port })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next answers of `path` (then 204 again).
    pub async fn plan(&self, path: &str, answers: &[u16]) {
        let reply = reqwest::Client::new()
            .post(self.url("/control"))
            .json(&json!({"path": path, "answers": answers}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    }

    pub async fn log(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(self.url("/log"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits (bounded) until the log satisfies `done`; returns it.
    pub async fn wait(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log().await;
            if done(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {log:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The event types the receiver accepted (2xx), in order.
pub fn delivered(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|r| {
            r["answered"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .map(|r| r["payload"]["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn all_valid_and_one_at_a_time(log: &[Value]) {
    for r in log {
        assert_eq!(
            r["valid"], true,
            "a signature failed the independent check: {r}"
        );
        assert_eq!(
            r["overlapping"], false,
            "two deliveries to one endpoint at once: {r}"
        );
    }
}

/// Reads `path` until `done` holds for its body (the sender records an answer just after the
/// receiver logs it), failing after 10 s.
async fn settled(
    app: &TestApp,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> crate::helpers::Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if done(&page.body) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never settled: {}",
            page.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn settings<'a>(url: &'a str, secret: &'a str, schedule: &'a str) -> Vec<&'a str> {
    vec![
        "--webhook-url",
        url,
        "--webhook-secret",
        secret,
        "--webhook-poll",
        "50ms",
        "--webhook-retry-schedule",
        schedule,
    ]
}

async fn add_passkey(app: &TestApp) -> String {
    let options = app.post("/api/me/passkeys/start", &json!({})).await;
    let mut second = crate::authenticator::SoftAuthenticator::new();
    let credential = second
        .create(&options.body, crate::helpers::ORIGIN, &Default::default())
        .unwrap();
    let added = app.post("/api/me/passkeys/finish", &credential).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    added.body["credential_id"].as_str().unwrap().to_owned()
}

macro_rules! on_both {
    ($(async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($db: Db) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { run(Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { run(Db::Postgres).await }
        }
    )*};
}

on_both! {
    async fn every_event_reaches_the_receiver_signed_and_in_order(db) {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else { return };
        let url = receiver.url("/hooks");
        let app = spawn_app_with(db, &settings(&url, &secret, "100ms")).await;
        let alice = app.register("alice").await;
        let second = add_passkey(&app).await;
        app.cli(&["admin", "grant", "alice", "premium"]).await.unwrap();
        let device = crate::dpop::DeviceKey::ed25519();
        let minted = app.mint(&app.client, &device).await;
        let license = minted.body["license"].as_str().unwrap();
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        app.cli(&["admin", "revoke-license", jti]).await.unwrap();
        app.cli(&["admin", "revoke-entitlement", "alice", "premium"]).await.unwrap();
        app.cli(&["admin", "revoke-passkey", &second]).await.unwrap();
        app.cli(&["admin", "disable", "alice"]).await.unwrap();
        app.cli(&["admin", "enable", "alice"]).await.unwrap();
        let expected = ["user.registered", "passkey.added", "entitlement.granted", "license.minted",
            "license.revoked", "entitlement.removed", "passkey.revoked", "user.disabled", "user.enabled"];
        let log = receiver.wait("nine events", |log| delivered(log).len() >= expected.len()).await;
        all_valid_and_one_at_a_time(&log);
        assert_eq!(delivered(&log), expected);
        for r in &log {
            assert_eq!(r["payload"]["data"]["user_id"], alice.user_id.as_str(), "{r}");
        }
        assert_eq!(log[2]["payload"]["data"]["entitlement"], "premium");
        assert_eq!(log[3]["payload"]["data"]["license_id"], jti);
        assert_eq!(log[6]["payload"]["data"]["credential_id"], second.as_str());
        let ids: std::collections::BTreeSet<_> = log.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), log.len(), "one webhook-id per message");
        // The delivery log says the same.
        let page = app.get("/api/admin/webhooks").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "admins only");
    }

    async fn a_failing_receiver_gets_retries_and_nothing_overtakes_the_failed_message(db) {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else { return };
        let url = receiver.url("/hooks");
        let app = spawn_app_with(db, &settings(&url, &secret, "200ms,200ms")).await;
        let mut root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        app.login(&mut root).await;
        receiver.wait("the registration", |log| delivered(log).len() == 1).await;
        receiver.plan("/hooks", &[500, 503]).await;
        app.cli(&["admin", "grant", "root", "premium"]).await.unwrap();
        app.cli(&["admin", "grant", "root", "pro"]).await.unwrap();
        let log = receiver.wait("both grants", |log| delivered(log).len() == 3).await;
        all_valid_and_one_at_a_time(&log);
        let answers: Vec<u64> = log.iter().map(|r| r["answered"].as_u64().unwrap()).collect();
        assert_eq!(answers, [204, 500, 503, 204, 204]);
        assert_eq!(log[1]["id"], log[3]["id"], "a retry is the same message");
        assert_eq!(log[1]["payload"], log[3]["payload"]);
        assert_eq!(log[4]["payload"]["data"]["entitlement"], "pro", "the newer event waited for the older");
        // The receiver has answered; the sender records it a moment later.
        let page = settled(&app, "/api/admin/webhooks?status=delivered", |body| {
            body["deliveries"].as_array().is_some_and(|rows| rows.len() == 3)
        })
        .await;
        let first_grant = &page.body["deliveries"][1];
        assert_eq!(first_grant["type"], "entitlement.granted");
        assert_eq!(first_grant["attempts"], 3);
        assert_eq!(first_grant["status"], "delivered");

        // Past the schedule the message is given up, logged as failed, and the next goes.
        receiver.plan("/hooks", &[500, 500, 500]).await;
        app.cli(&["admin", "revoke-entitlement", "root", "pro"]).await.unwrap();
        app.cli(&["admin", "revoke-entitlement", "root", "premium"]).await.unwrap();
        let log = receiver.wait("the second removal", |log| delivered(log).len() == 4).await;
        assert_eq!(log.len(), 9);
        assert_eq!(log[8]["payload"]["data"]["entitlement"], "premium");
        let failed = settled(&app, "/api/admin/webhooks?status=failed", |body| {
            body["deliveries"].as_array().is_some_and(|rows| rows.len() == 1)
        })
        .await;
        let row = &failed.body["deliveries"][0];
        assert_eq!(row["type"], "entitlement.removed");
        assert_eq!(row["attempts"], 3);
        assert_eq!(row["last_status"], 500);
        assert!(row["last_error"].is_string());
        assert_eq!(failed.body["endpoints"][0]["failed"], 1);
    }

    async fn a_410_disables_the_endpoint_until_an_admin_enables_it(db) {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else { return };
        let url = receiver.url("/hooks");
        let app = spawn_app_with(db, &settings(&url, &secret, "100ms")).await;
        receiver.plan("/hooks", &[410]).await;
        let mut root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        app.login(&mut root).await;
        receiver.wait("the 410", |log| log.len() == 1).await;
        let endpoint = latchkey::webhooks::endpoint_id(&url);
        let disabled = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let page = app.get("/api/admin/webhooks").await;
                if page.body["endpoints"][0]["disabled_at"].is_string() { return page; }
                assert!(Instant::now() < deadline, "{}", page.text);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }.await;
        assert_eq!(disabled.body["endpoints"][0]["id"], endpoint.as_str());
        app.cli(&["admin", "grant", "root", "premium"]).await.unwrap();
        // Several polls pass; nothing is sent to a disabled endpoint.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(receiver.log().await.len(), 1);
        let (_, key) = crate::apikeys::create_key(&app, "ops", &["audit:read"]).await;
        let by_key = crate::apikeys::with_key(&app, &key, Method::POST, &format!("/api/admin/webhooks/{endpoint}/enable"), None).await;
        assert_eq!(by_key.status, StatusCode::FORBIDDEN);
        let enabled = app.send(&app.client, Method::POST, &format!("/api/admin/webhooks/{endpoint}/enable"), None, &[]).await;
        assert_eq!(enabled.status, StatusCode::NO_CONTENT, "{}", enabled.text);
        let log = receiver.wait("the backlog", |log| delivered(log).len() == 2).await;
        all_valid_and_one_at_a_time(&log);
        assert_eq!(delivered(&log), ["user.registered", "entitlement.granted"]);
    }

    async fn the_delivery_log_keeps_finished_messages_for_its_retention_and_pending_ones_always(db) {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else { return };
        let url = receiver.url("/hooks");
        let args = settings(&url, &secret, "1h");
        let app = spawn_app_with(db, &args).await;
        let mut root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        app.login(&mut root).await;
        receiver.wait("the registration", |log| delivered(log).len() == 1).await;
        // The next message fails once and then waits an hour for its retry: pending.
        receiver.plan("/hooks", &[500]).await;
        app.cli(&["admin", "grant", "root", "premium"]).await.unwrap();
        receiver.wait("the failed grant", |log| log.len() == 2).await;
        settled(&app, "/api/admin/webhooks?status=pending", |body| {
            body["deliveries"][0]["attempts"] == 1
        })
        .await;
        // Both events are now 40 days old, past the default 30-day retention.
        run_sql(db, &app.database_url, "UPDATE webhook_outbox SET at = at - 3456000").await;
        // What the upkeep task runs daily, with the configured retention (default 30 days).
        let retention = app.state.settings.business.log_retention_secs;
        assert_eq!(retention, 30 * 86_400);
        let before = latchkey::store::now() - retention;
        assert_eq!(app.state.store.prune_webhook_log(before).await.unwrap(), 1);
        let page = app.get("/api/admin/webhooks").await;
        assert_eq!(page.body["deliveries"].as_array().map(Vec::len), Some(1), "{}", page.text);
        let kept = &page.body["deliveries"][0];
        assert_eq!(kept["status"], "pending", "{}", page.text);
        assert_eq!(kept["type"], "entitlement.granted");
    }

    async fn a_rolled_back_change_sends_nothing(db) {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else { return };
        let url = receiver.url("/hooks");
        let app = spawn_app_with(db, &settings(&url, &secret, "100ms")).await;
        let root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        receiver.wait("the registration", |log| delivered(log).len() == 1).await;
        // Refused inside its transaction (the last admin): no audit row, no event.
        assert!(app.cli(&["admin", "disable", "root"]).await.is_err());
        // A change whose transaction rolls back after its audit row was written.
        let insert = format!("INSERT INTO audit_log (at, event, target_user_id) VALUES (1, 'user.disabled', '{}')", root.user_id);
        match app.db {
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(&insert).execute(&mut *tx).await.unwrap();
                let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox").fetch_one(&mut *tx).await.unwrap();
                assert_eq!(queued, 2, "inside the transaction the event is queued");
                tx.rollback().await.unwrap();
            }
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(&insert).execute(&mut *tx).await.unwrap();
                let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox").fetch_one(&mut *tx).await.unwrap();
                assert_eq!(queued, 2, "inside the transaction the event is queued");
                tx.rollback().await.unwrap();
            }
        }
        app.cli(&["admin", "grant", "root", "premium"]).await.unwrap();
        let log = receiver.wait("the grant", |log| delivered(log).len() == 2).await;
        assert_eq!(delivered(&log), ["user.registered", "entitlement.granted"]);
        assert_eq!(app.count("webhook_outbox").await, 2);
    }
}

/// Two instances on one PostgreSQL share the outbox: each message is sent
/// once, in order, and never two at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_send_each_message_once_in_order() {
    let secret = new_secret();
    let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else {
        return;
    };
    let url = receiver.url("/hooks");
    let args = settings(&url, &secret, "100ms");
    let first = spawn_app_with(Db::Postgres, &args).await;
    let second = spawn_app_at(
        Db::Postgres,
        &first.database_url,
        first.data_dir.clone(),
        &args,
    )
    .await;
    for i in 0..6 {
        first
            .register_with(&new_client(), &format!("user{i}"), Default::default())
            .await;
        second
            .register_with(&new_client(), &format!("other{i}"), Default::default())
            .await;
    }
    let log = receiver
        .wait("twelve registrations", |log| delivered(log).len() >= 12)
        .await;
    all_valid_and_one_at_a_time(&log);
    assert_eq!(log.len(), 12, "no message was sent twice: {log:#?}");
    let mut ids: Vec<i64> = log
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .unwrap()
                .split('_')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let sent = ids.clone();
    ids.sort_unstable();
    assert_eq!(sent, ids, "in the order the changes committed");
}

/// kill -9 loses nothing: events committed while the receiver failed, and
/// while the service was down (through the CLI), all arrive after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_across_a_kill_9() {
    use crate::process::ServerProcess;
    for db in [Db::Sqlite, Db::Postgres] {
        let secret = new_secret();
        let Some(receiver) = Receiver::start(&[("/hooks", &secret)]) else {
            return;
        };
        let url = receiver.url("/hooks");
        let dir = tempfile::TempDir::new().unwrap();
        let database_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("latchkey.db").display()),
            Db::Postgres => crate::helpers::create_pg_database().await,
        };
        let schedule = vec!["100ms"; 500].join(",");
        let env = [
            ("LATCHKEY_DATABASE_URL", database_url.as_str()),
            ("LATCHKEY_WEBHOOK_URL", url.as_str()),
            ("LATCHKEY_WEBHOOK_SECRET", secret.as_str()),
            ("LATCHKEY_WEBHOOK_POLL", "50ms"),
            ("LATCHKEY_WEBHOOK_RETRY_SCHEDULE", schedule.as_str()),
            // A killed instance's lease on the endpoint lapses after the timeout and 5 s.
            ("LATCHKEY_WEBHOOK_TIMEOUT", "1s"),
        ];
        let mut server = ServerProcess::start(dir.path(), &env).await;
        receiver.plan("/hooks", &[503; 1000]).await;
        let cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
                .args(["--database-url", &database_url, "--data-dir"])
                .arg(dir.path())
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // A user written straight to the database (no event); registering needs a ceremony.
        let seed = "INSERT INTO users (id, username, username_key, display_name, role, created_at) VALUES ('u1', 'bob', 'bob', 'bob', 'user', 1)";
        run_sql(db, &database_url, seed).await;
        cli(&["admin", "grant", "bob", "premium"]);
        receiver
            .wait("the grant failing", |log| {
                log.iter()
                    .any(|r| r["payload"]["type"] == "entitlement.granted")
            })
            .await;
        server.kill9();
        cli(&["admin", "grant", "bob", "pro"]);
        cli(&["admin", "disable", "bob"]);
        receiver.plan("/hooks", &[]).await;
        let _again = ServerProcess::start(dir.path(), &env).await;
        let log = receiver
            .wait("every event", |log| delivered(log).len() == 3)
            .await;
        all_valid_and_one_at_a_time(&log);
        assert_eq!(
            delivered(&log),
            [
                "entitlement.granted",
                "entitlement.granted",
                "user.disabled"
            ]
        );
        let last_two: Vec<&str> = log
            .iter()
            .rev()
            .take(2)
            .map(|r| r["payload"]["data"]["entitlement"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(last_two, ["-", "pro"]);
    }
}

async fn run_sql(db: Db, url: &str, sql: &str) {
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
}
