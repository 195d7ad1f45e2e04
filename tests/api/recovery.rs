//! Recovery links: an administrator (or a key with `users:write`) issues a
//! one-time code with which the holder adds a new passkey to an existing
//! account, optionally revoking everything the account had before.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::apikeys::{admin, create_key, with_key};
use crate::authenticator::SoftAuthenticator;
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, Reply, TestApp, ORIGIN};
use crate::on_both_databases;

/// Enrolls a new passkey with `code` in `client`; the finish's reply.
async fn recover(
    app: &TestApp,
    client: &reqwest::Client,
    authenticator: &mut SoftAuthenticator,
    code: &str,
) -> Reply {
    let options = app
        .send(
            client,
            Method::POST,
            "/api/register/enroll",
            Some(&json!({"enrollment": code})),
            &[],
        )
        .await;
    if options.status != StatusCode::OK {
        return options;
    }
    let credential = authenticator
        .create(&options.body, ORIGIN, &Default::default())
        .unwrap();
    app.send(
        client,
        Method::POST,
        "/api/register/finish",
        Some(&credential),
        &[],
    )
    .await
}

fn code_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["code"].as_str().unwrap().to_owned()
}

on_both_databases! {
    async fn a_recovery_link_adds_a_passkey_to_the_existing_account_once(app) {
        admin(&app).await;
        let phone = new_client();
        let mut alice = app.register_with(&phone, "alice", Default::default()).await;
        let (key_id, key) = create_key(&app, "support", &["users:write"]).await;
        let issued = with_key(&app, &key, Method::POST, &format!("/api/admin/users/{}/recovery", alice.user_id), Some(&json!({}))).await;
        let code = code_of(&issued);
        assert!(code.starts_with("lke_") && code.len() == 36, "{code}");
        assert_eq!(issued.body["url"], format!("{ORIGIN}/?recover={code}"));
        assert_eq!(issued.body["revoke_others"], false);
        let expires = time::OffsetDateTime::parse(issued.body["expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        let ttl = expires.unix_timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((3590..=3600).contains(&ttl), "an hour by default, got {ttl}s");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM enrollments WHERE token_hash = '{code}'")).await, 0, "only a hash is kept");

        let laptop = new_client();
        let mut new_key = SoftAuthenticator::new();
        let done = recover(&app, &laptop, &mut new_key, &code).await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        assert_eq!(done.body["user_id"], alice.user_id.as_str());
        let me = app.send(&laptop, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["username"], "alice");
        assert_eq!(me.body["passkeys"].as_array().unwrap().len(), 2, "the old passkey is kept");
        // Both passkeys sign in; the phone's session goes on.
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK);
        let old = app.login_with(&new_client(), Some("alice"), &mut alice.authenticator, &Default::default()).await;
        assert_eq!(old.status, StatusCode::OK, "{}", old.text);
        let new = app.login_with(&new_client(), Some("alice"), &mut new_key, &Default::default()).await;
        assert_eq!(new.status, StatusCode::OK, "{}", new.text);

        let again = recover(&app, &new_client(), &mut SoftAuthenticator::new(), &code).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(again.problem(), "enrollment-not-found");
        let issued_events = app.get("/api/admin/audit?event=recovery.issued").await;
        assert_eq!(issued_events.body["events"][0]["actor_key_id"], key_id.as_str());
        assert_eq!(issued_events.body["events"][0]["target_user_id"], alice.user_id.as_str());
        let completed = app.get("/api/admin/audit?event=recovery.completed").await;
        assert_eq!(completed.body["events"].as_array().unwrap().len(), 1);
        assert_eq!(completed.body["events"][0]["detail"], "other passkeys kept");
    }

    async fn a_recovery_link_that_revokes_the_others_ends_old_passkeys_sessions_and_licenses(app) {
        admin(&app).await;
        let phone = new_client();
        let mut alice = app.register_with(&phone, "alice", Default::default()).await;
        let minted = app.mint(&phone, &DeviceKey::ed25519()).await;
        assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text);
        let code = code_of(&app.post(&format!("/api/admin/users/{}/recovery", alice.user_id), &json!({"revoke_others": true, "ttl_secs": 600})).await);

        let laptop = new_client();
        let mut new_key = SoftAuthenticator::new();
        let done = recover(&app, &laptop, &mut new_key, &code).await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        let me = app.send(&laptop, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["passkeys"].as_array().unwrap().len(), 1);
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED, "the old session ended");
        let old = app.login_with(&new_client(), None, &mut alice.authenticator, &Default::default()).await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM licenses WHERE user_id = '{}' AND revoked_reason = 'account recovered'", alice.user_id)).await, 1);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM credentials WHERE user_id = '{}' AND revoked_reason = 'account recovered'", alice.user_id)).await, 1);
        let completed = app.get("/api/admin/audit?event=recovery.completed").await;
        assert_eq!(completed.body["events"][0]["detail"], "other passkeys, sessions and licenses revoked");
        let new = app.login_with(&new_client(), Some("alice"), &mut new_key, &Default::default()).await;
        assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    }

    async fn expired_used_replaced_and_unknown_recovery_codes_get_one_and_the_same_problem(app) {
        admin(&app).await;
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        let path = format!("/api/admin/users/{}/recovery", alice.user_id);
        let expired = code_of(&app.post(&path, &json!({})).await);
        app.execute("UPDATE enrollments SET expires_at = 1").await;
        let replaced = code_of(&app.post(&path, &json!({})).await);
        let current = code_of(&app.post(&path, &json!({})).await);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM enrollments WHERE used_at IS NULL").await, 1, "a new link replaces the unused ones");
        // A ceremony started in time is refused when the code runs out before it finishes.
        let client = new_client();
        let options = app.send(&client, Method::POST, "/api/register/enroll", Some(&json!({"enrollment": current})), &[]).await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        app.execute("UPDATE enrollments SET expires_at = 1").await;
        let credential = SoftAuthenticator::new().create(&options.body, ORIGIN, &Default::default()).unwrap();
        let late = app.send(&client, Method::POST, "/api/register/finish", Some(&credential), &[]).await;
        let unknown = format!("lke_{}", "B".repeat(32));
        let mut problems = vec![late];
        for code in [&expired, &replaced, &current, &unknown] {
            problems.push(recover(&app, &new_client(), &mut SoftAuthenticator::new(), code).await);
        }
        for reply in &problems {
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
            assert_eq!(reply.body, problems[1].body, "the same problem every time");
        }
        assert_eq!(problems[1].problem(), "enrollment-not-found");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM credentials WHERE user_id = '{}'", alice.user_id)).await, 1, "nothing was added");
    }

    async fn recovery_links_need_users_write_a_known_enabled_user_and_a_ttl_up_to_a_day(app) {
        admin(&app).await;
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        let path = format!("/api/admin/users/{}/recovery", alice.user_id);
        let (_, reader) = create_key(&app, "reader", &["users:read"]).await;
        let refused = with_key(&app, &reader, Method::POST, &path, Some(&json!({}))).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.problem(), "missing-scope");
        assert_eq!(app.send(&new_client(), Method::POST, &path, Some(&json!({})), &[]).await.status, StatusCode::UNAUTHORIZED);
        for ttl in [59, 86_401] {
            let bad = app.post(&path, &json!({"ttl_secs": ttl})).await;
            assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
            assert_eq!(bad.problem(), "invalid-ttl");
        }
        let day = app.post(&path, &json!({"ttl_secs": 86_400})).await;
        assert_eq!(day.status, StatusCode::CREATED, "{}", day.text);
        let unknown = app.post("/api/admin/users/00000000-0000-0000-0000-000000000000/recovery", &json!({})).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(app.post(&path, &json!({"revoke": true})).await.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
        app.cli(&["admin", "disable", "alice"]).await.unwrap();
        let disabled = app.post(&path, &json!({})).await;
        assert_eq!(disabled.status, StatusCode::CONFLICT);
        assert_eq!(disabled.problem(), "user-disabled");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'recovery.issued'").await, 1, "only the link that was issued is audited");
    }

    async fn the_command_line_issues_recovery_links_of_the_given_lifetime(app) {
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        app.cli(&["admin", "recovery-link", "alice", "--ttl", "2h", "--revoke-others"]).await.unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expires = app.scalar(&format!("SELECT expires_at FROM enrollments WHERE user_id = '{}' AND purpose = 'recovery' AND revoke_others", alice.user_id)).await;
        assert!((now + 7190..=now + 7200).contains(&expires), "{expires} vs {now}");
        assert!(app.cli(&["admin", "recovery-link", "alice", "--ttl", "25h"]).await.is_err());
        assert_eq!(app.count("enrollments").await, 1);
    }
}

