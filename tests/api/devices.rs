//! Devices: each device key a user's licenses are bound to is recorded at its
//! first mint, listed with its licenses, renamed, and removed (which revokes
//! its licenses) by its user or an administrator.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::apikeys::{admin, create_key, with_key};
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, Reply, TestApp, ORIGIN};
use crate::on_both_databases;

const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36";

/// Mints a license for `device` on `client`'s session, from a browser saying `user_agent`.
async fn mint_from(
    app: &TestApp,
    client: &reqwest::Client,
    device: &DeviceKey,
    user_agent: &str,
) -> Reply {
    let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    let reply = app
        .send(
            client,
            Method::POST,
            "/api/licenses",
            None,
            &[("dpop", &proof), ("user-agent", user_agent)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply
}

async fn devices(app: &TestApp, client: &reqwest::Client) -> Vec<Value> {
    let me = app.send(client, Method::GET, "/api/me", None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    me.body["devices"].as_array().unwrap().clone()
}

fn find<'a>(list: &'a [Value], device: &DeviceKey) -> &'a Value {
    let id = device.thumbprint();
    list.iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {list:?}"))
}

on_both_databases! {
    async fn devices_are_recorded_at_their_first_mint_listed_renamed_and_removed_with_their_licenses(app) {
        let phone = new_client();
        let alice = app.register_with(&phone, "alice", Default::default()).await;
        let (a, b) = (DeviceKey::ed25519(), DeviceKey::es256());
        mint_from(&app, &phone, &a, ANDROID).await;
        mint_from(&app, &phone, &a, "curl/8").await;
        mint_from(&app, &phone, &b, "curl/8").await;
        let list = devices(&app, &phone).await;
        assert_eq!(list.len(), 2, "a known device is recorded once: {list:?}");
        assert_eq!(find(&list, &a)["name"], "Chrome on Android", "named at its first mint");
        assert_eq!(find(&list, &a)["active_licenses"], 2);
        assert_eq!(find(&list, &b)["name"], "Device");
        assert_eq!(find(&list, &b)["active_licenses"], 1);
        assert!(find(&list, &a)["first_seen"].as_str() <= find(&list, &a)["last_sync"].as_str());

        let path_b = format!("/api/me/devices/{}", b.thumbprint());
        let renamed = app.send(&phone, Method::PATCH, &path_b, Some(&json!({"name": " Work laptop "})), &[]).await;
        assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
        assert_eq!(find(&devices(&app, &phone).await, &b)["name"], "Work laptop");
        let empty = app.send(&phone, Method::PATCH, &path_b, Some(&json!({"name": "  "})), &[]).await;
        assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
        let unknown = app.send(&phone, Method::PATCH, "/api/me/devices/nope", Some(&json!({"name": "x"})), &[]).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.problem(), "no-such-device");

        // A second sign-in (another browser) mints for b only.
        let laptop = new_client();
        let mut alice = alice;
        let signed_in = app.login_with(&laptop, Some("alice"), &mut alice.authenticator, &Default::default()).await;
        assert_eq!(signed_in.status, StatusCode::OK);
        mint_from(&app, &laptop, &b, "curl/8").await;

        // Someone else cannot remove it.
        let bob = new_client();
        app.register_with(&bob, "bob", Default::default()).await;
        let path_a = format!("/api/me/devices/{}", a.thumbprint());
        assert_eq!(app.send(&bob, Method::DELETE, &path_a, None, &[]).await.status, StatusCode::NOT_FOUND);

        let removed = app.send(&phone, Method::DELETE, &path_a, None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM licenses WHERE device_jkt = '{}' AND revoked_reason = 'device removed'", a.thumbprint())).await, 2);
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM licenses WHERE device_jkt = '{}' AND revoked_at IS NULL", b.thumbprint())).await, 2, "other devices keep theirs");
        // The sign-in that minted for it ended (it was also this one's: the phone minted for a).
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED);
        let list = devices(&app, &laptop).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], b.thumbprint().as_str());
        assert_eq!(list[0]["active_licenses"], 2);
        assert_eq!(app.send(&laptop, Method::DELETE, &path_a, None, &[]).await.status, StatusCode::NOT_FOUND, "once");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE event = 'device.removed' AND target_user_id = '{}'", alice.user_id)).await, 1);

        // Minting again (after signing in again) brings it back, as the same device.
        mint_from(&app, &laptop, &a, ANDROID).await;
        let list = devices(&app, &laptop).await;
        assert_eq!(list.len(), 2);
        assert_eq!(find(&list, &a)["name"], "Chrome on Android");
        assert_eq!(find(&list, &a)["active_licenses"], 1);
    }

    async fn administrators_and_keys_see_and_remove_a_users_devices(app) {
        admin(&app).await;
        let phone = new_client();
        let alice = app.register_with(&phone, "alice", Default::default()).await;
        let (a, b) = (DeviceKey::ed25519(), DeviceKey::ed25519());
        mint_from(&app, &phone, &a, ANDROID).await;
        mint_from(&app, &phone, &b, ANDROID).await;
        let detail = app.get(&format!("/api/admin/users/{}", alice.user_id)).await;
        assert_eq!(detail.body["devices"].as_array().unwrap().len(), 2, "{}", detail.text);
        let removed = app.send(&app.client, Method::DELETE, &format!("/api/admin/users/{}/devices/{}", alice.user_id, a.thumbprint()), None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        let (_, reader) = create_key(&app, "reader", &["users:read"]).await;
        let path_b = format!("/api/admin/users/{}/devices/{}", alice.user_id, b.thumbprint());
        let refused = with_key(&app, &reader, Method::DELETE, &path_b, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let (_, revoker) = create_key(&app, "revoker", &["licenses:revoke"]).await;
        assert_eq!(with_key(&app, &revoker, Method::DELETE, &path_b, None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(with_key(&app, &revoker, Method::DELETE, &path_b, None).await.status, StatusCode::NOT_FOUND);
        let detail = app.get(&format!("/api/admin/users/{}", alice.user_id)).await;
        assert_eq!(detail.body["devices"], json!([]));
        assert_eq!(app.send(&phone, Method::GET, "/api/me", None, &[]).await.status, StatusCode::UNAUTHORIZED, "its sign-in ended");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM licenses WHERE revoked_at IS NULL").await, 0);
        let audit = app.get("/api/admin/audit?event=device.removed").await;
        assert_eq!(audit.body["events"].as_array().unwrap().len(), 2);
    }
}

/// Registers `name` on a new client with `premium` granted by the CLI (`extra` flags).
async fn premium(app: &TestApp, name: &str, extra: &[&str]) -> reqwest::Client {
    let client = new_client();
    app.register_with(&client, name, Default::default()).await;
    let mut args = vec!["admin", "grant", name, "premium"];
    args.extend_from_slice(extra);
    app.cli(&args).await.unwrap();
    client
}

/// Mints with a fresh proof; the reply, whatever it is.
async fn try_mint(app: &TestApp, client: &reqwest::Client, device: &DeviceKey) -> Reply {
    let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses"), None, None);
    app.send(
        client,
        Method::POST,
        "/api/licenses",
        None,
        &[("dpop", &proof)],
    )
    .await
}

on_both_databases! {
    async fn a_new_device_beyond_the_limit_gets_a_409_listing_the_active_ones_and_a_known_one_never_counts_twice(app) {
        let client = premium(&app, "alice", &["--max-devices", "2"]).await;
        let (a, b, c) = (DeviceKey::ed25519(), DeviceKey::es256(), DeviceKey::ed25519());
        for device in [&a, &b, &a, &b, &a] {
            assert_eq!(try_mint(&app, &client, device).await.status, StatusCode::CREATED);
        }
        let refused = try_mint(&app, &client, &c).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        assert_eq!(refused.problem(), "device-limit");
        let mut listed: Vec<&str> = refused.body["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        listed.sort_unstable();
        let mut expected = [a.thumbprint(), b.thumbprint()];
        expected.sort();
        assert_eq!(listed, expected.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM licenses WHERE device_jkt = '{}'", c.thumbprint())).await, 0, "nothing half-written");
        assert_eq!(app.count("devices").await, 2);

        let removed = app.send(&client, Method::DELETE, &format!("/api/me/devices/{}", b.thumbprint()), None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        // Removing b ended the sign-in that minted for it (this one): sign in again.
        assert_eq!(try_mint(&app, &client, &c).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn removing_a_device_makes_room_for_a_new_one(app) {
        let phone = new_client();
        let mut alice = app.register_with(&phone, "alice", Default::default()).await;
        app.cli(&["admin", "grant", "alice", "premium", "--max-devices", "1"]).await.unwrap();
        let (a, b) = (DeviceKey::ed25519(), DeviceKey::ed25519());
        assert_eq!(try_mint(&app, &phone, &a).await.status, StatusCode::CREATED);
        let laptop = new_client();
        let signed_in = app.login_with(&laptop, Some("alice"), &mut alice.authenticator, &Default::default()).await;
        assert_eq!(signed_in.status, StatusCode::OK);
        assert_eq!(try_mint(&app, &laptop, &b).await.status, StatusCode::CONFLICT);
        let removed = app.send(&laptop, Method::DELETE, &format!("/api/me/devices/{}", a.thumbprint()), None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        assert_eq!(try_mint(&app, &laptop, &b).await.status, StatusCode::CREATED);
        // The phone's sign-in ended with its device; signed in again, it is the new device over the limit.
        assert_eq!(try_mint(&app, &phone, &a).await.status, StatusCode::UNAUTHORIZED);
        let again = app.login_with(&phone, Some("alice"), &mut alice.authenticator, &Default::default()).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(try_mint(&app, &phone, &a).await.problem(), "device-limit");
    }

    async fn two_new_devices_minting_at_once_never_exceed_the_limit(app) {
        let client = premium(&app, "alice", &["--max-devices", "1"]).await;
        let devices: Vec<DeviceKey> = (0..6).map(|i| if i % 2 == 0 { DeviceKey::ed25519() } else { DeviceKey::es256() }).collect();
        let replies = futures::future::join_all(devices.iter().map(|d| try_mint(&app, &client, d))).await;
        let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
        let refused = replies.iter().filter(|r| r.status == StatusCode::CONFLICT && r.problem() == "device-limit").count();
        assert_eq!((created, refused), (1, 5), "{:?}", replies.iter().map(|r| &r.text).collect::<Vec<_>>());
        assert_eq!(app.scalar("SELECT COUNT(*) FROM devices WHERE removed_at IS NULL").await, 1);
        assert_eq!(app.count("licenses").await, 1);
    }

    async fn a_stolen_session_cannot_remove_devices_without_a_step_up(app) {
        let client = new_client();
        let alice = app.register_with(&client, "alice", Default::default()).await;
        let key = DeviceKey::ed25519();
        assert_eq!(try_mint(&app, &client, &key).await.status, StatusCode::CREATED);
        // The session looks signed in an hour ago, as a week-old stolen cookie would.
        crate::takeover::stale(&app, &client).await;
        let path = format!("/api/me/devices/{}", key.thumbprint());
        let refused = app.send(&client, Method::DELETE, &path, None, &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
        assert_eq!(refused.problem(), "step-up-required");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM devices WHERE removed_at IS NULL").await, 1, "nothing removed");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM licenses WHERE revoked_at IS NULL").await, 1);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'device.removed'").await, 0);
        // With a passkey confirmation the same removal goes ahead.
        let mut alice = alice;
        let confirmed = app.step_up(&client, &mut alice.authenticator).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
        let removed = app.send(&client, Method::DELETE, &path, None, &[]).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    }

    async fn a_user_removes_at_most_the_allowed_devices_in_30_days_an_administrator_more(app) {
        admin(&app).await;
        let phone = new_client();
        let alice = app.register_with(&phone, "alice", Default::default()).await;
        let mut alice = alice;
        let keys: Vec<DeviceKey> = (0..5).map(|_| DeviceKey::ed25519()).collect();
        for (i, key) in keys.iter().enumerate() {
            // Each removal ends the sign-in that minted: one sign-in per device.
            let client = if i == 0 { phone.clone() } else { new_client() };
            if i > 0 {
                let signed_in = app.login_with(&client, Some("alice"), &mut alice.authenticator, &Default::default()).await;
                assert_eq!(signed_in.status, StatusCode::OK);
            }
            assert_eq!(try_mint(&app, &client, key).await.status, StatusCode::CREATED);
        }
        let remover = new_client();
        assert_eq!(app.login_with(&remover, Some("alice"), &mut alice.authenticator, &Default::default()).await.status, StatusCode::OK);
        for key in &keys[..3] {
            let removed = app.send(&remover, Method::DELETE, &format!("/api/me/devices/{}", key.thumbprint()), None, &[]).await;
            assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        }
        let fourth = app.send(&remover, Method::DELETE, &format!("/api/me/devices/{}", keys[3].thumbprint()), None, &[]).await;
        assert_eq!(fourth.status, StatusCode::CONFLICT, "{}", fourth.text);
        assert_eq!(fourth.problem(), "device-removals-exhausted");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM devices WHERE removed_at IS NULL").await, 2, "nothing removed");
        let by_admin = app.send(&app.client, Method::DELETE, &format!("/api/admin/users/{}/devices/{}", alice.user_id, keys[3].thumbprint()), None, &[]).await;
        assert_eq!(by_admin.status, StatusCode::NO_CONTENT, "administrators are not limited");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'device.removed'").await, 4);
    }
}

crate::on_both_databases_with! {
    &["--max-devices", "1"];

    async fn the_default_limit_is_latchkey_max_devices_and_a_grant_can_raise_it(app) {
        admin(&app).await;
        let client = new_client();
        let alice = app.register_with(&client, "alice", Default::default()).await;
        // No entitlement, nothing to share: no limit.
        let (a, b) = (DeviceKey::ed25519(), DeviceKey::ed25519());
        assert_eq!(try_mint(&app, &client, &a).await.status, StatusCode::CREATED);
        assert_eq!(try_mint(&app, &client, &b).await.status, StatusCode::CREATED);
        app.cli(&["admin", "grant", "alice", "premium"]).await.unwrap();
        let c = DeviceKey::ed25519();
        let refused = try_mint(&app, &client, &c).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        assert_eq!(refused.body["devices"].as_array().unwrap().len(), 2);
        let granted = app.post(&format!("/api/admin/users/{}/entitlements", alice.user_id), &json!({"name": "premium", "max_devices": 3})).await;
        assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
        assert_eq!(granted.body["max_devices"], 3);
        assert_eq!(try_mint(&app, &client, &c).await.status, StatusCode::CREATED);
        let bad = app.post(&format!("/api/admin/users/{}/entitlements", alice.user_id), &json!({"name": "premium", "max_devices": 0})).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(bad.problem(), "invalid-max-devices");
    }
}
