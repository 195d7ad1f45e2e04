//! API keys: scopes decide exactly which admin routes a key reaches, keys and
//! cookies never stand in for each other, every use is audited with the key.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Account, Db, Reply, TestApp};
use crate::on_both_databases;

/// Registers `root` on `app.client`, makes them an admin and signs them in again.
pub async fn admin(app: &TestApp) -> Account {
    let mut root = app.register("root").await;
    app.cli(&["admin", "promote", "root"]).await.unwrap();
    let signed_in = app.login(&mut root).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    root
}

/// Makes a key through the admin API (the admin is signed in on `app.client`).
pub async fn create_key(app: &TestApp, name: &str, scopes: &[&str]) -> (String, String) {
    let reply = app
        .post(
            "/api/admin/apikeys",
            &json!({"name": name, "scopes": scopes}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let secret = reply.body["secret"].as_str().unwrap().to_owned();
    let id = reply.body["key"]["id"].as_str().unwrap().to_owned();
    (id, secret)
}

/// A call with a key only: no cookie jar, no Origin header.
pub async fn with_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let bare = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    app.send(&bare, method, path, body, &[("authorization", &auth)])
        .await
}

on_both_databases! {
    async fn a_key_reaches_exactly_the_routes_its_scopes_allow(app) {
        let root = admin(&app).await;
        let alice = app.register_with(&crate::helpers::new_client(), "alice", Default::default()).await;
        let (_, key) = create_key(&app, "reader", &["users:read"]).await;
        let users = with_key(&app, &key, Method::GET, "/api/admin/users", None).await;
        assert_eq!(users.status, StatusCode::OK, "{}", users.text);
        assert_eq!(users.body["users"].as_array().unwrap().len(), 2);
        let one = with_key(&app, &key, Method::GET, &format!("/api/admin/users/{}", alice.user_id), None).await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(with_key(&app, &key, Method::GET, "/api/admin/overview", None).await.status, StatusCode::OK);

        let before = app.count("audit_log").await;
        let grant = with_key(&app, &key, Method::POST, &format!("/api/admin/users/{}/entitlements", alice.user_id),
            Some(&json!({"name": "premium"}))).await;
        assert_eq!(grant.status, StatusCode::FORBIDDEN);
        assert_eq!(grant.problem(), "missing-scope");
        assert!(grant.body["detail"].as_str().unwrap().contains("entitlements:write"), "{}", grant.text);
        for (method, path, scope) in [
            (Method::GET, "/api/admin/audit".to_owned(), "audit:read"),
            (Method::POST, format!("/api/admin/users/{}/disable", alice.user_id), "users:write"),
            (Method::POST, "/api/admin/licenses/x/revoke".to_owned(), "licenses:revoke"),
            (Method::DELETE, format!("/api/admin/users/{}/entitlements/premium", alice.user_id), "entitlements:write"),
        ] {
            let reply = with_key(&app, &key, method.clone(), &path, None).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert!(reply.body["detail"].as_str().unwrap().contains(scope), "{}", reply.text);
        }
        // Roles, passkeys and keys themselves are for people signed in with a passkey.
        for (method, path, body) in [
            (Method::GET, "/api/admin/apikeys".to_owned(), None),
            (Method::POST, "/api/admin/apikeys".to_owned(), Some(json!({"name": "more", "scopes": ["users:read"]}))),
            (Method::DELETE, format!("/api/admin/credentials/{}", root.credential_id), None),
        ] {
            let reply = with_key(&app, &key, method, &path, body.as_ref()).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {}", reply.text);
            assert_eq!(reply.problem(), "api-key-not-allowed");
        }
        let (_, writer) = create_key(&app, "writer", &["users:write"]).await;
        let promote = with_key(&app, &writer, Method::PATCH, &format!("/api/admin/users/{}", alice.user_id),
            Some(&json!({"role": "admin"}))).await;
        assert_eq!(promote.status, StatusCode::FORBIDDEN, "{}", promote.text);
        assert_eq!(promote.problem(), "api-key-not-allowed");
        // Nothing the refused calls asked for happened, and they left no audit rows.
        assert_eq!(app.count("entitlements").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL OR role = 'admin'").await, 1);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NOT NULL").await, 0);
        assert_eq!(app.count("audit_log").await, before + 1, "only the second key's creation");
    }

    async fn keys_never_satisfy_session_routes_and_cookies_never_satisfy_key_routes(app) {
        admin(&app).await;
        let (id, key) = create_key(&app, "all", &["users:read", "users:write", "entitlements:write", "licenses:revoke", "audit:read"]).await;
        let me = with_key(&app, &key, Method::GET, "/api/me", None).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
        let device = crate::dpop::DeviceKey::ed25519();
        let proof = device.proof("POST", &format!("{}/api/licenses", crate::helpers::ORIGIN), None, None);
        let auth = format!("Bearer {key}");
        let mint = app.send(&reqwest::Client::new(), Method::POST, "/api/licenses", None,
            &[("authorization", &auth), ("dpop", &proof)]).await;
        assert_eq!(mint.status, StatusCode::UNAUTHORIZED, "{}", mint.text);
        // The admin's own cookie rides along with a key: the key alone decides.
        let mixed = app.send(&app.client, Method::GET, "/api/admin/apikeys", None, &[("authorization", &auth)]).await;
        assert_eq!(mixed.status, StatusCode::FORBIDDEN);
        assert_eq!(mixed.problem(), "api-key-not-allowed");
        // A key-only route refuses the signed-in admin's cookie.
        let cookie = app.get("/api/admin/apikeys/current").await;
        assert_eq!(cookie.status, StatusCode::UNAUTHORIZED);
        assert_eq!(cookie.problem(), "api-key-required");
        let current = with_key(&app, &key, Method::GET, "/api/admin/apikeys/current", None).await;
        assert_eq!(current.status, StatusCode::OK, "{}", current.text);
        assert_eq!(current.body["id"], id.as_str());
        assert_eq!(current.body["scopes"].as_array().unwrap().len(), 5);
    }

    async fn calls_with_a_key_are_audited_with_the_key_and_its_last_use_is_recorded(app) {
        admin(&app).await;
        let alice = app.register_with(&crate::helpers::new_client(), "alice", Default::default()).await;
        let (id, key) = create_key(&app, "billing-sync", &["entitlements:write"]).await;
        let listed = app.get("/api/admin/apikeys").await;
        assert!(listed.body["keys"][0]["last_used_at"].is_null());
        assert!(!listed.text.contains(&key), "lists never show the secret");
        assert_eq!(listed.body["keys"][0]["hint"], &key[..7]);
        let grant = with_key(&app, &key, Method::POST, &format!("/api/admin/users/{}/entitlements", alice.user_id),
            Some(&json!({"name": "premium"}))).await;
        assert_eq!(grant.status, StatusCode::CREATED, "{}", grant.text);
        let audit = app.get("/api/admin/audit?event=entitlement.granted").await;
        let row = &audit.body["events"][0];
        assert_eq!(row["actor_key_id"], id.as_str());
        assert_eq!(row["actor_key_name"], "billing-sync");
        assert!(row["actor_user_id"].is_null());
        assert_eq!(row["target_user_id"], alice.user_id.as_str());
        let listed = app.get("/api/admin/apikeys").await;
        assert!(listed.body["keys"][0]["last_used_at"].is_string(), "{}", listed.text);
        let stored: i64 = app.scalar(&format!("SELECT COUNT(*) FROM api_keys WHERE secret_hash <> '{key}' AND id = '{id}'")).await;
        assert_eq!(stored, 1, "the secret is not what is stored");
    }

    async fn revoked_expired_and_forged_keys_are_refused(app) {
        admin(&app).await;
        let (id, key) = create_key(&app, "short", &["users:read"]).await;
        assert_eq!(with_key(&app, &key, Method::GET, "/api/admin/users", None).await.status, StatusCode::OK);
        let mut forged = key.clone().into_bytes();
        forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        for bad in [forged.as_str(), "lk_nothing", "not-a-key"] {
            let reply = with_key(&app, bad, Method::GET, "/api/admin/users", None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert_eq!(reply.problem(), "invalid-api-key");
        }
        let revoked = app.send(&app.client, Method::DELETE, &format!("/api/admin/apikeys/{id}"), None, &[]).await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
        let after = with_key(&app, &key, Method::GET, "/api/admin/users", None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        assert_eq!(after.problem(), "invalid-api-key");
        let (old_id, old) = create_key(&app, "expiring", &["users:read"]).await;
        crate::status::execute(&app, &format!("UPDATE api_keys SET expires_at = 1 WHERE id = '{old_id}'")).await;
        assert_eq!(with_key(&app, &old, Method::GET, "/api/admin/users", None).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn external_ids_are_unique_settable_with_a_key_and_searchable(app) {
        admin(&app).await;
        let alice = app.register_with(&crate::helpers::new_client(), "alice", Default::default()).await;
        let bob = app.register_with(&crate::helpers::new_client(), "bob", Default::default()).await;
        let (_, key) = create_key(&app, "crm", &["users:write", "users:read"]).await;
        let set = with_key(&app, &key, Method::PATCH, &format!("/api/admin/users/{}", alice.user_id),
            Some(&json!({"external_id": "cus_NffrFeUfNV2Hib"}))).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        assert_eq!(set.body["external_id"], "cus_NffrFeUfNV2Hib");
        let taken = with_key(&app, &key, Method::PATCH, &format!("/api/admin/users/{}", bob.user_id),
            Some(&json!({"external_id": "cus_NffrFeUfNV2Hib"}))).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.problem(), "external-id-taken");
        let bad = with_key(&app, &key, Method::PATCH, &format!("/api/admin/users/{}", bob.user_id),
            Some(&json!({"external_id": "has space"}))).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        let found = with_key(&app, &key, Method::GET, "/api/admin/users?external_id=cus_NffrFeUfNV2Hib", None).await;
        let users = found.body["users"].as_array().unwrap();
        assert_eq!(users.len(), 1, "{}", found.text);
        assert_eq!(users[0]["id"], alice.user_id.as_str());
        let none = with_key(&app, &key, Method::GET, "/api/admin/users?external_id=cus_other", None).await;
        assert!(none.body["users"].as_array().unwrap().is_empty());
        let cleared = with_key(&app, &key, Method::PATCH, &format!("/api/admin/users/{}", alice.user_id),
            Some(&json!({"external_id": null}))).await;
        assert_eq!(cleared.status, StatusCode::OK);
        assert!(cleared.body["external_id"].is_null());
        let (_, reader) = create_key(&app, "reader", &["users:read"]).await;
        let refused = with_key(&app, &reader, Method::PATCH, &format!("/api/admin/users/{}", bob.user_id),
            Some(&json!({"external_id": "x1"}))).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE external_id IS NOT NULL").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'user.external_id_set'").await, 2);
    }

    async fn a_key_with_licenses_revoke_revokes_a_license_for_offline_apps_too(app) {
        admin(&app).await;
        let client = crate::helpers::new_client();
        app.register_with(&client, "alice", Default::default()).await;
        app.cli(&["admin", "grant", "alice", "premium"]).await.unwrap();
        let device = crate::dpop::DeviceKey::ed25519();
        let minted = app.mint(&client, &device).await;
        let license = minted.body["license"].as_str().unwrap().to_owned();
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        let (_, key) = create_key(&app, "support", &["licenses:revoke"]).await;
        let revoked = with_key(&app, &key, Method::POST, &format!("/api/admin/licenses/{jti}/revoke"), None).await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
        assert_eq!(crate::status::bit_of(&app, &license).await, Some(1));
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::UNAUTHORIZED);
    }
}

