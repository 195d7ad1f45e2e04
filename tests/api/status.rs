use latchkey_core::status_list::{self, Status};
use latchkey_core::{JwkSet, StatusRef};
use reqwest::StatusCode;
use serde_json::Value;

use crate::dpop::DeviceKey;
use crate::helpers::{Db, TestApp, ORIGIN};
use crate::on_both_databases;

fn status_ref(license: &str) -> StatusRef {
    let claims: Value =
        serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
    let list = &claims["status"]["status_list"];
    StatusRef {
        idx: list["idx"].as_u64().unwrap(),
        uri: list["uri"].as_str().unwrap().to_owned(),
    }
}

/// The bit of a license in the status list the service serves now (after it
/// has noticed changes), decoded by hand.
pub async fn bit_of(app: &TestApp, license: &str) -> Option<u8> {
    app.state.refresh_shared().await.unwrap();
    let status = status_ref(license);
    let path = status.uri.strip_prefix(ORIGIN).unwrap();
    let token = app.get(path).await.text;
    let claims: Value =
        serde_json::from_slice(&crate::helpers::unb64(token.split('.').nth(1).unwrap())).unwrap();
    let bits = status_list::decode_lst(claims["status_list"]["lst"].as_str().unwrap())?;
    bits.get((status.idx / 8) as usize)
        .map(|byte| (byte >> (status.idx % 8)) & 1)
}

pub async fn execute(app: &TestApp, sql: &str) {
    match app.db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
}

async fn jwks(app: &TestApp) -> JwkSet {
    JwkSet::from_json(app.get("/.well-known/jwks.json").await.text.as_bytes()).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

on_both_databases! {
    async fn the_status_list_is_a_signed_token_at_its_own_uri(app) {
        app.register("ana").await;
        let license = app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned();
        let status = status_ref(&license);
        let path = status.uri.strip_prefix(ORIGIN).unwrap().to_owned();
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/statuslist+jwt");
        assert_eq!(reply.headers["cache-control"], "public, max-age=300");
        let etag = reply.headers["etag"].to_str().unwrap().to_owned();
        let header: Value = serde_json::from_slice(&crate::helpers::unb64(reply.text.split('.').next().unwrap())).unwrap();
        assert_eq!(header["typ"], "statuslist+jwt");
        assert_eq!(header["alg"], "EdDSA");
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(reply.text.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["sub"], status.uri.as_str());
        assert_eq!(claims["ttl"], 300);
        assert_eq!(claims["status_list"]["bits"], 1);
        assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
        let cached = app.send(&app.client, reqwest::Method::GET, &path, None, &[("if-none-match", &etag)]).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        assert_eq!(app.get("/api/status-lists/999").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/api/status-lists/x").await.status, StatusCode::NOT_FOUND);
        assert_eq!(status_list::check(&status, &reply.text, &jwks(&app).await, now()), Status::Valid);
    }

    async fn a_revoked_index_reads_1_and_the_others_0(app) {
        app.register("ben").await;
        let mut licenses = Vec::new();
        for _ in 0..5 {
            licenses.push(app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned());
        }
        let revoked = &licenses[2];
        let jti: Value = serde_json::from_slice(&crate::helpers::unb64(revoked.split('.').nth(1).unwrap())).unwrap();
        execute(&app, &format!("UPDATE licenses SET revoked_at = 1 WHERE jti = '{}'", jti["jti"].as_str().unwrap())).await;
        execute(&app, "UPDATE status_lists SET version = version + 1").await;
        for (i, license) in licenses.iter().enumerate() {
            assert_eq!(bit_of(&app, license).await, Some(u8::from(i == 2)), "license {i}");
        }
        let token = app.get(status_ref(revoked).uri.strip_prefix(ORIGIN).unwrap()).await.text;
        let keys = jwks(&app).await;
        assert_eq!(status_list::check(&status_ref(revoked), &token, &keys, now()), Status::Revoked);
        assert_eq!(status_list::check(&status_ref(&licenses[0]), &token, &keys, now()), Status::Valid);
    }

    async fn the_verifier_answers_unknown_for_stale_foreign_forged_or_out_of_range_lists(app) {
        app.register("cy").await;
        let license = app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned();
        let status = status_ref(&license);
        let token = app.get(status.uri.strip_prefix(ORIGIN).unwrap()).await.text;
        let keys = jwks(&app).await;
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(token.split('.').nth(1).unwrap())).unwrap();
        let exp = claims["exp"].as_i64().unwrap();
        assert!(matches!(status_list::check(&status, &token, &keys, exp + 1), Status::Unknown(_)), "stale");
        let other = StatusRef { idx: status.idx, uri: format!("{ORIGIN}/api/status-lists/2") };
        assert!(matches!(status_list::check(&other, &token, &keys, now()), Status::Unknown(_)), "another list's token");
        let beyond = StatusRef { idx: 1 << 21, uri: status.uri.clone() };
        assert!(matches!(status_list::check(&beyond, &token, &keys, now()), Status::Unknown(_)), "index beyond the list");
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 6.., "AAAAAA");
        assert!(matches!(status_list::check(&status, &forged, &keys, now()), Status::Unknown(_)), "bad signature");
        assert!(matches!(status_list::check(&status, &license, &keys, now()), Status::Unknown(_)), "a license is not a status list");
    }

    async fn a_revoked_license_stays_revoked_in_the_list_after_it_expires(app) {
        app.register("dee").await;
        let license = app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned();
        let jti: Value = serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
        app.cli(&["admin", "revoke-license", jti["jti"].as_str().unwrap()]).await.unwrap();
        assert_eq!(bit_of(&app, &license).await, Some(1));
        execute(&app, &format!("UPDATE licenses SET expires_at = 1 WHERE jti = '{}'", jti["jti"].as_str().unwrap())).await;
        execute(&app, "UPDATE status_lists SET version = version + 1").await;
        assert_eq!(bit_of(&app, &license).await, Some(1));
    }
}

on_both_databases! {
    async fn instances_draw_disjoint_status_slots_and_a_full_list_rolls_over(app) {
        use latchkey::state::slots::SlotAllocator;
        let (a, b) = (SlotAllocator::default(), SlotAllocator::default());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..300 {
            assert!(seen.insert(a.next(&app.state.store).await.unwrap()));
            assert!(seen.insert(b.next(&app.state.store).await.unwrap()));
        }
        // Fill list 1 but for less than a block: the next block comes from list 2, index 0.
        execute(&app, "UPDATE status_lists SET next_idx = capacity - 100 WHERE id = 1").await;
        let fresh = SlotAllocator::default();
        assert_eq!(fresh.next(&app.state.store).await.unwrap(), (2, 0));
        assert_eq!(fresh.next(&app.state.store).await.unwrap(), (2, 1));
        assert_eq!(app.count("status_lists").await, 2);
    }
}
