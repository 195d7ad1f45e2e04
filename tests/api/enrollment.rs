//! Users made through the admin API (`users:write`) add their first passkey
//! with a one-time enrollment code.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::apikeys::{admin, create_key, with_key};
use crate::authenticator::SoftAuthenticator;
use crate::helpers::{new_client, ORIGIN};
use crate::on_both_databases;

on_both_databases! {
    async fn a_user_made_with_a_key_enrolls_a_passkey_once_with_the_code(app) {
        admin(&app).await;
        let (key_id, key) = create_key(&app, "crm", &["users:write"]).await;
        let made = with_key(&app, &key, Method::POST, "/api/admin/users",
            Some(&json!({"username": "carol", "external_id": "crm-7"}))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let user_id = made.body["user"]["id"].as_str().unwrap().to_owned();
        assert_eq!(made.body["user"]["external_id"], "crm-7");
        let code = made.body["enrollment"]["code"].as_str().unwrap().to_owned();
        assert!(code.starts_with("lke_") && code.len() == 36, "{code}");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM enrollments WHERE token_hash = '{code}'")).await, 0, "only a hash is kept");
        let audit = app.get("/api/admin/audit?event=user.created").await;
        assert_eq!(audit.body["events"][0]["actor_key_id"], key_id.as_str());

        // The username is taken for ordinary registration; the code is the way in.
        let client = new_client();
        let taken = app.send(&client, Method::POST, "/api/register/start", Some(&json!({"username": "Carol"})), &[]).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        let wrong = app.send(&client, Method::POST, "/api/register/enroll", Some(&json!({"enrollment": format!("lke_{}", "A".repeat(32))})), &[]).await;
        assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(wrong.problem(), "enrollment-not-found");
        let options = app.send(&client, Method::POST, "/api/register/enroll", Some(&json!({"enrollment": code})), &[]).await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        let mut authenticator = SoftAuthenticator::new();
        let credential = authenticator.create(&options.body, ORIGIN, &Default::default()).unwrap();
        let done = app.send(&client, Method::POST, "/api/register/finish", Some(&credential), &[]).await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        assert_eq!(done.body["user_id"], user_id.as_str());
        let me = app.send(&client, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["username"], "carol");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE username_key = 'carol'").await, 1);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE event = 'registration' AND target_user_id = '{user_id}'")).await, 1);

        // Once only.
        let again = app.send(&new_client(), Method::POST, "/api/register/enroll", Some(&json!({"enrollment": code})), &[]).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(again.problem(), "enrollment-not-found");
    }

    async fn making_a_user_needs_users_write_and_a_free_username_and_external_id(app) {
        admin(&app).await;
        app.register_with(&new_client(), "dora", Default::default()).await;
        let (_, reader) = create_key(&app, "reader", &["users:read"]).await;
        let refused = with_key(&app, &reader, Method::POST, "/api/admin/users", Some(&json!({"username": "erin"}))).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.problem(), "missing-scope");
        let (_, writer) = create_key(&app, "writer", &["users:write"]).await;
        let taken = with_key(&app, &writer, Method::POST, "/api/admin/users", Some(&json!({"username": "DORA"}))).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.problem(), "username-taken");
        let first = app.post("/api/admin/users", &json!({"username": "erin", "external_id": "x-1"})).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let twin = with_key(&app, &writer, Method::POST, "/api/admin/users", Some(&json!({"username": "fay", "external_id": "x-1"}))).await;
        assert_eq!(twin.status, StatusCode::CONFLICT);
        assert_eq!(twin.problem(), "external-id-taken");
        assert_eq!(app.count("users").await, 3);
        assert_eq!(app.count("enrollments").await, 1);
    }
}
