//! Start-up checks, on the real binary: every wrong setting stops start-up
//! with exit status non-zero and one line naming the setting, having written
//! nothing (no data directory, no database, no key file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::create_pg_database;
use crate::process::{free_port, ServerProcess};

/// Runs `latchkey ARGS` with only `env` set; returns (success, stderr).
fn latchkey(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` with a digest of its bytes: "written nothing" means this is unchanged.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::Digest;
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), "directory".into());
                stack.push(path);
            } else {
                let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
                files.insert(path.clone(), format!("{digest:x}"));
            }
        }
    }
    files
}

/// Asserts that `latchkey serve` with `env` fails with one stderr line naming
/// `setting`, and that the (not yet existing) data directory was not made.
fn refused(env: &[(&str, &str)], setting: &str) {
    refused_with(&["serve"], env, setting);
}

fn refused_with(args: &[&str], env: &[(&str, &str)], setting: &str) {
    let root = tempfile::TempDir::new().unwrap();
    let data = root.path().join("data");
    let data_text = data.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec![
        ("LATCHKEY_DATA_DIR", data_text.as_str()),
        ("LATCHKEY_LISTEN", listen.as_str()),
        ("LATCHKEY_METRICS_LISTEN", "off"),
    ];
    all.extend_from_slice(env);
    let (ok, stderr) = latchkey(args, &all);
    assert!(!ok, "{env:?} should stop start-up");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{env:?}: one line, got:\n{stderr}");
    assert!(
        line.contains(setting),
        "{env:?}: {setting} not named in {line:?}"
    );
    assert!(
        snapshot(root.path()).is_empty(),
        "{env:?}: something was written: {:?}",
        snapshot(root.path()).keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_static_directory_stops_start_up() {
    refused(
        &[("LATCHKEY_STATIC_DIR", "/nonexistent")],
        "LATCHKEY_STATIC_DIR",
    );
    let empty = tempfile::TempDir::new().unwrap();
    let empty = empty.path().display().to_string();
    refused(&[("LATCHKEY_STATIC_DIR", &empty)], "LATCHKEY_STATIC_DIR");
}

#[test]
fn zero_negative_and_too_fine_durations_stop_start_up() {
    for name in [
        "LATCHKEY_LICENSE_TTL",
        "LATCHKEY_SESSION_TTL",
        "LATCHKEY_CEREMONY_TTL",
        "LATCHKEY_CACHE_REFRESH",
        "LATCHKEY_STATUS_LIST_TTL",
        "LATCHKEY_STATUS_LIST_VALIDITY",
        "LATCHKEY_DPOP_WINDOW",
        "LATCHKEY_REQUEST_TIMEOUT",
    ] {
        refused(&[(name, "0s")], name);
        refused(&[(name, "-5m")], name);
    }
    refused(&[("LATCHKEY_DPOP_WINDOW", "500ms")], "LATCHKEY_DPOP_WINDOW");
    refused(
        &[
            ("LATCHKEY_STATUS_LIST_TTL", "10m"),
            ("LATCHKEY_STATUS_LIST_VALIDITY", "5m"),
        ],
        "LATCHKEY_STATUS_LIST_VALIDITY",
    );
    // The same as a flag, and with no command at all (serve from the environment).
    refused_with(
        &["serve", "--license-ttl", "0s"],
        &[],
        "LATCHKEY_LICENSE_TTL",
    );
    refused_with(
        &[],
        &[("LATCHKEY_LICENSE_TTL", "0s")],
        "LATCHKEY_LICENSE_TTL",
    );
    refused_with(
        &["admin", "grant", "x", "y"],
        &[("LATCHKEY_LICENSE_TTL", "0")],
        "LATCHKEY_LICENSE_TTL",
    );
}

#[test]
fn other_wrong_values_stop_start_up_naming_the_setting() {
    for (name, value) in [
        ("LATCHKEY_BASE_PATH", "auth/"),
        ("LATCHKEY_BASE_PATH", "/a/../b"),
        ("LATCHKEY_BODY_LIMIT", "10"),
        ("LATCHKEY_DB_MAX_CONNECTIONS", "0"),
        ("LATCHKEY_MAX_CONNECTIONS", "0"),
        ("LATCHKEY_HEADER_READ_TIMEOUT", "0s"),
        ("LATCHKEY_AUDIT_RETENTION", "1d"),
        ("LATCHKEY_BILLING_GRACE", "0s"),
        ("LATCHKEY_WEBHOOK_POLL", "0s"),
        ("LATCHKEY_WEBHOOK_TIMEOUT", "-1s"),
        ("LATCHKEY_WEBHOOK_RETRY_SCHEDULE", "5s,0s"),
        ("LATCHKEY_WEBHOOK_URL", "https://hooks.example.com/latchkey"),
        ("LATCHKEY_STRIPE_ENTITLEMENTS", "price_1=Not A Name"),
        ("LATCHKEY_MAX_PENDING_CEREMONIES", "0"),
        ("LATCHKEY_METRICS_LISTEN", "nowhere"),
        ("LATCHKEY_LOG", "a=b=c"),
        ("LATCHKEY_LOG_FORMAT", "xml"),
        ("LATCHKEY_DPOP_NONCE", "maybe"),
        ("LATCHKEY_KEK", "too-short"),
        ("LATCHKEY_ORIGIN", "ftp://example.com"),
        ("LATCHKEY_LICENSE_AUDIENCE", "https://app.example.com/"),
        ("LATCHKEY_LICENSE_AUDIENCE", "my app"),
        ("LATCHKEY_LISTEN", "localhost"),
    ] {
        refused(&[(name, value)], name);
    }
}

#[test]
fn a_malformed_kek_file_or_a_port_in_use_stops_start_up_before_anything_is_written() {
    let dir = tempfile::TempDir::new().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "not a key").unwrap();
    let kek_text = kek.display().to_string();
    refused(&[("LATCHKEY_KEK_FILE", &kek_text)], "LATCHKEY_KEK_FILE");
    assert_eq!(std::fs::read_to_string(&kek).unwrap(), "not a key");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refused(&[("LATCHKEY_LISTEN", &addr)], "LATCHKEY_LISTEN");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = metrics.local_addr().unwrap().to_string();
    refused(
        &[("LATCHKEY_METRICS_LISTEN", &metrics_addr)],
        "LATCHKEY_METRICS_LISTEN",
    );
}

/// A data directory whose database holds a signing key, and whose `kek` file
/// has been lost.
fn data_dir_without_its_kek(database_url: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().display().to_string();
    let mut env = vec![("LATCHKEY_DATA_DIR", data.as_str())];
    if let Some(url) = database_url {
        env.push(("LATCHKEY_DATABASE_URL", url));
    }
    // `keys list` makes the KEK and the first signing key on a fresh database.
    let (ok, stderr) = latchkey(&["keys", "list"], &env);
    assert!(ok, "{stderr}");
    std::fs::remove_file(dir.path().join("kek")).unwrap();
    dir
}

fn refuses_without_its_kek(database_url: Option<&str>) {
    let dir = data_dir_without_its_kek(database_url);
    let before = snapshot(dir.path());
    let data = dir.path().display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("LATCHKEY_DATA_DIR", data.as_str()),
        ("LATCHKEY_LISTEN", listen.as_str()),
        ("LATCHKEY_METRICS_LISTEN", "off"),
    ];
    if let Some(url) = database_url {
        env.push(("LATCHKEY_DATABASE_URL", url));
    }
    for args in [&["serve"][..], &["keys", "list"]] {
        let (ok, stderr) = latchkey(args, &env);
        assert!(!ok, "{args:?} must refuse");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "{stderr}");
        assert!(
            line.contains("LATCHKEY_KEK_FILE") && line.contains("is missing"),
            "{line}"
        );
        assert_eq!(snapshot(dir.path()), before, "{args:?} wrote something");
    }
}

#[test]
fn a_missing_kek_next_to_sealed_keys_is_refused_and_no_new_kek_is_written_sqlite() {
    refuses_without_its_kek(None);
}

#[tokio::test]
async fn a_missing_kek_next_to_sealed_keys_is_refused_and_no_new_kek_is_written_postgres() {
    let url = create_pg_database().await;
    let count = |sql: &'static str| {
        let url = url.clone();
        async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    };
    let u = url.clone();
    tokio::task::spawn_blocking(move || refuses_without_its_kek(Some(&u)))
        .await
        .unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM signing_keys").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM audit_log").await, 0);
}

#[tokio::test]
async fn an_origin_that_disagrees_with_a_loopback_listen_port_is_warned_about_and_named_in_the_403()
{
    let dir = tempfile::TempDir::new().unwrap();
    let server =
        ServerProcess::start(dir.path(), &[("LATCHKEY_ORIGIN", "http://localhost:8080")]).await;
    let log = server.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("LATCHKEY_LISTEN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("LATCHKEY_ORIGIN is http://localhost:8080")
            && warnings[0].contains(&format!("127.0.0.1:{}", server.port)),
        "{}",
        warnings[0]
    );
    // What a browser opened at the listen address would send is refused, and
    // the problem names the origin the service expects.
    let reply = reqwest::Client::new()
        .post(server.url("/api/login/start"))
        .header("origin", format!("http://localhost:{}", server.port))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["type"], "urn:latchkey:problem:cross-origin-request");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("http://localhost:8080"),
        "{body}"
    );
}
