use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::helpers::{new_client, TestApp, ORIGIN};
use crate::on_both_databases;

on_both_databases! {
    async fn passkeys_can_be_renamed_and_another_users_passkey_is_not_found(app) {
        let account = app.register("alice").await;
        let path = format!("/api/me/passkeys/{}", account.credential_id);
        let renamed = app.send(&app.client, Method::PATCH, &path, Some(&json!({"name": "  Work laptop "})), &[]).await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
        assert_eq!(renamed.body["name"], "Work laptop");
        assert_eq!(app.get("/api/me").await.body["passkeys"][0]["name"], "Work laptop");
        let bad = app.send(&app.client, Method::PATCH, &path, Some(&json!({"name": ""})), &[]).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(bad.problem(), "invalid-name");

        let mallory = new_client();
        app.register_with(&mallory, "mallory", SoftAuthenticator::new()).await;
        let theirs = app.send(&mallory, Method::PATCH, &path, Some(&json!({"name": "mine now"})), &[]).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(theirs.problem(), "no-such-passkey");
        let delete = app.send(&mallory, Method::DELETE, &path, None, &[]).await;
        assert_eq!(delete.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/api/me").await.body["passkeys"][0]["name"], "Work laptop");
    }

    async fn passkeys_are_named_after_the_provider_that_keeps_them(app) {
        // Google Password Manager's AAGUID, from the community list in src/passkey/providers.json.
        let mut kept = SoftAuthenticator::new();
        kept.set_aaguid(uuid::Uuid::parse_str("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4").unwrap());
        kept.set_synced(true);
        app.register_with(&app.client, "gina", kept).await;
        let me = app.get("/api/me").await.body;
        assert_eq!(me["passkeys"][0]["name"], "Google Password Manager");
        assert_eq!(me["passkeys"][0]["provider"], "Google Password Manager");

        // An anonymous authenticator (all-zero AAGUID) has no provider: the name comes from the browser.
        let other = new_client();
        app.register_with(&other, "hugo", SoftAuthenticator::new()).await;
        let me = app.send(&other, Method::GET, "/api/me", None, &[]).await.body;
        assert_eq!(me["passkeys"][0]["provider"], serde_json::Value::Null);
        assert_ne!(me["passkeys"][0]["name"], "Google Password Manager");
        assert!(me["passkeys"][0]["name"].as_str().is_some_and(|n| !n.is_empty()));
    }

    async fn removing_a_passkey_keeps_at_least_one_and_the_removed_one_cannot_sign_in(app) {
        let mut account = app.register("bob").await;
        let only = app.send(&app.client, Method::DELETE, &format!("/api/me/passkeys/{}", account.credential_id), None, &[]).await;
        assert_eq!(only.status, StatusCode::CONFLICT);
        assert_eq!(only.problem(), "last-passkey");

        let options = app.post("/api/me/passkeys/start", &json!({})).await;
        let mut second = SoftAuthenticator::new();
        let credential = second.create(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let added = app.post("/api/me/passkeys/finish", &credential).await;
        let second_id = added.body["credential_id"].as_str().unwrap().to_owned();
        let client = new_client();
        assert_eq!(app.login_with(&client, Some("bob"), &mut second, &Tweaks::default()).await.status, StatusCode::OK);

        let removed = app.send(&client, Method::DELETE, &format!("/api/me/passkeys/{}", account.credential_id), None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        // Offered anyway (discoverable sign-in), the removed passkey is refused.
        let reply = app.login_with(&new_client(), None, &mut account.authenticator, &Tweaks::default()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "unknown-credential");
        let me = app.send(&client, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["passkeys"].as_array().unwrap().len(), 1);
        assert_eq!(me.body["passkeys"][0]["id"], second_id.as_str());
        // The session the removed passkey opened (registration's) has ended.
        assert_eq!(app.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn logout_deletes_the_session_server_side(app) {
        app.register("cat").await;
        let options = app.post("/api/login/start", &json!({})).await;
        let _ = options;
        let me = app.get("/api/me").await;
        assert_eq!(me.status, StatusCode::OK);
        let sessions = app.count("sessions").await;
        let out = app.post("/api/logout", &json!({})).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        assert_eq!(out.headers["clear-site-data"], "\"cookies\"");
        assert_eq!(app.count("sessions").await, sessions - 1);
        assert_eq!(app.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn sign_out_everywhere_ends_every_session_of_the_user(app) {
        let mut account = app.register("dan").await;
        let laptop = new_client();
        let phone = new_client();
        assert_eq!(app.login_with(&laptop, Some("dan"), &mut account.authenticator, &Tweaks::default()).await.status, StatusCode::OK);
        assert_eq!(app.login_with(&phone, Some("dan"), &mut account.authenticator, &Tweaks::default()).await.status, StatusCode::OK);
        let other = app.register_with(&new_client(), "eve", SoftAuthenticator::new()).await;
        let _ = other;
        let out = app.send(&phone, Method::POST, "/api/logout/everywhere", None, &[]).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        for client in [&app.client, &laptop, &phone] {
            assert_eq!(app.send(client, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL").await, 1, "eve's session stays");
    }

    async fn health_and_readiness_answer(app) {
        assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
        assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    }
}

/// Ages the sign-in (and the passkey confirmation it is) of the session
/// signed in at `at` by `secs` seconds, as if that much time had passed.
pub async fn age_session(app: &TestApp, at: i64, secs: i64) {
    let old = at - secs;
    let sql = format!(
        "UPDATE sessions SET authenticated_at = {old}, data = REPLACE(REPLACE(data, '\"authenticated_at\":{at}', '\"authenticated_at\":{old}'), '\"verified_at\":{at}', '\"verified_at\":{old}') WHERE authenticated_at = {at}"
    );
    crate::status::execute(app, &sql).await;
}
