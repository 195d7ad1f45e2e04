use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_with, Account, Db, TestApp};
use crate::on_both_databases;

/// Registers `root` on `app.client` and makes them an admin.
async fn admin(app: &TestApp) -> Account {
    let root = app.register("root").await;
    app.cli(&["admin", "promote", "root"]).await.unwrap();
    root
}

/// A user with premium, signed in on their own client, holding a license.
struct Member {
    account: Account,
    client: reqwest::Client,
    device: DeviceKey,
    license: String,
}

async fn member(app: &TestApp, name: &str) -> Member {
    let client = new_client();
    let account = app
        .register_with(&client, name, SoftAuthenticator::new())
        .await;
    app.cli(&["admin", "grant", name, "premium"]).await.unwrap();
    let device = DeviceKey::ed25519();
    let reply = app.mint(&client, &device).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let license = reply.body["license"].as_str().unwrap().to_owned();
    Member {
        account,
        client,
        device,
        license,
    }
}

fn jti(license: &str) -> String {
    let payload: Value =
        serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
    payload["jti"].as_str().unwrap().to_owned()
}

async fn premium_status(app: &TestApp, m: &Member) -> StatusCode {
    app.premium(&m.license, &m.device).await.status
}

async fn act(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> crate::helpers::Reply {
    app.send(&app.client, method, path, body, &[]).await
}

on_both_databases! {
    async fn non_admins_get_403_and_nothing_changes(app) {
        let m = member(&app, "ana").await;
        let other = member(&app, "ben").await;
        for (method, path) in [
            (Method::GET, "/api/admin/users".to_owned()),
            (Method::GET, "/api/admin/overview".to_owned()),
            (Method::GET, "/api/admin/audit".to_owned()),
            (Method::DELETE, format!("/api/admin/credentials/{}", other.account.credential_id)),
            (Method::POST, format!("/api/admin/licenses/{}/revoke", jti(&other.license))),
            (Method::POST, format!("/api/admin/users/{}/disable", other.account.user_id)),
        ] {
            let reply = app.send(&m.client, method.clone(), &path, None, &[]).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(reply.problem(), "not-admin");
        }
        let promote = app.send(&m.client, Method::PATCH, &format!("/api/admin/users/{}", m.account.user_id), Some(&json!({"role": "admin"})), &[]).await;
        assert_eq!(promote.status, StatusCode::FORBIDDEN);
        assert_eq!(premium_status(&app, &other).await, StatusCode::OK);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NOT NULL").await, 0);
        let anonymous = app.send(&new_client(), Method::GET, "/api/admin/users", None, &[]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    }

    async fn cross_site_admin_requests_are_forbidden_and_change_nothing(app) {
        admin(&app).await;
        let m = member(&app, "cat").await;
        let path = format!("/api/admin/credentials/{}", m.account.credential_id);
        let reply = app.send(&app.client, Method::DELETE, &path, None, &[("origin", "https://evil.example")]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.problem(), "cross-origin-request");
        assert_eq!(premium_status(&app, &m).await, StatusCode::OK);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NOT NULL").await, 0);
    }

    async fn revoking_a_passkey_ends_its_sessions_revokes_their_licenses_and_blocks_sign_in(app) {
        admin(&app).await;
        let mut m = member(&app, "dan").await;
        // A second passkey with its own session and license, which must survive.
        let options = app.send(&m.client, Method::POST, "/api/me/passkeys/start", None, &[]).await;
        let mut spare = SoftAuthenticator::new();
        let credential = spare.create(&options.body, crate::helpers::ORIGIN, &Tweaks::default()).unwrap();
        assert_eq!(app.send(&m.client, Method::POST, "/api/me/passkeys/finish", Some(&credential), &[]).await.status, StatusCode::CREATED);
        let phone = new_client();
        assert_eq!(app.login_with(&phone, Some("dan"), &mut spare, &Tweaks::default()).await.status, StatusCode::OK);
        let phone_device = DeviceKey::es256();
        let phone_license = app.mint(&phone, &phone_device).await.body["license"].as_str().unwrap().to_owned();

        let reply = act(&app, Method::DELETE, &format!("/api/admin/credentials/{}", m.account.credential_id), None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        assert_eq!(app.send(&m.client, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED, "its session ended");
        assert_eq!(premium_status(&app, &m).await, StatusCode::UNAUTHORIZED, "its license is revoked");
        let signin = app.login_with(&new_client(), None, &mut m.account.authenticator, &Tweaks::default()).await;
        assert_eq!(signin.problem(), "unknown-credential");
        assert_eq!(crate::status::bit_of(&app, &m.license).await, Some(1));
        // The other passkey's session and license are untouched.
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK);
        assert_eq!(app.premium(&phone_license, &phone_device).await.status, StatusCode::OK);
        assert_eq!(crate::status::bit_of(&app, &phone_license).await, Some(0));
    }

    async fn revoking_a_license_ends_the_session_it_was_minted_under(app) {
        admin(&app).await;
        let m = member(&app, "eve").await;
        let reply = act(&app, Method::POST, &format!("/api/admin/licenses/{}/revoke", jti(&m.license)), None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        assert_eq!(premium_status(&app, &m).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.mint(&m.client, &m.device).await.status, StatusCode::UNAUTHORIZED, "a fresh passkey sign-in is needed");
        assert_eq!(crate::status::bit_of(&app, &m.license).await, Some(1));
        let missing = act(&app, Method::POST, "/api/admin/licenses/nope/revoke", None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }

    async fn removing_an_entitlement_through_the_api_revokes_the_licenses_that_carry_it(app) {
        admin(&app).await;
        let m = member(&app, "fox").await;
        let granted = act(&app, Method::POST, &format!("/api/admin/users/{}/entitlements", m.account.user_id), Some(&json!({"name": "extras", "expires_at": "2099-12-31"}))).await;
        assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
        let bad = act(&app, Method::POST, &format!("/api/admin/users/{}/entitlements", m.account.user_id), Some(&json!({"name": "Not Valid"}))).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(bad.problem(), "invalid-entitlement");
        let removed = act(&app, Method::DELETE, &format!("/api/admin/users/{}/entitlements/premium", m.account.user_id), None).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT);
        assert_eq!(crate::status::bit_of(&app, &m.license).await, Some(1));
        let fresh = app.mint(&m.client, &m.device).await;
        assert_eq!(fresh.status, StatusCode::CREATED, "the session stays: only licenses carrying premium were revoked");
        let ent: Value = serde_json::from_slice(&crate::helpers::unb64(fresh.body["license"].as_str().unwrap().split('.').nth(1).unwrap())).unwrap();
        assert_eq!(ent["ent"], json!(["extras"]));
    }

    async fn disabling_a_user_revokes_everything_and_enabling_allows_sign_in_again(app) {
        admin(&app).await;
        let mut m = member(&app, "gil").await;
        let path = format!("/api/admin/users/{}", m.account.user_id);
        assert_eq!(act(&app, Method::POST, &format!("{path}/disable"), None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(premium_status(&app, &m).await, StatusCode::UNAUTHORIZED);
        assert_eq!(crate::status::bit_of(&app, &m.license).await, Some(1));
        assert_eq!(app.send(&m.client, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED);
        let refused = app.login_with(&new_client(), None, &mut m.account.authenticator, &Tweaks::default()).await;
        assert_eq!(refused.problem(), "account-disabled");
        let detail = act(&app, Method::GET, &path, None).await;
        assert_eq!(detail.body["user"]["disabled"], true);
        assert_eq!(detail.body["licenses"][0]["status"], "revoked");
        assert_eq!(act(&app, Method::POST, &format!("{path}/enable"), None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(app.login_with(&new_client(), None, &mut m.account.authenticator, &Tweaks::default()).await.status, StatusCode::OK);
        assert_eq!(crate::status::bit_of(&app, &m.license).await, Some(1), "re-enabling does not un-revoke");
    }

    async fn the_last_admin_cannot_be_demoted_disabled_or_lose_their_last_passkey(app) {
        let root = admin(&app).await;
        let me = format!("/api/admin/users/{}", root.user_id);
        let demote = act(&app, Method::PATCH, &me, Some(&json!({"role": "user"}))).await;
        assert_eq!(demote.status, StatusCode::CONFLICT);
        assert_eq!(demote.problem(), "last-admin");
        assert_eq!(act(&app, Method::POST, &format!("{me}/disable"), None).await.problem(), "last-admin");
        let revoke = act(&app, Method::DELETE, &format!("/api/admin/credentials/{}", root.credential_id), None).await;
        assert_eq!(revoke.problem(), "last-admin");
        assert!(app.cli(&["admin", "demote", "root"]).await.is_err());
        // With a second admin, the first can step down.
        let second = app.register_with(&new_client(), "deputy", SoftAuthenticator::new()).await;
        let promote = act(&app, Method::PATCH, &format!("/api/admin/users/{}", second.user_id), Some(&json!({"role": "admin"}))).await;
        assert_eq!(promote.status, StatusCode::OK, "{}", promote.text);
        assert_eq!(promote.body["role"], "admin");
        let step_down = act(&app, Method::PATCH, &me, Some(&json!({"role": "user"}))).await;
        assert_eq!(step_down.status, StatusCode::OK);
        assert_eq!(act(&app, Method::GET, "/api/admin/users", None).await.status, StatusCode::FORBIDDEN, "no longer an admin");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'").await, 1);
    }

    async fn the_cli_obeys_the_same_last_admin_rule_as_the_api(app) {
        let root = admin(&app).await;
        let disable = app.cli(&["admin", "disable", "root"]).await.unwrap_err();
        assert!(disable.to_string().contains("last administrator"), "{disable}");
        let revoke = app.cli(&["admin", "revoke-passkey", &root.credential_id]).await.unwrap_err();
        assert!(revoke.to_string().contains("last administrator"), "{revoke}");
        let demote = app.cli(&["admin", "demote", "root"]).await.unwrap_err();
        assert!(demote.to_string().contains("last administrator"), "{demote}");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL").await, 1);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NULL").await, 1);
        assert_eq!(app.get("/api/me").await.status, StatusCode::OK, "root is still signed in");
        let refused = app.scalar("SELECT COUNT(*) FROM audit_log WHERE event IN ('user.disabled', 'passkey.revoked') AND client_addr = 'cli'").await;
        assert_eq!(refused, 0, "a refused change writes no audit row");
        let promotions = app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'user.role_changed'").await;
        assert_eq!(promotions, 1, "only the promotion, not the refused demotion");
        // With a second admin, the same commands go through, each with its audit row.
        app.register_with(&new_client(), "deputy", SoftAuthenticator::new()).await;
        app.cli(&["admin", "promote", "deputy"]).await.unwrap();
        app.cli(&["admin", "revoke-passkey", &root.credential_id]).await.unwrap();
        app.cli(&["admin", "disable", "root"]).await.unwrap();
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event IN ('user.disabled', 'passkey.revoked') AND client_addr = 'cli'").await, 2);
        assert_eq!(app.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn a_stale_admin_sign_in_must_be_renewed_before_destructive_actions(app) {
        let mut root = admin(&app).await;
        let m = member(&app, "hana").await;
        // Age the admin's sign-in by an hour (beyond the default 10 minutes).
        let at = app.scalar("SELECT authenticated_at FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'root')").await;
        crate::account::age_session(&app, at, 3600).await;
        let path = format!("/api/admin/licenses/{}/revoke", jti(&m.license));
        let stale = act(&app, Method::POST, &path, None).await;
        assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
        assert_eq!(stale.problem(), "reauthentication-required");
        assert_eq!(premium_status(&app, &m).await, StatusCode::OK, "nothing changed");
        assert_eq!(act(&app, Method::GET, "/api/admin/users", None).await.status, StatusCode::OK, "reading needs no fresh sign-in");
        assert_eq!(app.login(&mut root).await.status, StatusCode::OK);
        assert_eq!(act(&app, Method::POST, &path, None).await.status, StatusCode::NO_CONTENT);
    }

    async fn users_can_be_searched_and_paged(app) {
        admin(&app).await;
        for name in ["alpha", "alfred", "bravo", "al_bundy"] {
            app.register_with(&new_client(), name, SoftAuthenticator::new()).await;
        }
        let page = act(&app, Method::GET, "/api/admin/users?q=AL&limit=2", None).await;
        let names: Vec<&str> = page.body["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["al_bundy", "alfred"]);
        let cursor = page.body["next_cursor"].as_str().unwrap();
        let next = act(&app, Method::GET, &format!("/api/admin/users?q=al&limit=2&cursor={cursor}"), None).await;
        let names: Vec<&str> = next.body["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["alpha"]);
        assert!(next.body["next_cursor"].is_null());
        let underscore = act(&app, Method::GET, "/api/admin/users?q=l_b", None).await;
        assert_eq!(underscore.body["users"].as_array().unwrap().len(), 1, "_ is literal, not a wildcard");
        assert_eq!(act(&app, Method::GET, "/api/admin/users/nope", None).await.status, StatusCode::NOT_FOUND);
    }

    async fn the_user_detail_shows_passkeys_licenses_entitlements_and_sessions(app) {
        admin(&app).await;
        let m = member(&app, "ivy").await;
        let detail = act(&app, Method::GET, &format!("/api/admin/users/{}", m.account.user_id), None).await;
        assert_eq!(detail.status, StatusCode::OK);
        let passkey = &detail.body["passkeys"][0];
        assert_eq!(passkey["id"], m.account.credential_id.as_str());
        assert_eq!(passkey["aaguid"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(passkey["backup_eligible"], false);
        assert_eq!(detail.body["licenses"][0]["jti"], jti(&m.license).as_str());
        assert_eq!(detail.body["licenses"][0]["status"], "active");
        assert_eq!(detail.body["entitlements"][0]["name"], "premium");
        assert_eq!(detail.body["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(detail.headers["cache-control"], "no-store");
    }

    async fn the_audit_log_records_security_events_newest_first(app) {
        let root = admin(&app).await;
        let mut m = member(&app, "jo").await;
        let _ = app.login_with(&new_client(), Some("jo"), &mut m.account.authenticator, &Tweaks { corrupt_signature: true, ..Tweaks::default() }).await;
        act(&app, Method::POST, &format!("/api/admin/licenses/{}/revoke", jti(&m.license)), None).await;
        let all = act(&app, Method::GET, "/api/admin/audit?limit=200", None).await;
        let events: Vec<&str> = all.body["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        for expected in ["registration", "user.role_changed", "entitlement.granted", "license.minted", "signin.failure", "license.revoked"] {
            assert!(events.contains(&expected), "{expected} missing from {events:?}");
        }
        assert_eq!(events[0], "license.revoked", "newest first");
        let revoked = &all.body["events"][0];
        assert_eq!(revoked["actor_user_id"], root.user_id.as_str());
        assert_eq!(revoked["target_user_id"], m.account.user_id.as_str());
        assert_eq!(revoked["client_addr"], "127.0.0.1");
        let filtered = act(&app, Method::GET, &format!("/api/admin/audit?event=license.minted&user={}", m.account.user_id), None).await;
        assert_eq!(filtered.body["events"].as_array().unwrap().len(), 1);
        let page = act(&app, Method::GET, "/api/admin/audit?limit=2", None).await;
        let cursor = page.body["next_cursor"].as_str().unwrap();
        let next = act(&app, Method::GET, &format!("/api/admin/audit?limit=2&cursor={cursor}"), None).await;
        assert!(next.body["events"][0]["id"].as_i64().unwrap() < page.body["events"][1]["id"].as_i64().unwrap());
        let overview = act(&app, Method::GET, "/api/admin/overview", None).await;
        assert_eq!(overview.body["counts"]["users"], 2);
        assert_eq!(overview.body["counts"]["revoked_licenses"], 1);
        let daily = overview.body["daily"].as_array().unwrap();
        assert_eq!(daily.len(), 30);
        assert_eq!(daily[29]["licenses"], 1);
        assert_eq!(daily[29]["revocations"], 1);
    }
}

mod reauth_every_time {
    use super::*;

    async fn run(db: Db) {
        let app = spawn_app_with(db, &["--admin-reauth-minutes", "0"]).await;
        let mut root = admin(&app).await;
        let a = member(&app, "kai").await;
        let b = member(&app, "lou").await;
        // The registration sign-in is fresh: it pays for one destructive action.
        assert_eq!(
            act(
                &app,
                Method::POST,
                &format!("/api/admin/licenses/{}/revoke", jti(&a.license)),
                None
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
        let path = format!("/api/admin/licenses/{}/revoke", jti(&b.license));
        let second = act(&app, Method::POST, &path, None).await;
        assert_eq!(second.problem(), "reauthentication-required");
        assert_eq!(app.login(&mut root).await.status, StatusCode::OK);
        assert_eq!(
            act(&app, Method::POST, &path, None).await.status,
            StatusCode::NO_CONTENT
        );
    }

    #[tokio::test]
    async fn sqlite() {
        run(Db::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        run(Db::Postgres).await
    }
}

on_both_databases! {
    async fn audit_rows_cannot_be_changed_or_deleted_even_in_sql(app) {
        app.register("ana").await;
        for sql in ["UPDATE audit_log SET event = 'x'", "DELETE FROM audit_log"] {
            let result = match app.db {
                Db::Sqlite => sqlx::query(sql).execute(&sqlx::SqlitePool::connect(&app.database_url).await.unwrap()).await.map(|_| ()),
                Db::Postgres => sqlx::query(sql).execute(&sqlx::PgPool::connect(&app.database_url).await.unwrap()).await.map(|_| ()),
            };
            assert!(result.is_err(), "{sql} must be refused");
        }
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'registration'").await, 1);
    }

    async fn keys_list_shows_the_active_key_and_the_key_file_is_private(app) {
        app.cli(&["keys", "list"]).await.unwrap();
        app.cli(&["keys", "rotate"]).await.unwrap();
        app.cli(&["keys", "list"]).await.unwrap();
        assert_eq!(app.count("signing_keys").await, 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.data_dir.path().join("kek")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
