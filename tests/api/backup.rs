//! Backups while the service writes: a copy taken during a stream of mints and
//! revocations, restored into a new place, serves every license acknowledged
//! before the copy began and keeps every revocation made before it. SQLite
//! with `latchkey backup` / `latchkey restore`; PostgreSQL with the README's
//! `pg_dump` / `pg_restore` recipe.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use latchkey_core::status_list::{check, Status};
use reqwest::StatusCode;

use crate::dpop::DeviceKey;
use crate::helpers::{
    create_pg_database, spawn_app_at, spawn_app_with, Account, Db, TestApp, ORIGIN,
};
use crate::process::ServerProcess;

/// One acknowledged operation of the stream.
#[derive(Clone)]
struct Minted {
    jti: String,
    token: String,
    started: Instant,
    acked: Instant,
}

#[derive(Clone)]
struct Revoked {
    jti: String,
    started: Instant,
    acked: Instant,
}

#[derive(Default)]
struct Log {
    minted: Vec<Minted>,
    revoked: Vec<Revoked>,
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&crate::helpers::unb64(payload)).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Mints licenses and revokes every third one, as fast as it can, until told to stop.
fn start_stream(
    app: Arc<TestApp>,
    mut account: Account,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let device = DeviceKey::es256();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let reply = app.mint(&app.client, &device).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            let token = reply.body["license"].as_str().unwrap().to_owned();
            let minted = Minted {
                jti: jti_of(&token),
                token,
                started,
                acked: Instant::now(),
            };
            log.lock().unwrap().minted.push(minted.clone());
            i += 1;
            if i.is_multiple_of(3) {
                let started = Instant::now();
                app.cli(&["admin", "revoke-license", &minted.jti])
                    .await
                    .unwrap();
                log.lock().unwrap().revoked.push(Revoked {
                    jti: minted.jti,
                    started,
                    acked: Instant::now(),
                });
                // Revoking a license ends the session it was minted under.
                assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
            }
        }
    })
}

