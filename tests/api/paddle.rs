//! Paddle Billing through the same core: real-shaped notifications signed
//! `ts=…;h1=…` over "{ts}:{body}".

use reqwest::StatusCode;

use crate::billing::{deliver, fixture, hmac_hex, now};
use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_with, Db, Reply, TestApp};
use crate::on_both_databases;

const OLD: &str = "pdl_ntfset_01hv8x0gqdx4vd3s5jmptprzpx_previous";
const NEW: &str = "pdl_ntfset_01hv8x0gqdx4vd3s5jmptprzpx_current";

async fn paddle_app(db: Db) -> TestApp {
    let secrets = format!("{OLD},{NEW}");
    spawn_app_with(
        db,
        &[
            "--paddle-webhook-secret",
            &secrets,
            "--paddle-entitlements",
            "pro_01gsz4t5hdjse780zja8vvr7jg=premium",
            "--billing-grace",
            "2d",
        ],
    )
    .await
}

async fn paddle(app: &TestApp, body: &str, secrets: &[&str], ts: i64) -> Reply {
    let mut header = format!("ts={ts}");
    for secret in secrets {
        header.push_str(&format!(
            ";h1={}",
            hmac_hex(secret, &format!("{ts}:{body}"))
        ));
    }
    deliver(
        app,
        "/api/webhooks/paddle",
        ("paddle-signature", &header),
        body,
    )
    .await
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn transaction(event: &str, user: &str, t: i64) -> String {
    fixture(
        "paddle/transaction.completed.json",
        &[
            ("EVENT_ID", event.into()),
            ("OCCURRED_AT", rfc3339(t)),
            ("USER_ID", user.into()),
            ("PERIOD_START", rfc3339(t)),
            ("PERIOD_END", rfc3339(t + 30 * 86_400)),
        ],
    )
}

fn subscription(
    event: &str,
    kind: &str,
    status: &str,
    user: &str,
    updated: i64,
    period_end: Option<i64>,
) -> String {
    let period = period_end.map_or("null".to_owned(), |end| {
        format!(
            "{{\"starts_at\": \"{}\", \"ends_at\": \"{}\"}}",
            rfc3339(end - 30 * 86_400),
            rfc3339(end)
        )
    });
    fixture(
        "paddle/subscription.json",
        &[
            ("EVENT_ID", event.into()),
            ("TYPE", format!("subscription.{kind}")),
            ("STATUS", status.into()),
            ("USER_ID", user.into()),
            (
                "UPDATED_AT",
                format!("{}.{:06}Z", &rfc3339(updated)[..19], 123_456),
            ),
            (
                "NEXT_BILLED_AT",
                period_end.map_or("null".into(), |e| format!("\"{}\"", rfc3339(e))),
            ),
            (
                "CANCELED_AT",
                if status == "canceled" {
                    format!("\"{}\"", rfc3339(updated))
                } else {
                    "null".into()
                },
            ),
            ("CURRENT_BILLING_PERIOD", period),
        ],
    )
}

async fn outcome(reply: Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["outcome"].as_str().unwrap().to_owned()
}

on_both_databases! {
    async fn a_paddle_purchase_grants_premium_and_a_cancellation_revokes_it(app) {
        let app = paddle_app(app.db).await;
        let client = new_client();
        let alice = app.register_with(&client, "alice", Default::default()).await;
        let t = now();
        let end = t + 30 * 86_400;
        let created = subscription("evt_01hv8x2a4t4pr3vb3xezh4phkq", "created", "active", &alice.user_id, t, Some(end));
        assert_eq!(outcome(paddle(&app, &created, &[NEW], t).await).await, "applied");
        assert_eq!(outcome(paddle(&app, &transaction("evt_01hv8x2a8kkgwbvbyf10dm04tt", &alice.user_id, t), &[NEW], t).await).await, "linked");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE external_id = 'ctm_01hv6y1jedq4p1n0yqn5ba3ky4'").await, 1);
        let expiry = app.scalar(&format!("SELECT expires_at FROM entitlements WHERE user_id = '{}' AND name = 'premium'", alice.user_id)).await;
        assert_eq!(expiry, end + 2 * 86_400);
        let device = DeviceKey::ed25519();
        let license = app.mint(&client, &device).await.body["license"].as_str().unwrap().to_owned();
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK);

        // Rotation: a header with an h1 for each secret, or only the old one, verifies.
        let updated = subscription("evt_01hv8x2a4t4pr3vb3xezh4phk2", "updated", "active", &alice.user_id, t + 1, Some(end));
        assert_eq!(outcome(paddle(&app, &updated, &[OLD, NEW], t).await).await, "applied");
        let forged = paddle(&app, &subscription("evt_forged", "canceled", "canceled", &alice.user_id, t + 2, None), &["pdl_ntfset_wrong"], t).await;
        assert_eq!(forged.status, StatusCode::BAD_REQUEST);
        assert_eq!(forged.problem(), "invalid-signature");
        let canceled = subscription("evt_01hv8x2a4t4pr3vb3xezh4phk3", "canceled", "canceled", &alice.user_id, t + 3, None);
        let stale = paddle(&app, &canceled, &[NEW], t - 400).await;
        assert_eq!(stale.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK, "forged and stale changed nothing");

        assert_eq!(outcome(paddle(&app, &canceled, &[NEW], t).await).await, "applied");
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(crate::status::bit_of(&app, &license).await, Some(1));
        assert_eq!(outcome(paddle(&app, &canceled, &[NEW], t).await).await, "duplicate");
        // An older update delivered late does not revive it (its own updated_at is older).
        let late = subscription("evt_01hv8x2a4t4pr3vb3xezh4phk4", "updated", "active", &alice.user_id, t + 2, Some(end));
        assert_eq!(outcome(paddle(&app, &late, &[NEW], t).await).await, "stale: older than the state already applied");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM entitlements").await, 0);
    }
}
