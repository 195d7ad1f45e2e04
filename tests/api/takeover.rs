//! A stolen session must never become a stolen account: step-up for
//! credential management, invariants that hold under races, exact entitlement
//! matching, and storage a client cannot grow without bound.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::account::age_session;
use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::helpers::{new_client, Account, TestApp, ORIGIN};

/// Makes `account`'s session on `client` look signed in an hour ago, as a
/// cookie stolen from a week-old session would be.
pub async fn stale(app: &TestApp, client: &reqwest::Client) {
    let me = app.send(client, Method::GET, "/api/me", None, &[]).await;
    let user = me.body["user_id"].as_str().unwrap().to_owned();
    let at = app
        .scalar(&format!(
            "SELECT MAX(authenticated_at) FROM sessions WHERE user_id = '{user}'"
        ))
        .await;
    age_session(app, at, 3600).await;
}

async fn two_passkeys(app: &TestApp, name: &str) -> (Account, SoftAuthenticator, reqwest::Client) {
    let client = new_client();
    let account = app
        .register_with(&client, name, SoftAuthenticator::new())
        .await;
    let mut second = SoftAuthenticator::new();
    let added = app.add_passkey(&client, &mut second).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    (account, second, client)
}

crate::on_both_databases! {
    async fn a_stolen_session_cannot_add_or_remove_passkeys_or_sign_out_everywhere(app) {
        let (mut account, _second, client) = two_passkeys(&app, "victim").await;
        stale(&app, &client).await;
        let mut attacker = SoftAuthenticator::new();
        let add = app.add_passkey(&client, &mut attacker).await;
        assert_eq!(add.status, StatusCode::UNAUTHORIZED, "{}", add.text);
        assert_eq!(add.problem(), "step-up-required");
        let path = format!("/api/me/passkeys/{}", account.credential_id);
        let remove = app.send(&client, Method::DELETE, &path, None, &[]).await;
        assert_eq!(remove.status, StatusCode::UNAUTHORIZED);
        assert_eq!(remove.problem(), "step-up-required");
        let everywhere = app.send(&client, Method::POST, "/api/logout/everywhere", None, &[]).await;
        assert_eq!(everywhere.status, StatusCode::UNAUTHORIZED);
        assert_eq!(everywhere.problem(), "step-up-required");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NULL").await, 2, "nothing changed");
        assert_eq!(app.send(&client, Method::GET, "/api/me", None, &[]).await.status, StatusCode::OK);
        // The attacker's own passkey cannot confirm: the step-up only takes the user's.
        let options = app.send(&client, Method::POST, "/api/me/step-up/start", None, &[]).await;
        assert!(attacker.get(&options.body, ORIGIN, &Tweaks::default()).is_err(), "not among the allowed credentials");
        // The user, with their own passkey, confirms and then may.
        let confirmed = app.step_up(&client, &mut account.authenticator).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
        let add = app.add_passkey(&client, &mut SoftAuthenticator::new()).await;
        assert_eq!(add.status, StatusCode::CREATED, "{}", add.text);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM credentials WHERE added_with_step_up").await, 3);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'signin.step_up'").await, 1);
    }

    async fn a_step_up_with_another_users_passkey_is_refused_and_confirms_nothing(app) {
        let (_account, _second, client) = two_passkeys(&app, "owner").await;
        let mut other = app.register_with(&new_client(), "other", SoftAuthenticator::new()).await;
        stale(&app, &client).await;
        let options = app.send(&client, Method::POST, "/api/me/step-up/start", None, &[]).await;
        // Answer with the other user's passkey against a challenge meant for the owner.
        let mut options = options.body;
        options["publicKey"]["allowCredentials"] = json!([]);
        let assertion = other.authenticator.get(&options, ORIGIN, &Tweaks::default()).unwrap();
        let reply = app.send(&client, Method::POST, "/api/me/step-up/finish", Some(&assertion), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "ceremony-failed");
        let everywhere = app.send(&client, Method::POST, "/api/logout/everywhere", None, &[]).await;
        assert_eq!(everywhere.problem(), "step-up-required");
    }

    async fn a_recently_added_passkey_without_a_step_up_does_not_renew_an_admins_confirmation(app) {
        let root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        let victim = app.register_with(&new_client(), "vic", SoftAuthenticator::new()).await;
        let mut late = SoftAuthenticator::new();
        assert_eq!(app.add_passkey(&app.client, &mut late).await.status, StatusCode::CREATED);
        // As a passkey added before step-ups existed would be.
        crate::status::execute(&app, "UPDATE credentials SET added_with_step_up = FALSE").await;
        let mut late_account = Account { user_id: root.user_id.clone(), username: "root".into(), credential_id: String::new(), authenticator: late };
        assert_eq!(app.login(&mut late_account).await.status, StatusCode::OK);
        let path = format!("/api/admin/users/{}/disable", victim.user_id);
        let refused = app.send(&app.client, Method::POST, &path, None, &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.problem(), "reauthentication-required");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL").await, 0);
        // Once it is older than the step-up window, it counts like any other.
        crate::status::execute(&app, "UPDATE credentials SET created_at = created_at - 3600").await;
        let allowed = app.send(&app.client, Method::POST, &path, None, &[]).await;
        assert_eq!(allowed.status, StatusCode::NO_CONTENT, "{}", allowed.text);
    }

    async fn two_concurrent_removals_of_a_users_two_passkeys_always_leave_one(app) {
        for round in 0..5 {
            let (account, second, client) = two_passkeys(&app, &format!("racer{round}")).await;
            let me = app.send(&client, Method::GET, "/api/me", None, &[]).await;
            let ids: Vec<String> = me.body["passkeys"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
            assert_eq!(ids.len(), 2);
            let (p0, p1) = (format!("/api/me/passkeys/{}", ids[0]), format!("/api/me/passkeys/{}", ids[1]));
            let (a, b) = futures::join!(
                app.send(&client, Method::DELETE, &p0, None, &[]),
                app.send(&client, Method::DELETE, &p1, None, &[]),
            );
            let statuses = [a.status, b.status];
            assert!(statuses.contains(&StatusCode::CONFLICT) || statuses.contains(&StatusCode::UNAUTHORIZED), "round {round}: {statuses:?}");
            let left = app.scalar(&format!("SELECT COUNT(*) FROM credentials WHERE user_id = '{}' AND revoked_at IS NULL", account.user_id)).await;
            assert_eq!(left, 1, "round {round}: {statuses:?}");
            let _ = second;
        }
    }

    async fn two_admins_disabling_each_other_at_once_always_leave_one_enabled_admin(app) {
        for round in 0..5 {
            let (a, b) = (new_client(), new_client());
            let alice = app.register_with(&a, &format!("alice{round}"), SoftAuthenticator::new()).await;
            let bob = app.register_with(&b, &format!("bob{round}"), SoftAuthenticator::new()).await;
            app.cli(&["admin", "promote", &alice.username]).await.unwrap();
            app.cli(&["admin", "promote", &bob.username]).await.unwrap();
            let (pb, pa) = (format!("/api/admin/users/{}/disable", bob.user_id), format!("/api/admin/users/{}/disable", alice.user_id));
            let (x, y) = futures::join!(
                app.send(&a, Method::POST, &pb, None, &[]),
                app.send(&b, Method::POST, &pa, None, &[]),
            );
            let enabled = app.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL").await;
            assert_eq!(enabled, 1, "round {round}: {} {}", x.status, y.status);
            let done = [x.status, y.status].iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
            assert_eq!(done, 1, "round {round}: {} {}", x.status, y.status);
            // The next round starts with no admin but its own two.
            crate::status::execute(&app, "UPDATE users SET role = 'user'").await;
        }
    }

    async fn removing_an_entitlement_named_with_like_wildcards_removes_and_revokes_nothing(app) {
        let member = app.register_with(&new_client(), "wild", SoftAuthenticator::new()).await;
        app.cli(&["admin", "grant", "wild", "premium"]).await.unwrap();
        app.cli(&["admin", "grant", "wild", "pro-x"]).await.unwrap();
        let member_client = new_client();
        let mut member = member;
        assert_eq!(app.login_with(&member_client, Some("wild"), &mut member.authenticator, &Tweaks::default()).await.status, StatusCode::OK);
        let device = crate::dpop::DeviceKey::ed25519();
        let minted = app.mint(&member_client, &device).await;
        let license = minted.body["license"].as_str().unwrap().to_owned();
        app.register("boss").await;
        app.cli(&["admin", "promote", "boss"]).await.unwrap();
        for name in ["%25", "_remium", "pro_x", "PREMIUM", "%25premium%25"] {
            let path = format!("/api/admin/users/{}/entitlements/{name}", member.user_id);
            let reply = app.send(&app.client, Method::DELETE, &path, None, &[]).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{name}: {}", reply.text);
            assert_eq!(reply.problem(), "no-such-entitlement");
        }
        for name in ["%", "_remium", "pro_x", "PREMIUM", "%premium%"] {
            let err = app.cli(&["admin", "revoke-entitlement", "wild", name]).await.unwrap_err();
            assert!(err.to_string().contains("does not have"), "{name}: {err}");
        }
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK, "the license still works");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM licenses WHERE revoked_at IS NOT NULL").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM entitlements").await, 2);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'entitlement.removed'").await, 0);
        app.cli(&["admin", "revoke-entitlement", "wild", "pro-x"]).await.unwrap();
        assert_eq!(app.scalar("SELECT COUNT(*) FROM licenses WHERE revoked_at IS NOT NULL").await, 1, "exactly the carrier of pro-x");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'entitlement.removed'").await, 1);
    }
}