/// Waits until the stream has minted `at_least` licenses (failing if it stopped).
async fn wait_for_mints(log: &Mutex<Log>, stream: &tokio::task::JoinHandle<()>, at_least: usize) {
    while log.lock().unwrap().minted.len() < at_least {
        assert!(!stream.is_finished(), "the stream of mints stopped early");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Runs the stream, calls `backup` in the middle of it, and returns the log
/// with the instants the backup began and ended.
async fn backup_during_stream(
    (app, account): (Arc<TestApp>, Account),
    backup: impl FnOnce() + Send + 'static,
) -> (Log, Instant, Instant) {
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let stream = start_stream(app, account, log.clone(), stop.clone());
    wait_for_mints(&log, &stream, 12).await;
    let began = Instant::now();
    tokio::task::spawn_blocking(backup).await.unwrap();
    let ended = Instant::now();
    let after = log.lock().unwrap().minted.len() + 6;
    wait_for_mints(&log, &stream, after).await;
    stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    (log, began, ended)
}

/// The restored service: every license acknowledged before `began` verifies
/// against its keys, and its status is exactly what was acknowledged before
/// `began` (or started after `ended`); nothing begun after `ended` is there.
async fn check_restored(restored: &TestApp, log: &Log, began: Instant, ended: Instant) {
    let jwks = restored.get("/.well-known/jwks.json").await;
    let verifier = latchkey_core::Verifier {
        jwks: latchkey_core::JwkSet::from_json(jwks.text.as_bytes()).unwrap(),
        issuer: ORIGIN.into(),
        audience: ORIGIN.into(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut checked = 0;
    for minted in log.minted.iter().filter(|m| m.acked < began) {
        let claims = verifier
            .verify(&minted.token, now)
            .expect("a license acknowledged before the backup verifies");
        let status_ref = claims.status.as_ref().unwrap().status_list.clone();
        let path = status_ref.uri.strip_prefix(ORIGIN).unwrap();
        let list = restored.get(path).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let status = check(&status_ref, list.text.trim(), &verifier.jwks, now);
        let revocation = log.revoked.iter().find(|r| r.jti == minted.jti);
        match revocation {
            Some(r) if r.acked < began => {
                assert_eq!(status, Status::Revoked, "revoked before the backup")
            }
            Some(r) if r.started > ended => {
                assert_eq!(status, Status::Valid, "revoked after the backup")
            }
            None => assert_eq!(status, Status::Valid),
            Some(_) => assert!(matches!(status, Status::Valid | Status::Revoked)),
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked} licenses checked");
    for minted in log.minted.iter().filter(|m| m.started > ended) {
        let sql = format!("SELECT COUNT(*) FROM licenses WHERE jti = '{}'", minted.jti);
        assert_eq!(
            restored.scalar(&sql).await,
            0,
            "minted after the backup ended"
        );
    }
    // A consistent snapshot: every license and revocation with its audit row.
    assert_eq!(
        restored
            .scalar("SELECT COUNT(*) FROM licenses l WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.target = l.jti AND a.event = 'license.minted')")
            .await,
        0
    );
    assert_eq!(
        restored
            .scalar("SELECT COUNT(*) FROM licenses l WHERE l.revoked_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.target = l.jti AND a.event = 'license.revoked')")
            .await,
        0
    );
    // Online checks go to the restored database too, and it still signs.
    let kept = log
        .minted
        .iter()
        .find(|m| m.acked < began && !log.revoked.iter().any(|r| r.jti == m.jti))
        .unwrap();
    let gone = log
        .minted
        .iter()
        .find(|m| {
            log.revoked
                .iter()
                .any(|r| r.jti == m.jti && r.acked < began)
        })
        .unwrap();
    let mut user = restored.register("after-restore").await;
    assert_eq!(restored.login(&mut user).await.status, StatusCode::OK);
    assert_eq!(
        restored
            .mint(&restored.client, &DeviceKey::es256())
            .await
            .status,
        StatusCode::CREATED
    );
    let sql = format!(
        "SELECT COUNT(*) FROM licenses WHERE jti = '{}' AND revoked_at IS NULL",
        kept.jti
    );
    assert_eq!(restored.scalar(&sql).await, 1);
    let sql = format!(
        "SELECT COUNT(*) FROM licenses WHERE jti = '{}' AND revoked_at IS NOT NULL",
        gone.jti
    );
    assert_eq!(restored.scalar(&sql).await, 1);
}

async fn streaming_app(db: Db) -> (Arc<TestApp>, Account) {
    let app = spawn_app_with(
        db,
        &["--rate-limit-licenses", "0", "--rate-limit-ceremonies", "0"],
    )
    .await;
    let account = app.register("stream").await;
    app.cli(&["admin", "grant", "stream", "premium"])
        .await
        .unwrap();
    (Arc::new(app), account)
}

fn latchkey(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn data_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![("LATCHKEY_DATA_DIR", dir.display().to_string())]
}

fn run(args: &[&str], env: &[(&'static str, String)]) -> (bool, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    latchkey(args, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_while_licenses_are_minted_and_revoked_restores_to_a_working_service()
{
    let (app, account) = streaming_app(Db::Sqlite).await;
    let live = app.data_dir.path().to_owned();
    let spare = tempfile::TempDir::new().unwrap();
    let file = spare.path().join("latchkey-backup.db");
    let backup_file = file.clone();
    let (log, began, ended) = backup_during_stream((app.clone(), account), move || {
        let (ok, out) = run(&["backup", backup_file.to_str().unwrap()], &data_env(&live));
        assert!(ok, "{out}");
        assert!(out.contains("the KEK is not in it"), "{out}");
    })
    .await;
    assert!(
        log.revoked.iter().any(|r| r.acked < began),
        "some revocations came before the backup"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds sealed keys and sessions");
    }

    // Restore into a new directory, then put the KEK (kept apart) next to it.
    let new_dir = Arc::new(tempfile::TempDir::new().unwrap());
    let target = new_dir.path();
    let (ok, out) = run(&["restore", file.to_str().unwrap()], &data_env(target));
    assert!(ok, "{out}");
    assert!(
        out.contains("no KEK"),
        "the missing KEK is pointed out: {out}"
    );
    std::fs::copy(app.data_dir.path().join("kek"), target.join("kek")).unwrap();
    let url = format!("sqlite://{}", target.join("latchkey.db").display());
    let restored = spawn_app_at(Db::Sqlite, &url, new_dir.clone(), &[]).await;
    check_restored(&restored, &log, began, ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_recipe_in_the_readme_restores_to_a_working_service() {
    let (app, account) = streaming_app(Db::Postgres).await;
    let source = app.database_url.clone();
    let spare = tempfile::TempDir::new().unwrap();
    let file = spare.path().join("latchkey.dump");
    let dump = file.clone();
    let (log, began, ended) = backup_during_stream((app.clone(), account), move || {
        // README: pg_dump --format=custom --file=latchkey.dump "$LATCHKEY_DATABASE_URL"
        let out = Command::new("pg_dump")
            .args([
                "--format=custom",
                &format!("--file={}", dump.display()),
                &source,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    // README: createdb, then pg_restore --no-owner --dbname="$NEW_URL" latchkey.dump
    let target = create_pg_database().await;
    let out = Command::new("pg_restore")
        .args([
            "--no-owner",
            &format!("--dbname={target}"),
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = spawn_app_at(Db::Postgres, &target, app.data_dir.clone(), &[]).await;
    check_restored(&restored, &log, began, ended).await;
}

#[tokio::test]
async fn restore_refuses_to_overwrite_a_database_in_use_a_foreign_kek_or_a_file_that_is_no_backup()
{
    let dir = tempfile::TempDir::new().unwrap();
    let env = data_env(dir.path());
    let (ok, out) = run(&["keys", "list"], &env);
    assert!(ok, "{out}");
    let backups = tempfile::TempDir::new().unwrap();
    let file = backups.path().join("b.db");
    let file_text = file.to_str().unwrap();
    assert!(run(&["backup", file_text], &env).0);
    // Backups never overwrite.
    let before = std::fs::read(&file).unwrap();
    let (ok, out) = run(&["backup", file_text], &env);
    assert!(!ok && out.contains("already exists"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Without --force an existing database stays.
    let db = dir.path().join("latchkey.db");
    let live = std::fs::read(&db).unwrap();
    let (ok, out) = run(&["restore", file_text], &env);
    assert!(!ok && out.contains("--force"), "{out}");
    assert_eq!(std::fs::read(&db).unwrap(), live);

    // Not while a service has it open, even with --force.
    let server = ServerProcess::start(dir.path(), &[]).await;
    let (ok, out) = run(&["restore", "--force", file_text], &env);
    assert!(!ok && out.contains("stop the service"), "{out}");
    drop(server);

    // Not with a KEK that does not open the backup's keys.
    let other = tempfile::TempDir::new().unwrap();
    std::fs::write(
        other.path().join("kek"),
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    )
    .unwrap();
    let (ok, out) = run(&["restore", file_text], &data_env(other.path()));
    assert!(
        !ok && out.contains("does not open the signing keys"),
        "{out}"
    );
    assert!(!other.path().join("latchkey.db").exists());

    // Not a file that is not a Latchkey database. (The service wrote while it
    // ran, and its checkpoints copy that into the file: the file as it is now
    // is what must stay.)
    let live = std::fs::read(&db).unwrap();
    let junk = backups.path().join("junk.db");
    std::fs::write(&junk, b"hello").unwrap();
    let (ok, out) = run(&["restore", "--force", junk.to_str().unwrap()], &env);
    assert!(!ok && out.contains("not a SQLite database"), "{out}");
    assert_eq!(std::fs::read(&db).unwrap(), live);

    // With --force, on a stopped service, it replaces the database.
    let (ok, out) = run(&["restore", "--force", file_text], &env);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // PostgreSQL has its own tools.
    let pg = [(
        "LATCHKEY_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/x".to_owned(),
    )];
    let (ok, out) = run(&["backup", file_text], &pg);
    assert!(!ok && out.contains("pg_dump"), "{out}");
    let (ok, out) = run(&["restore", file_text], &pg);
    assert!(!ok && out.contains("pg_restore"), "{out}");
}