/// Making a key is a destructive action for the re-auth rule: with
/// `LATCHKEY_ADMIN_REAUTH_MINUTES=0` each key needs its own fresh sign-in.
#[tokio::test]
async fn making_a_key_needs_a_recent_passkey_sign_in() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app_with(db, &["--admin-reauth-minutes", "0"]).await;
        let mut root = admin(&app).await;
        create_key(&app, "first", &["users:read"]).await;
        let again = app
            .post(
                "/api/admin/apikeys",
                &json!({"name": "second", "scopes": ["users:read"]}),
            )
            .await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
        assert_eq!(again.problem(), "reauthentication-required");
        assert_eq!(app.count("api_keys").await, 1);
        app.login(&mut root).await;
        create_key(&app, "second", &["users:read"]).await;
        assert_eq!(app.count("api_keys").await, 2);
    }
}

/// `latchkey apikey create|list|revoke`, as the real binary.
#[tokio::test]
async fn the_command_line_makes_lists_and_revokes_keys() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = crate::helpers::spawn_app(db).await;
        app.register("alice").await;
        let run = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
                .args(["--database-url", &app.database_url, "--data-dir"])
                .arg(app.data_dir.path())
                .args(["--origin", crate::helpers::ORIGIN])
                .args(args)
                .env_remove("LATCHKEY_LOG")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, stdout, stderr) = run(&[
            "apikey",
            "create",
            "ci",
            "--scope",
            "users:read,audit:read",
            "--expires",
            "90d",
        ]);
        assert!(ok, "{stderr}");
        // Logs share stdout; the secret is the line of its own.
        let key = stdout
            .lines()
            .find(|l| l.starts_with("lk_"))
            .unwrap_or_default()
            .to_owned();
        assert!(key.starts_with("lk_") && key.len() == 39, "{key}");
        assert_eq!(
            with_key(&app, &key, Method::GET, "/api/admin/users", None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            with_key(&app, &key, Method::GET, "/api/admin/audit", None)
                .await
                .status,
            StatusCode::OK
        );
        let (ok, listed, _) = run(&["apikey", "list"]);
        assert!(ok);
        assert!(
            listed.contains("audit:read users:read")
                && listed.contains("expires")
                && !listed.contains(&key),
            "{listed}"
        );
        let id = listed
            .lines()
            .find(|l| l.starts_with("key_"))
            .unwrap()
            .split('\t')
            .next()
            .unwrap()
            .to_owned();
        let (ok, _, stderr) = run(&["apikey", "create", "bad", "--scope", "users:everything"]);
        assert!(!ok && stderr.contains("unknown scope"), "{stderr}");
        let (ok, _, stderr) = run(&["apikey", "revoke", &id]);
        assert!(ok, "{stderr}");
        assert_eq!(
            with_key(&app, &key, Method::GET, "/api/admin/users", None)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let cli_rows = app.scalar("SELECT COUNT(*) FROM audit_log WHERE event IN ('apikey.created', 'apikey.revoked') AND client_addr = 'cli'").await;
        assert_eq!(cli_rows, 2);
    }
}