crate::on_both_databases_with! {
    &["--admin-reauth-minutes", "0"];

    async fn with_reauth_every_time_one_sign_in_pays_for_one_destructive_action_only(app) {
        let mut root = app.register("root").await;
        app.cli(&["admin", "promote", "root"]).await.unwrap();
        for round in 0..5 {
            let x = app.register_with(&new_client(), &format!("x{round}"), SoftAuthenticator::new()).await;
            let y = app.register_with(&new_client(), &format!("y{round}"), SoftAuthenticator::new()).await;
            assert_eq!(app.login(&mut root).await.status, StatusCode::OK);
            let (px, py) = (format!("/api/admin/users/{}/disable", x.user_id), format!("/api/admin/users/{}/disable", y.user_id));
            let (a, b) = futures::join!(
                app.send(&app.client, Method::POST, &px, None, &[]),
                app.send(&app.client, Method::POST, &py, None, &[]),
            );
            let mut statuses = [a.status, b.status];
            statuses.sort();
            assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED], "round {round}");
            let refused = if a.status == StatusCode::UNAUTHORIZED { &a } else { &b };
            assert_eq!(refused.problem(), "reauthentication-required");
            assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL AND username IN ('x{round}', 'y{round}')")).await, 1);
        }
    }
}

crate::on_both_databases_with! {
    &["--step-up-minutes", "0"];

    async fn with_step_up_every_time_each_change_needs_a_confirmation_of_its_own(app) {
        let (mut account, _second, client) = two_passkeys_after_step_up(&app).await;
        // The sign-in itself confirmed once: spent by the passkey added above.
        let again = app.add_passkey(&client, &mut SoftAuthenticator::new()).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text);
        assert_eq!(again.problem(), "step-up-required");
        assert_eq!(app.step_up(&client, &mut account.authenticator).await.status, StatusCode::OK);
        let path = format!("/api/me/passkeys/{}", account.credential_id);
        let (first, second) = futures::join!(
            app.send(&client, Method::DELETE, &path, None, &[]),
            app.send(&client, Method::POST, "/api/logout/everywhere", None, &[]),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED], "one confirmation, one change");
    }
}

/// A user with two passkeys whose sign-in confirmation was spent adding the second.
async fn two_passkeys_after_step_up(
    app: &TestApp,
) -> (Account, SoftAuthenticator, reqwest::Client) {
    two_passkeys(app, "spender").await
}
