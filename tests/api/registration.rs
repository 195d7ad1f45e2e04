use reqwest::StatusCode;
use serde_json::json;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::helpers::{new_client, ORIGIN};
use crate::on_both_databases;

on_both_databases! {
    async fn registration_creates_a_user_signed_in_with_a_discoverable_passkey(app) {
        let options = app.post("/api/register/start", &json!({"username": "  Alice  ", "display_name": "Alice A."})).await;
        assert_eq!(options.status, StatusCode::OK);
        let pk = &options.body["publicKey"];
        assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
        assert_eq!(pk["authenticatorSelection"]["requireResidentKey"], true);
        assert_eq!(pk["user"]["name"], "Alice");
        assert_eq!(pk["rp"]["id"], "localhost");
        let mut authenticator = SoftAuthenticator::new();
        let credential = authenticator.create(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let done = app.post("/api/register/finish", &credential).await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        assert_eq!(done.body["credential_id"], credential["id"]);
        let me = app.get("/api/me").await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["username"], "Alice");
        assert_eq!(me.body["display_name"], "Alice A.");
        assert_eq!(me.body["role"], "user");
        assert_eq!(me.body["passkeys"].as_array().unwrap().len(), 1);
        assert_eq!(me.headers["cache-control"], "no-store");
        assert_eq!(app.count("users").await, 1);
    }

    async fn usernames_are_unique_regardless_of_case(app) {
        app.register("bob").await;
        let again = app.post("/api/register/start", &json!({"username": "BOB"})).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(again.problem(), "username-taken");
    }

    async fn a_username_taken_between_start_and_finish_is_a_conflict_and_nothing_is_created(app) {
        let first = new_client();
        let second = new_client();
        let mut a1 = SoftAuthenticator::new();
        let mut a2 = SoftAuthenticator::new();
        let o1 = app.send(&first, reqwest::Method::POST, "/api/register/start", Some(&json!({"username": "carol"})), &[]).await;
        let o2 = app.send(&second, reqwest::Method::POST, "/api/register/start", Some(&json!({"username": "Carol"})), &[]).await;
        let c1 = a1.create(&o1.body, ORIGIN, &Tweaks::default()).unwrap();
        let c2 = a2.create(&o2.body, ORIGIN, &Tweaks::default()).unwrap();
        let r1 = app.send(&first, reqwest::Method::POST, "/api/register/finish", Some(&c1), &[]).await;
        let r2 = app.send(&second, reqwest::Method::POST, "/api/register/finish", Some(&c2), &[]).await;
        assert_eq!(r1.status, StatusCode::CREATED);
        assert_eq!(r2.status, StatusCode::CONFLICT);
        assert_eq!(r2.problem(), "username-taken");
        assert_eq!(app.count("users").await, 1);
        assert_eq!(app.count("credentials").await, 1);
    }

    async fn usernames_must_be_1_to_64_characters_after_trimming(app) {
        // Well-formed JSON that breaks the rules: 422, naming the rule.
        for bad in [json!({"username": ""}), json!({"username": "   "}), json!({"username": "x".repeat(65)}), json!({"username": "a\u{0007}b"})] {
            let reply = app.post("/api/register/start", &bad).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(reply.problem(), "invalid-name", "{}", reply.text);
        }
        // JSON of the wrong shape: a wrong type, a missing field, an unknown (misspelt) field.
        for bad in [json!({"username": 5}), json!({}), json!({"username": "ann", "displayname": "Ann"})] {
            let reply = app.post("/api/register/start", &bad).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(reply.problem(), "invalid-body", "{}", reply.text);
        }
        let syntax = app.send(&app.client, reqwest::Method::POST, "/api/register/start", None, &[("content-type", "application/json")]).await;
        assert_eq!(syntax.status, StatusCode::BAD_REQUEST, "an empty body is not JSON: {}", syntax.text);
        assert_eq!(syntax.problem(), "malformed-json");
        let ok = app.post("/api/register/start", &json!({"username": "é".repeat(64)})).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(app.count("users").await, 0);
    }

    async fn a_finished_ceremony_sent_again_is_refused_and_creates_nothing(app) {
        let options = app.post("/api/register/start", &json!({"username": "dave"})).await;
        let mut authenticator = SoftAuthenticator::new();
        let credential = authenticator.create(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        assert_eq!(app.post("/api/register/finish", &credential).await.status, StatusCode::CREATED);
        let again = app.post("/api/register/finish", &credential).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(again.problem(), "ceremony-not-found");
        assert_eq!(app.count("users").await, 1);
        assert_eq!(app.count("credentials").await, 1);
    }

    async fn ten_concurrent_finishes_of_one_registration_create_one_credential(app) {
        let options = app.post("/api/register/start", &json!({"username": "erin"})).await;
        let mut authenticator = SoftAuthenticator::new();
        let credential = authenticator.create(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let replies = futures::future::join_all((0..10).map(|_| app.post("/api/register/finish", &credential))).await;
        let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
        assert_eq!(created, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(reply.problem(), "ceremony-not-found");
        }
        assert_eq!(app.count("users").await, 1);
        assert_eq!(app.count("credentials").await, 1);
    }

    async fn a_credential_id_registered_to_another_user_is_a_conflict_and_the_owner_is_untouched(app) {
        let owner = app.register("frank").await;
        let other = new_client();
        let options = app.send(&other, reqwest::Method::POST, "/api/register/start", Some(&json!({"username": "mallory"})), &[]).await;
        let mut authenticator = SoftAuthenticator::new();
        let stolen_id = crate::helpers::unb64(&owner.credential_id);
        let tweaks = Tweaks { credential_id: Some(stolen_id), ..Tweaks::default() };
        let credential = authenticator.create(&options.body, ORIGIN, &tweaks).unwrap();
        let reply = app.send(&other, reqwest::Method::POST, "/api/register/finish", Some(&credential), &[]).await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert_eq!(reply.problem(), "credential-exists");
        assert_eq!(app.count("users").await, 1, "the would-be user is not created");
        let owner_id = app.scalar(&format!("SELECT COUNT(*) FROM credentials WHERE id = '{}' AND user_id = '{}'", owner.credential_id, owner.user_id)).await;
        assert_eq!(owner_id, 1);
    }

    async fn a_credential_id_registered_again_by_the_same_user_is_a_conflict(app) {
        let mut account = app.register("gina").await;
        let options = app.post("/api/me/passkeys/start", &json!({})).await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        let excluded = options.body["publicKey"]["excludeCredentials"].as_array().unwrap();
        assert_eq!(excluded[0]["id"], account.credential_id.as_str());
        // A misbehaving authenticator ignores excludeCredentials: the server still refuses.
        let mut rogue = SoftAuthenticator::new();
        let tweaks = Tweaks { credential_id: Some(crate::helpers::unb64(&account.credential_id)), ..Tweaks::default() };
        let credential = rogue.create(&options.body, ORIGIN, &tweaks).unwrap();
        let reply = app.post("/api/me/passkeys/finish", &credential).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
        assert_eq!(reply.problem(), "credential-exists");
        assert_eq!(app.count("credentials").await, 1);
        assert_eq!(app.login(&mut account).await.status, StatusCode::OK);
    }

    async fn a_credential_id_over_1023_bytes_is_refused(app) {
        let options = app.post("/api/register/start", &json!({"username": "hank"})).await;
        let mut authenticator = SoftAuthenticator::new();
        let tweaks = Tweaks { credential_id: Some(vec![7u8; 1024]), ..Tweaks::default() };
        let credential = authenticator.create(&options.body, ORIGIN, &tweaks).unwrap();
        let reply = app.post("/api/register/finish", &credential).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.problem(), "malformed-credential");
        assert_eq!(app.count("users").await, 0);
    }

    async fn a_second_passkey_can_be_added_and_signs_in(app) {
        let account = app.register("ivy").await;
        let options = app.post("/api/me/passkeys/start", &json!({})).await;
        let mut second = SoftAuthenticator::new();
        let credential = second.create(&options.body, ORIGIN, &Tweaks::default()).unwrap();
        let added = app.post("/api/me/passkeys/finish", &credential).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        let fresh = new_client();
        let reply = app.login_with(&fresh, Some("ivy"), &mut second, &Tweaks::default()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["user_id"], account.user_id.as_str());
    }
}
