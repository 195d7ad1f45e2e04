use reqwest::StatusCode;
use serde_json::json;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::helpers::{new_client, ORIGIN};
use crate::on_both_databases;

on_both_databases! {
    async fn sign_in_with_a_username_lists_that_users_passkeys(app) {
        let mut account = app.register("alice").await;
        let options = app.post("/api/login/start", &json!({"username": "ALICE"})).await;
        assert_eq!(options.status, StatusCode::OK);
        let allow = options.body["publicKey"]["allowCredentials"].as_array().unwrap();
        assert_eq!(allow.len(), 1);
        assert_eq!(allow[0]["id"], account.credential_id.as_str());
        assert!(options.body.get("mediation").is_none());
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let reply = app.post("/api/login/finish", &assertion).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["user_id"], account.user_id.as_str());
        assert_eq!(reply.body["username"], "alice");
        assert_eq!(reply.body["entitlements"], json!([]));
    }

    async fn discoverable_sign_in_without_a_username_finds_the_user_by_user_handle(app) {
        let mut account = app.register("bea").await;
        let fresh = new_client();
        let options = app.send(&fresh, reqwest::Method::POST, "/api/login/start", Some(&json!({})), &[]).await;
        assert_eq!(options.body["publicKey"]["allowCredentials"], json!([]));
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        assert!(assertion["response"]["userHandle"].is_string());
        let reply = app.send(&fresh, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["user_id"], account.user_id.as_str());
        let me = app.send(&fresh, reqwest::Method::GET, "/api/me", None, &[]).await;
        assert_eq!(me.body["username"], "bea");
    }

    async fn an_unknown_username_gets_an_answer_of_the_same_shape(app) {
        app.register("carl").await;
        let known = app.post("/api/login/start", &json!({"username": "carl"})).await;
        let unknown = app.post("/api/login/start", &json!({"username": "nobody"})).await;
        let again = app.post("/api/login/start", &json!({"username": "nobody"})).await;
        assert_eq!(known.status, unknown.status);
        let shape = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v["publicKey"].as_object().unwrap().keys().cloned().collect();
            keys.sort();
            (keys, v["publicKey"]["allowCredentials"].as_array().unwrap().len())
        };
        assert_eq!(shape(&known.body), shape(&unknown.body));
        let fake = &unknown.body["publicKey"]["allowCredentials"][0]["id"];
        assert_eq!(fake, &again.body["publicKey"]["allowCredentials"][0]["id"], "the made-up id is stable");
        assert_eq!(fake.as_str().unwrap().len(), known.body["publicKey"]["allowCredentials"][0]["id"].as_str().unwrap().len());
    }

    async fn sign_in_rotates_the_session_id_so_a_planted_cookie_stays_signed_out(app) {
        let mut account = app.register("dora").await;
        let attacker = new_client();
        // The attacker gets a session cookie by starting a sign-in...
        let options = app.send(&attacker, reqwest::Method::POST, "/api/login/start", Some(&json!({})), &[]).await;
        let planted = options.headers.get("set-cookie").expect("a session cookie").to_str().unwrap().split(';').next().unwrap().to_owned();
        // ...and the victim's browser signs in carrying that cookie.
        let options = app.send(&new_client(), reqwest::Method::POST, "/api/login/start", Some(&json!({})), &[("cookie", &planted)]).await;
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let signed_in = app.send(&new_client(), reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[("cookie", &planted)]).await;
        assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
        let new_cookie = signed_in.headers.get("set-cookie").expect("new cookie").to_str().unwrap().split(';').next().unwrap().to_owned();
        assert_ne!(new_cookie, planted);
        let as_attacker = app.send(&new_client(), reqwest::Method::GET, "/api/me", None, &[("cookie", &planted)]).await;
        assert_eq!(as_attacker.status, StatusCode::UNAUTHORIZED);
        assert_eq!(as_attacker.problem(), "not-signed-in");
        let as_victim = app.send(&new_client(), reqwest::Method::GET, "/api/me", None, &[("cookie", &new_cookie)]).await;
        assert_eq!(as_victim.status, StatusCode::OK);
    }

    async fn a_sign_in_commits_whole_or_not_at_all(app) {
        use latchkey::store::sessions::SignInOutcome;
        let account = app.register("uma").await;
        let signed_in = || app.scalar("SELECT COUNT(*) FROM sessions WHERE login_id = 'login-uma'");
        let audited = || app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'signin.success'");
        let counter_sql = format!("SELECT counter FROM credentials WHERE id = '{}'", account.credential_id);
        let counter = || app.scalar(&counter_sql);
        let before = audited().await;
        let (cookie, ceremony) = start_uma(&app).await;

        // Another ceremony id (one replaced or finished meanwhile) changes nothing.
        let other = "0123456789abcdef0123456789abcdef";
        assert_eq!(commit_sign_in(&app, &account, &cookie, other, None).await.0, SignInOutcome::CeremonyGone);
        // A counter that does not move forward rolls the session's rotation back.
        crate::status::execute(&app, &format!("UPDATE credentials SET counter = 5 WHERE id = '{}'", account.credential_id)).await;
        assert_eq!(commit_sign_in(&app, &account, &cookie, &ceremony, Some(3)).await.0, SignInOutcome::CounterRegressed);
        assert_eq!((signed_in().await, audited().await, counter().await), (0, before, 5), "nothing of a refused sign-in is written");

        // Accepted: the same row under its new id, the counter and the audit row, together.
        let (outcome, new_hash) = commit_sign_in(&app, &account, &cookie, &ceremony, Some(6)).await;
        assert_eq!(outcome, SignInOutcome::Done);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{new_hash}' AND user_id IS NOT NULL")).await, 1);
        assert_eq!((signed_in().await, audited().await, counter().await), (1, before + 1, 6));
        // Finishing it again finds no ceremony: the old id is gone.
        assert_eq!(commit_sign_in(&app, &account, &cookie, &ceremony, None).await.0, SignInOutcome::CeremonyGone);

        // A passkey revoked before the commit lands refuses it, and the start's session stays anonymous.
        let (cookie, ceremony) = start_uma(&app).await;
        app.cli(&["admin", "revoke-passkey", &account.credential_id]).await.unwrap();
        let (outcome, new_hash) = commit_sign_in(&app, &account, &cookie, &ceremony, None).await;
        assert_eq!(outcome, SignInOutcome::PasskeyGone);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{new_hash}'")).await, 0);
        assert_eq!(audited().await, before + 1);
    }

    async fn the_sign_in_cookie_has_the_session_cookies_attributes_and_comes_once(app) {
        let mut account = app.register("vic").await;
        let client = new_client();
        let options = app.send(&client, reqwest::Method::POST, "/api/login/start", Some(&json!({"username": "vic"})), &[]).await;
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let finish = app.send(&client, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]).await;
        assert_eq!(finish.status, StatusCode::OK, "{}", finish.text);
        let attributes = |header: &str| {
            let mut parts: Vec<String> = header.split(';').skip(1).map(|p| p.trim().to_owned()).collect();
            parts.sort();
            parts
        };
        let set: Vec<&str> = finish.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(set.len(), 1, "one session cookie, not the layer's as well: {set:?}");
        let start_cookie = options.headers["set-cookie"].to_str().unwrap();
        assert_eq!(attributes(set[0]), attributes(start_cookie), "{} / {start_cookie}", set[0]);
        assert!(attributes(set[0]).iter().any(|a| a.starts_with("Max-Age=")), "{}", set[0]);
        assert_eq!(app.send(&client, reqwest::Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK);
    }

    async fn the_session_cookie_is_http_only_and_same_site_strict(app) {
        let options = app.post("/api/login/start", &json!({})).await;
        let cookie = options.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
        assert!(cookie.starts_with("latchkey="), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains("Path=/"), "{cookie}");
        assert!(!cookie.contains("Secure"), "no Secure on http://localhost: {cookie}");
    }

    async fn a_finished_sign_in_sent_again_is_refused(app) {
        let mut account = app.register("earl").await;
        let options = app.post("/api/login/start", &json!({"username": "earl"})).await;
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        assert_eq!(app.post("/api/login/finish", &assertion).await.status, StatusCode::OK);
        let again = app.post("/api/login/finish", &assertion).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(again.problem(), "ceremony-not-found");
    }

    async fn ten_concurrent_finishes_of_one_sign_in_open_one_session(app) {
        let mut account = app.register("fay").await;
        let client = new_client();
        let options = app.send(&client, reqwest::Method::POST, "/api/login/start", Some(&json!({"username": "fay"})), &[]).await;
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let replies = futures::future::join_all((0..10).map(|_| app.send(&client, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]))).await;
        let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        assert_eq!(ok, 1, "{:?}", replies.iter().map(|r| (r.status, r.text.clone())).collect::<Vec<_>>());
        // Registration's session, plus the one sign-in; the anonymous ceremony session was replaced.
        assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions WHERE login_id IS NOT NULL").await, 2);
        assert_eq!(app.count("sessions").await, 2);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'signin.success'").await, 1);
    }

    async fn a_counter_that_does_not_increase_is_refused_and_logged(app) {
        let mut account = app.register("gus").await;
        assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
        assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
        // The authenticator is at 2 now. A clone replays counter 2, then 1.
        for stale in [2u32, 1] {
            let reply = app.login_with(&new_client(), Some("gus"), &mut account.authenticator, &Tweaks { counter: Some(stale), ..Tweaks::default() }).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "counter {stale}: {}", reply.text);
            assert_eq!(reply.problem(), "counter-regressed");
        }
        let stored = app.scalar(&format!("SELECT counter FROM credentials WHERE id = '{}'", account.credential_id)).await;
        assert_eq!(stored, 2, "the stored counter never goes down");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'signin.counter_regression'").await, 2);
        let reply = app.login_with(&new_client(), Some("gus"), &mut account.authenticator, &Tweaks { counter: Some(3), ..Tweaks::default() }).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    async fn a_refused_answer_ends_its_ceremony_and_the_same_browser_can_start_again(app) {
        let mut account = app.register("wes").await;
        let client = new_client();
        assert_eq!(app.login_with(&client, Some("wes"), &mut account.authenticator, &Tweaks::default()).await.status, StatusCode::OK);
        let options = app.send(&client, reqwest::Method::POST, "/api/login/start", Some(&json!({"username": "wes"})), &[]).await;
        let stale = Tweaks { counter: Some(1), ..Tweaks::default() };
        let assertion = account.authenticator.get(&options.body, ORIGIN, &stale).unwrap();
        let refused = app.send(&client, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]).await;
        assert_eq!(refused.problem(), "counter-regressed");
        // The refused answer spent its ceremony: sending a good one for it now is too late.
        let again = app.send(&client, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]).await;
        assert_eq!(again.problem(), "ceremony-not-found");
        // The same browser (cookie jar) starts again and signs in.
        for _ in 0..2 {
            let reply = app.login_with(&client, Some("wes"), &mut account.authenticator, &Tweaks::default()).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        }
        assert_eq!(app.send(&client, reqwest::Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK);
    }

    async fn synced_passkeys_with_counter_zero_sign_in_every_time(app) {
        let mut authenticator = SoftAuthenticator::new();
        authenticator.set_synced(true);
        let mut account = app.register_with(&app.client.clone(), "hal", authenticator).await;
        for _ in 0..3 {
            assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
        }
        let me = app.get("/api/me").await;
        assert_eq!(me.body["passkeys"][0]["backup_eligible"], true);
        assert_eq!(me.body["passkeys"][0]["backup_state"], true);
        assert!(me.body["passkeys"][0]["last_used_at"].is_string());
    }

    async fn concurrent_sign_ins_never_move_the_stored_counter_backwards(app) {
        let mut account = app.register("ida").await;
        let mut assertions = Vec::new();
        let mut clients = Vec::new();
        // Ten ceremonies answered with counters 1..=10, finished concurrently in reverse order.
        for counter in 1..=10u32 {
            let client = new_client();
            let options = app.send(&client, reqwest::Method::POST, "/api/login/start", Some(&json!({"username": "ida"})), &[]).await;
            let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks { counter: Some(counter), ..Tweaks::default() }).unwrap();
            assertions.push(assertion);
            clients.push(client);
        }
        let replies = futures::future::join_all(
            clients.iter().zip(&assertions).rev().map(|(c, a)| app.send(c, reqwest::Method::POST, "/api/login/finish", Some(a), &[])),
        )
        .await;
        assert!(replies.iter().any(|r| r.status == StatusCode::OK));
        for r in &replies {
            assert!(r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED, "{}", r.text);
        }
        let stored = app.scalar(&format!("SELECT counter FROM credentials WHERE id = '{}'", account.credential_id)).await;
        assert_eq!(stored, 10);
    }

    async fn a_passkey_removed_between_start_and_finish_cannot_finish(app) {
        let mut account = app.register("jon").await;
        let client = new_client();
        let options = app.send(&client, reqwest::Method::POST, "/api/login/start", Some(&json!({"username": "jon"})), &[]).await;
        let assertion = account.authenticator.get(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        app.cli(&["admin", "revoke-passkey", &account.credential_id]).await.unwrap();
        let reply = app.send(&client, reqwest::Method::POST, "/api/login/finish", Some(&assertion), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "unknown-credential");
        assert_eq!(reply.body["credential_id"], account.credential_id.as_str());
    }

    async fn a_passkey_of_another_user_cannot_finish_a_named_sign_in(app) {
        app.register("kim").await;
        let mut other = app.register("lee").await;
        let options = app.post("/api/login/start", &json!({"username": "kim"})).await;
        // Lee's authenticator answers Kim's ceremony with Lee's passkey.
        let mut opts = options.body.clone();
        opts["publicKey"]["allowCredentials"] = json!([]);
        let assertion = other.authenticator.get(&opts, ORIGIN, &Tweaks::default()).unwrap();
        let reply = app.post("/api/login/finish", &assertion).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "ceremony-failed");
    }

    async fn a_disabled_user_cannot_sign_in(app) {
        let mut account = app.register("max").await;
        app.cli(&["admin", "disable", "max"]).await.unwrap();
        assert_eq!(app.get("/api/me").await.status, StatusCode::UNAUTHORIZED, "its sessions ended");
        let reply = app.login_with(&new_client(), None, &mut account.authenticator, &Tweaks::default()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "account-disabled");
        app.cli(&["admin", "enable", "max"]).await.unwrap();
        assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
    }
}

