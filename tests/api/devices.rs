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
