//! `latchkey keys rekey`: every signing key re-encrypted under a new KEK in one
//! transaction. At every moment either the old KEK opens all of them or the
//! new one does, never neither, including when the command dies midway.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use latchkey::state::keys::Kek;
use reqwest::StatusCode;

use crate::dpop::DeviceKey;
use crate::helpers::{spawn_app, spawn_app_at, Db, TestApp};

/// `(kid, sealed private half)` of every signing key, oldest first.
async fn sealed(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let sql = "SELECT kid, sealed_private FROM signing_keys ORDER BY generation";
    match app.db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

fn kek_at(path: &Path) -> Kek {
    Kek::read_file(path, "test").unwrap().expect("a KEK file")
}

/// How many of the keys `kek` opens.
fn opened(kek: &Kek, rows: &[(String, Vec<u8>)]) -> usize {
    rows.iter()
        .filter(|(kid, sealed)| kek.open(kid, sealed).is_ok())
        .count()
}

fn rekey_command(app: &TestApp, new: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(["keys", "rekey", "--new-kek-file"])
        .arg(new)
        .env_clear()
        .env("LATCHKEY_DATA_DIR", app.data_dir.path())
        .env("LATCHKEY_DATABASE_URL", &app.database_url);
    command
}

fn rekey(app: &TestApp, new: &Path) -> (bool, String) {
    let out = rekey_command(app, new).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Three keys (one retired) and a license signed by the first.
async fn app_with_keys(db: Db) -> (TestApp, String) {
    let app = spawn_app(db).await;
    let mut user = app.register("kim").await;
    app.cli(&["admin", "grant", "kim", "premium"])
        .await
        .unwrap();
    assert_eq!(app.login(&mut user).await.status, StatusCode::OK);
    let minted = app.mint(&app.client, &DeviceKey::es256()).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text);
    let license = minted.body["license"].as_str().unwrap().to_owned();
    app.cli(&["keys", "rotate", "--now"]).await.unwrap();
    let middle = sealed(&app).await[1].0.clone();
    app.cli(&["keys", "rotate", "--now"]).await.unwrap();
    app.cli(&["keys", "retire", &middle]).await.unwrap();
    assert_eq!(sealed(&app).await.len(), 3);
    (app, license)
}

async fn rekeyed_keys_open_only_with_the_new_kek(db: Db) {
    let (app, license) = app_with_keys(db).await;
    let before = sealed(&app).await;
    let old = kek_at(&app.data_dir.path().join("kek"));
    let spare = tempfile::TempDir::new().unwrap();
    let new_file = spare.path().join("kek.new");
    let (ok, out) = rekey(&app, &new_file);
    assert!(ok, "{out}");
    assert!(out.contains("re-encrypted 3 signing keys"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let after = sealed(&app).await;
    let new = kek_at(&new_file);
    assert_eq!(
        opened(&new, &after),
        3,
        "the new KEK opens every key, retired ones too"
    );
    assert_eq!(opened(&old, &after), 0, "the old KEK opens none");
    for ((kid, a), (kid2, b)) in before.iter().zip(&after) {
        assert_eq!(kid, kid2);
        assert_ne!(a, b);
        // The same private key inside.
        assert_eq!(*old.open(kid, a).unwrap(), *new.open(kid, b).unwrap());
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'kek.rotated'")
            .await,
        1
    );
    // Given the new KEK as the current one, the command refuses to "rotate" to it again.
    let again = rekey_command(&app, &new_file)
        .env("LATCHKEY_KEK_FILE", &new_file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("in use already"));

    // The service starts with the new KEK only, and licenses in the field still verify.
    let url = app.database_url.clone();
    let dir = app.data_dir.clone();
    drop(app);
    let new_path = new_file.display().to_string();
    let restarted = spawn_app_at(db, &url, dir.clone(), &["--kek-file", &new_path]).await;
    let jwks = restarted.get("/.well-known/jwks.json").await.text;
    let jwks = latchkey_core::JwkSet::from_json(jwks.as_bytes()).unwrap();
    let verifier = latchkey_core::Verifier {
        jwks,
        issuer: crate::helpers::ORIGIN.into(),
        audience: crate::helpers::ORIGIN.into(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verifier.verify(&license, now).unwrap();
    let mut user = restarted.register("after").await;
    assert_eq!(restarted.login(&mut user).await.status, StatusCode::OK);
    assert_eq!(
        restarted
            .mint(&restarted.client, &DeviceKey::es256())
            .await
            .status,
        StatusCode::CREATED
    );
    drop(restarted);
    let cli = <latchkey::config::Cli as clap::Parser>::try_parse_from([
        "latchkey",
        "--data-dir",
        &dir.path().display().to_string(),
        "--database-url",
        &url,
        "serve",
    ])
    .unwrap();
    let Some(latchkey::config::Command::Serve(args)) = cli.command else {
        panic!()
    };
    let err = latchkey::state::AppState::build(&cli.common, &args)
        .await
        .err()
        .expect("the old KEK no longer starts the service");
    assert!(
        format!("{err:#}").contains("cannot be decrypted"),
        "{err:#}"
    );
}

#[tokio::test]
async fn rekey_seals_every_key_under_the_new_kek_sqlite() {
    rekeyed_keys_open_only_with_the_new_kek(Db::Sqlite).await
}

#[tokio::test]
async fn rekey_seals_every_key_under_the_new_kek_postgres() {
    rekeyed_keys_open_only_with_the_new_kek(Db::Postgres).await
}

/// After a rekey that died: the old KEK opens every key, the new file opens
/// none, and running the command again with the same file finishes the job.
async fn old_kek_still_works_then_rerun_completes(
    app: &TestApp,
    before: &[(String, Vec<u8>)],
    new_file: &Path,
) {
    let after = sealed(app).await;
    assert_eq!(after, before, "nothing was committed");
    let old = kek_at(&app.data_dir.path().join("kek"));
    assert_eq!(opened(&old, &after), after.len());
    assert_eq!(opened(&kek_at(new_file), &after), 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'kek.rotated'")
            .await,
        0
    );
    let (ok, out) = rekey(app, new_file);
    assert!(ok, "{out}");
    let done = sealed(app).await;
    assert_eq!(opened(&kek_at(new_file), &done), done.len());
    assert_eq!(opened(&old, &done), 0);
}

#[tokio::test]
async fn a_rekey_that_fails_on_its_last_key_changes_nothing_sqlite() {
    let (app, _) = app_with_keys(Db::Sqlite).await;
    let before = sealed(&app).await;
    let last = before.last().unwrap().0.clone();
    let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
    // The first keys are re-sealed inside the transaction; the last one fails.
    sqlx::query(&format!(
        "CREATE TRIGGER midway BEFORE UPDATE OF sealed_private ON signing_keys \
         WHEN OLD.kid = '{last}' BEGIN SELECT RAISE(ABORT, 'failure midway'); END"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let spare = tempfile::TempDir::new().unwrap();
    let new_file = spare.path().join("kek.new");
    let (ok, out) = rekey(&app, &new_file);
    assert!(!ok && out.contains("failure midway"), "{out}");
    sqlx::query("DROP TRIGGER midway")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    old_kek_still_works_then_rerun_completes(&app, &before, &new_file).await;
}

#[tokio::test]
async fn a_rekey_killed_midway_changes_nothing_postgres() {
    let (app, _) = app_with_keys(Db::Postgres).await;
    let before = sealed(&app).await;
    let last = before.last().unwrap().0.clone();
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    // Hold the newest key's row: the command re-seals the older ones, then
    // waits on this one inside its transaction, where it is killed.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT kid FROM signing_keys WHERE kid = $1 FOR UPDATE")
        .bind(&last)
        .execute(&mut *holder)
        .await
        .unwrap();
    let spare = tempfile::TempDir::new().unwrap();
    let new_file = spare.path().join("kek.new");
    let mut child = rekey_command(&app, &new_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'UPDATE signing_keys%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "rekey ended before it reached the held key"
        );
        assert!(
            Instant::now() < deadline,
            "rekey never waited on the held key"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    holder.rollback().await.unwrap();
    // The server ends the dead client's transaction when it notices; wait for that.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND query LIKE 'UPDATE signing_keys%' AND state <> 'idle'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed transaction is still there"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.close().await;
    old_kek_still_works_then_rerun_completes(&app, &before, &new_file).await;
}