#[test]
fn soft_authenticator_refuses_excluded_credentials() {
    let mut authenticator = SoftAuthenticator::new();
    let options = json!({"publicKey": {"challenge": "AAAA", "rp": {"id": "localhost"}, "user": {"id": "AAAA", "name": "a", "displayName": "a"}, "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}});
    let created = authenticator
        .create(&options, ORIGIN, &Tweaks::default())
        .unwrap();
    let mut again = options.clone();
    again["publicKey"]["excludeCredentials"] = json!([{"type": "public-key", "id": created["id"]}]);
    assert!(authenticator
        .create(&again, ORIGIN, &Tweaks::default())
        .is_err());
}

on_both_databases! {
    async fn a_username_longer_than_the_documented_64_characters_is_refused_at_sign_in_start(app) {
        let reply = app.post("/api/login/start", &json!({"username": "0".repeat(65)})).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
        assert_eq!(reply.problem(), "invalid-name");
        let fits = app.post("/api/login/start", &json!({"username": "0".repeat(64)})).await;
        assert_eq!(fits.status, StatusCode::OK, "an unknown name of a legal length gets options");
    }
}

/// Starts a sign-in for "uma" in a new session: its cookie value and its ceremony id.
async fn start_uma(app: &crate::helpers::TestApp) -> (String, String) {
    let reply = app
        .send(
            &new_client(),
            reqwest::Method::POST,
            "/api/login/start",
            Some(&json!({"username": "uma"})),
            &[],
        )
        .await;
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap();
    let cookie = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let hash = latchkey::store::sessions::id_hash(&cookie.parse().unwrap());
    let data = app
        .text(&format!(
            "SELECT data FROM sessions WHERE id_hash = '{hash}'"
        ))
        .await;
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    (
        cookie,
        data["ceremony:login"]["id"].as_str().unwrap().to_owned(),
    )
}

/// Commits a sign-in of `account` straight through the store, as a finish
/// would after verifying the assertion; returns its outcome and the new id's hash.
async fn commit_sign_in(
    app: &crate::helpers::TestApp,
    account: &crate::helpers::Account,
    cookie: &str,
    ceremony_id: &str,
    counter: Option<u32>,
) -> (latchkey::store::sessions::SignInOutcome, String) {
    use latchkey::store::audit::{AuditEvent, Event};
    let old_id: tower_sessions::session::Id = cookie.parse().unwrap();
    let new_id = tower_sessions::session::Id::default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = AuditEvent {
        actor_user_id: Some(&account.user_id),
        ..AuditEvent::new(Event::SigninSuccess)
    };
    let sign_in = latchkey::store::sessions::NewSignIn {
        old_id: &old_id,
        new_id: &new_id,
        ceremony_id,
        user_id: &account.user_id,
        login_id: "login-uma",
        credential_id: &account.credential_id,
        client_addr: None,
        user_agent: None,
        data: json!({"user_id": account.user_id}).to_string(),
        expires_at: now + 3600,
        credential_use: counter.map(|counter| latchkey::store::credentials::CredentialUse {
            counter,
            passkey: "{}".into(),
            backup_state: false,
            at: now,
        }),
        audit: &event,
        at: now,
    };
    let outcome = app.state.store.sign_in(sign_in).await.unwrap();
    (outcome, latchkey::store::sessions::id_hash(&new_id))
}