/// Starts a recovery with a code from `client`; the reply of the start.
async fn recover_start(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    code: &str,
) -> Reply {
    app.send(
        client,
        Method::POST,
        "/api/register/recover",
        Some(&json!({"username": username, "code": code})),
        &[],
    )
    .await
}

/// Adds a passkey with a recovery code; the reply of the start if it failed, else of the finish.
async fn recover_with_code(
    app: &TestApp,
    client: &reqwest::Client,
    authenticator: &mut SoftAuthenticator,
    username: &str,
    code: &str,
) -> Reply {
    let options = recover_start(app, client, username, code).await;
    if options.status != StatusCode::OK {
        return options;
    }
    let credential = authenticator
        .create(&options.body, ORIGIN, &Default::default())
        .unwrap();
    app.send(
        client,
        Method::POST,
        "/api/register/finish",
        Some(&credential),
        &[],
    )
    .await
}

fn codes_of(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

on_both_databases! {
    async fn recovery_codes_need_a_step_up_and_each_adds_a_passkey_to_the_account_once(app) {
        let phone = new_client();
        let mut alice = app.register_with(&phone, "alice", Default::default()).await;
        crate::takeover::stale(&app, &phone).await;
        let refused = app.send(&phone, Method::POST, "/api/me/recovery-codes", None, &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.problem(), "step-up-required");
        assert_eq!(app.count("recovery_codes").await, 0);
        assert_eq!(app.step_up(&phone, &mut alice.authenticator).await.status, StatusCode::OK);
        let codes = codes_of(&app.send(&phone, Method::POST, "/api/me/recovery-codes", None, &[]).await);
        assert_eq!(codes.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 19 && c.split('-').count() == 4), "{codes:?}");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM recovery_codes WHERE code_hash = '{}'", codes[0])).await, 0, "only hashes are kept");
        let me = app.send(&phone, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["recovery_codes_left"], 10);

        // On a new device, with the username and one code typed loosely.
        let laptop = new_client();
        let mut new_key = SoftAuthenticator::new();
        let typed = format!(" {} ", codes[3].to_lowercase().replace('-', " "));
        let done = recover_with_code(&app, &laptop, &mut new_key, "Alice", &typed).await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        assert_eq!(done.body["user_id"], alice.user_id.as_str());
        let me = app.send(&laptop, Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["passkeys"].as_array().unwrap().len(), 2);
        assert_eq!(me.body["recovery_codes_left"], 9);
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK, "a code revokes nothing");

        // Used: refused like a wrong one. Another code still works.
        let used = recover_start(&app, &new_client(), "alice", &codes[3]).await;
        assert_eq!(used.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(used.problem(), "recovery-code-refused");
        // Two ceremonies started with one code: only the first to finish spends it.
        let (a, b) = (new_client(), new_client());
        let first = recover_start(&app, &a, "alice", &codes[4]).await;
        let second = recover_start(&app, &b, "alice", &codes[4]).await;
        assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK));
        let c1 = SoftAuthenticator::new().create(&first.body, ORIGIN, &Default::default()).unwrap();
        let c2 = SoftAuthenticator::new().create(&second.body, ORIGIN, &Default::default()).unwrap();
        assert_eq!(app.send(&a, Method::POST, "/api/register/finish", Some(&c1), &[]).await.status, StatusCode::CREATED);
        let late = app.send(&b, Method::POST, "/api/register/finish", Some(&c2), &[]).await;
        assert_eq!(late.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", late.text);
        assert_eq!(late.problem(), "recovery-code-refused");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM credentials WHERE user_id = '{}'", alice.user_id)).await, 3);

        // A new set replaces the old one.
        let fresh = codes_of(&app.send(&laptop, Method::POST, "/api/me/recovery-codes", None, &[]).await);
        let old = recover_start(&app, &new_client(), "alice", &codes[5]).await;
        assert_eq!(old.problem(), "recovery-code-refused");
        assert_eq!(recover_start(&app, &new_client(), "alice", &fresh[0]).await.status, StatusCode::OK);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'recovery.codes_made'").await, 2);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'recovery.completed'").await, 2);
    }

    async fn guessing_recovery_codes_is_limited_per_account_and_per_address_and_audited(app) {
        let phone = new_client();
        app.register_with(&phone, "alice", Default::default()).await;
        let codes = codes_of(&app.send(&phone, Method::POST, "/api/me/recovery-codes", None, &[]).await);
        let guesser = new_client();
        let mut refusal = serde_json::Value::Null;
        for i in 0..5 {
            let wrong = recover_start(&app, &guesser, "alice", &format!("AAAA-AAAA-AAAA-AAA{i}")).await;
            assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.text);
            assert_eq!(wrong.problem(), "recovery-code-refused");
            refusal = wrong.body;
        }
        // The account is locked for recovery now, even with the right code.
        let locked = recover_start(&app, &new_client(), "alice", &codes[0]).await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.text);
        assert!(locked.headers.contains_key("retry-after"));
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'recovery.code_refused'").await, 5);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM recovery_failures WHERE user_id IS NOT NULL").await, 5);
        // Unknown usernames get the same answer, and count against the address.
        for i in 0..15 {
            let unknown = recover_start(&app, &guesser, &format!("nobody{i}"), &codes[1]).await;
            assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(unknown.body, refusal, "no hint whether the user exists");
        }
        app.register_with(&new_client(), "bob", Default::default()).await;
        let from_here = recover_start(&app, &guesser, "bob", "BBBB-BBBB-BBBB-BBBB").await;
        assert_eq!(from_here.status, StatusCode::TOO_MANY_REQUESTS, "20 wrong codes from one address");
        // Once the window has passed, the right code works again, and the upkeep forgets the old guesses.
        app.execute("UPDATE recovery_failures SET at = at - 901").await;
        assert_eq!(recover_start(&app, &new_client(), "alice", &codes[0]).await.status, StatusCode::OK);
        app.state.store.delete_expired(time::OffsetDateTime::now_utc().unix_timestamp()).await.unwrap();
        assert_eq!(app.count("recovery_failures").await, 0, "guessing cannot grow the table for ever");
    }
}
