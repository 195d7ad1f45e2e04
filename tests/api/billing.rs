//! Payment webhooks with real-shaped Stripe and Paddle payloads (tests/fixtures),
//! signed as the providers sign them: purchases grant, cancellations revoke
//! (online and in the status list), and replayed, reordered, tampered, stale
//! or forged events change nothing.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_with, Db, Reply, TestApp};
use crate::on_both_databases;

const PRICE: &str = "price_1MowQULkdIwHu7ixraBm864M";
const CUSTOMER: &str = "cus_NffrFeUfNV2Hib";
const DAY: i64 = 86_400;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fixture with its `__TOKEN__`s filled in.
pub fn fixture(path: &str, fill: &[(&str, String)]) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    let mut text = std::fs::read_to_string(&file).unwrap();
    for (token, value) in fill {
        text = text.replace(&format!("__{token}__"), value);
    }
    assert!(
        !text.contains("\"__") && !text.contains(": __"),
        "unfilled token in {path}: {text}"
    );
    serde_json::from_str::<Value>(&text).expect("fixture is JSON");
    text
}

pub fn hmac_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Posts a raw body as a provider does: no cookie, no Origin.
pub async fn deliver(app: &TestApp, path: &str, header: (&str, &str), body: &str) -> Reply {
    let response = reqwest::Client::new()
        .post(app.url(path))
        .header("content-type", "application/json")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .header(header.0, header.1)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

pub const STRIPE_OLD: &str = "whsec_test_previous0Yb3qX9";
pub const STRIPE_NEW: &str = "whsec_test_current7Hk2Lp4";

pub async fn stripe_app(db: Db) -> TestApp {
    let secrets = format!("{STRIPE_OLD},{STRIPE_NEW}");
    let map = format!("{PRICE}=premium");
    spawn_app_with(
        db,
        &[
            "--stripe-webhook-secret",
            &secrets,
            "--stripe-entitlements",
            &map,
            "--billing-grace",
            "1d",
        ],
    )
    .await
}

/// Sends a Stripe event signed with the current secret at the current time.
pub async fn stripe(app: &TestApp, body: &str) -> Reply {
    stripe_signed(app, body, STRIPE_NEW, now()).await
}

async fn stripe_signed(app: &TestApp, body: &str, secret: &str, t: i64) -> Reply {
    let header = format!("t={t},v1={}", hmac_hex(secret, &format!("{t}.{body}")));
    deliver(
        app,
        "/api/webhooks/stripe",
        ("stripe-signature", &header),
        body,
    )
    .await
}

pub fn checkout(event: &str, user: Option<&str>, created: i64) -> String {
    fixture(
        "stripe/checkout.session.completed.json",
        &[
            ("EVENT_ID", event.into()),
            ("CREATED", created.to_string()),
            (
                "CLIENT_REFERENCE_ID",
                user.map_or("null".into(), |u| format!("\"{u}\"")),
            ),
            ("EMAIL", "alice@example.com".into()),
        ],
    )
}

pub fn subscription(
    event: &str,
    kind: &str,
    status: &str,
    created: i64,
    period_end: i64,
) -> String {
    subscription_in(
        "stripe/customer.subscription.json",
        event,
        kind,
        status,
        created,
        period_end,
        "{}",
    )
}

fn subscription_in(
    file: &str,
    event: &str,
    kind: &str,
    status: &str,
    created: i64,
    period_end: i64,
    metadata: &str,
) -> String {
    fixture(
        file,
        &[
            ("EVENT_ID", event.into()),
            ("TYPE", format!("customer.subscription.{kind}")),
            ("STATUS", status.into()),
            ("CREATED", created.to_string()),
            ("PERIOD_START", (period_end - 30 * DAY).to_string()),
            ("PERIOD_END", period_end.to_string()),
            ("METADATA", metadata.into()),
        ],
    )
}

fn invoice(event: &str, paid: bool, created: i64, period_end: i64) -> String {
    fixture(
        "stripe/invoice.json",
        &[
            ("EVENT_ID", event.into()),
            (
                "TYPE",
                if paid {
                    "invoice.paid"
                } else {
                    "invoice.payment_failed"
                }
                .into(),
            ),
            ("CREATED", created.to_string()),
            ("PERIOD_START", (period_end - 30 * DAY).to_string()),
            ("PERIOD_END", period_end.to_string()),
            ("AMOUNT_PAID", if paid { "1000" } else { "0" }.into()),
            ("INVOICE_STATUS", if paid { "paid" } else { "open" }.into()),
        ],
    )
}

async fn premium_expiry(app: &TestApp, user: &str) -> Option<i64> {
    let n = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM entitlements WHERE user_id = '{user}' AND name = 'premium'"
        ))
        .await;
    (n == 1).then_some(())?;
    Some(app.scalar(&format!("SELECT COALESCE(expires_at, -1) FROM entitlements WHERE user_id = '{user}' AND name = 'premium'")).await)
}

fn outcome(reply: &Reply) -> &str {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["outcome"].as_str().unwrap()
}

/// Everything a refused event could have touched.
async fn footprint(app: &TestApp) -> [i64; 5] {
    [
        app.count("entitlements").await,
        app.count("subscriptions").await,
        app.count("billing_events").await,
        app.scalar("SELECT COUNT(*) FROM licenses WHERE revoked_at IS NOT NULL")
            .await,
        app.scalar("SELECT COUNT(*) FROM users WHERE external_id IS NOT NULL")
            .await,
    ]
}

on_both_databases! {
    async fn a_stripe_purchase_grants_premium_and_a_cancellation_revokes_the_license(app) {
        let app = stripe_app(app.db).await;
        let client = new_client();
        let alice = app.register_with(&client, "alice", Default::default()).await;
        let t = now();
        assert_eq!(outcome(&stripe(&app, &checkout("evt_checkout", Some(&alice.user_id), t)).await), "linked");
        let user = app.get(&format!("/api/admin/users?external_id={CUSTOMER}")).await;
        assert_eq!(user.status, StatusCode::UNAUTHORIZED, "the admin API still needs an admin");
        assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM users WHERE external_id = '{CUSTOMER}' AND id = '{}'", alice.user_id)).await, 1,
            "the Stripe customer is remembered as the external id");
        let period_end = t + 30 * DAY;
        assert_eq!(outcome(&stripe(&app, &subscription("evt_created", "created", "active", t + 1, period_end)).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(period_end + DAY), "until the period's end plus the grace");
        let device = DeviceKey::ed25519();
        let minted = app.mint(&client, &device).await;
        assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text);
        let license = minted.body["license"].as_str().unwrap().to_owned();
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(license.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["ent"], serde_json::json!(["premium"]));
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::OK);
        assert_eq!(crate::status::bit_of(&app, &license).await, Some(0));

        assert_eq!(outcome(&stripe(&app, &subscription("evt_deleted", "deleted", "canceled", t + 2, period_end)).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, None);
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(crate::status::bit_of(&app, &license).await, Some(1), "offline apps learn it from the status list");
        let audit = app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'entitlement.removed' AND detail LIKE 'stripe evt_deleted%'").await;
        assert_eq!(audit, 1);
    }

    async fn replayed_reordered_tampered_stale_and_forged_stripe_events_change_nothing(app) {
        let app = stripe_app(app.db).await;
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        let t = now();
        let period_end = t + 30 * DAY;
        // The subscription's state may come before the checkout that names its user.
        assert_eq!(outcome(&stripe(&app, &subscription("evt_early", "created", "active", t, period_end)).await),
            "stored: waiting for the checkout that names its user");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, None);
        let paid = checkout("evt_checkout", Some(&alice.user_id), t + 1);
        assert_eq!(outcome(&stripe(&app, &paid).await), "linked");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(period_end + DAY));

        // Replayed: acknowledged, no effect.
        let audit = app.count("audit_log").await;
        let before = footprint(&app).await;
        assert_eq!(outcome(&stripe(&app, &paid).await), "duplicate");
        assert_eq!(outcome(&stripe(&app, &subscription("evt_early", "created", "active", t, period_end)).await), "duplicate");
        assert_eq!(footprint(&app).await, before);
        assert_eq!(app.count("audit_log").await, audit);

        // Tampered, stale, unsigned, signed with an unknown secret: 400, an audit row each, nothing else.
        let cancel = subscription("evt_cancel", "deleted", "canceled", t + 5, period_end);
        let header = format!("t={t},v1={}", hmac_hex(STRIPE_NEW, &format!("{t}.{cancel}")));
        let tampered = cancel.replace("canceled", "cancelled");
        let stale_t = t - 301;
        let stale = format!("t={stale_t},v1={}", hmac_hex(STRIPE_NEW, &format!("{stale_t}.{cancel}")));
        let foreign = format!("t={t},v1={}", hmac_hex("whsec_someone_else", &format!("{t}.{cancel}")));
        for (header, body) in [(header.as_str(), tampered.as_str()), (stale.as_str(), cancel.as_str()), ("", cancel.as_str()), (foreign.as_str(), cancel.as_str())] {
            let reply = deliver(&app, "/api/webhooks/stripe", ("stripe-signature", header), body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{header}");
            assert_eq!(reply.problem(), "invalid-signature");
        }
        assert_eq!(footprint(&app).await, before);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'billing.rejected'").await, 4);
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(period_end + DAY));

        // Reordered: the cancellation (newer) arrives before an update (older): the update is stale.
        assert_eq!(outcome(&stripe(&app, &cancel).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, None);
        let late = subscription("evt_late_update", "updated", "active", t + 3, period_end);
        assert_eq!(outcome(&stripe(&app, &late).await), "stale: older than the state already applied");
        let late_invoice = invoice("evt_late_invoice", true, t + 4, period_end + 30 * DAY);
        assert_eq!(outcome(&stripe(&app, &late_invoice).await), "stale: the subscription has ended");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, None, "a canceled subscription stays canceled");
        // The secret being rotated out still verifies.
        let old = customer_created("evt_rotation");
        assert_eq!(outcome(&stripe_signed(&app, &old, STRIPE_OLD, now()).await), "ignored: not an event this service acts on");
    }

    async fn past_due_keeps_premium_until_the_grace_ends_and_a_paid_invoice_extends_it(app) {
        let app = stripe_app(app.db).await;
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        let t = now();
        let first_end = t + 30 * DAY;
        stripe(&app, &checkout("evt_c", Some(&alice.user_id), t)).await;
        stripe(&app, &subscription("evt_s", "created", "active", t, first_end)).await;
        assert_eq!(outcome(&stripe(&app, &invoice("evt_failed", false, t + 10, first_end)).await), "applied");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM subscriptions WHERE status = 'past_due'").await, 1);
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(first_end + DAY), "kept, not extended");
        let past_due = subscription("evt_pd", "updated", "past_due", t + 11, first_end);
        assert_eq!(outcome(&stripe(&app, &past_due).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(first_end + DAY));
        let second_end = first_end + 30 * DAY;
        assert_eq!(outcome(&stripe(&app, &invoice("evt_paid", true, t + 20, second_end)).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(second_end + DAY));
        assert_eq!(app.scalar("SELECT COUNT(*) FROM subscriptions WHERE status = 'active'").await, 1);
        // `unpaid` ends it.
        let unpaid = subscription("evt_unpaid", "updated", "unpaid", t + 30, second_end);
        assert_eq!(outcome(&stripe(&app, &unpaid).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, None);
    }

    async fn older_stripe_api_versions_and_metadata_map_a_subscription_but_an_email_never_does(app) {
        let app = stripe_app(app.db).await;
        let alice = app.register_with(&new_client(), "alice", Default::default()).await;
        let t = now();
        // A checkout naming nobody (only an e-mail address) grants nothing.
        assert_eq!(outcome(&stripe(&app, &checkout("evt_anon", None, t)).await), "ignored: the checkout names no user of this service");
        let end = t + 30 * DAY;
        let old_shape = subscription_in("stripe/customer.subscription.2024-06-20.json", "evt_old", "created", "trialing", t, end,
            &format!("{{\"latchkey_user_id\": \"{}\"}}", alice.user_id));
        assert_eq!(outcome(&stripe(&app, &old_shape).await), "applied");
        assert_eq!(premium_expiry(&app, &alice.user_id).await, Some(end + DAY), "the period from the subscription itself");
        let unknown = customer_created("evt_unknown");
        assert_eq!(outcome(&stripe(&app, &unknown).await), "ignored: not an event this service acts on");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_events WHERE event_type = 'customer.created'").await, 1);
    }

    async fn webhooks_of_a_provider_that_is_not_set_up_are_refused(app) {
        let body = checkout("evt_x", Some("nobody"), now());
        let reply = stripe(&app, &body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.problem(), "billing-not-configured");
        assert_eq!(app.count("billing_events").await, 0);
    }
}

fn customer_created(event: &str) -> String {
    fixture(
        "stripe/customer.created.json",
        &[("EVENT_ID", event.into()), ("CREATED", now().to_string())],
    )
}

/// The README's "Selling premium" walk-through as written: its settings (as
/// flags), its endpoint, the Checkout fields its server code sets, and what
/// the user then gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_selling_premium_walk_through_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Selling premium")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut flags = Vec::new();
    let mut secret = String::new();
    for line in section.lines().map(str::trim) {
        if let Some((name, value)) = line
            .strip_prefix("export LATCHKEY_")
            .and_then(|l| l.split_once('='))
        {
            flags.push(format!("--{}", name.to_lowercase().replace('_', "-")));
            flags.push(value.to_owned());
            if name == "STRIPE_WEBHOOK_SECRET" {
                secret = value.to_owned();
            }
        }
    }
    assert_eq!(flags.len(), 6, "{flags:?}");
    assert!(section.contains(&format!("{PRICE}=premium")));
    for needed in [
        "/api/webhooks/stripe",
        "client_reference_id: latchkeyUserId",
        "metadata: { latchkey_user_id: latchkeyUserId }",
    ] {
        assert!(section.contains(needed), "{needed}");
    }
    for event in [
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    ] {
        assert!(section.contains(&format!("`{event}`")), "{event}");
    }
    for db in [Db::Sqlite, Db::Postgres] {
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let app = spawn_app_with(db, &args).await;
        let client = new_client();
        let alice = app
            .register_with(&client, "alice", Default::default())
            .await;
        let me = app
            .send(&client, reqwest::Method::GET, "/api/me", None, &[])
            .await;
        let user_id = me.body["user_id"].as_str().unwrap();
        assert_eq!(user_id, alice.user_id);
        let t = now();
        let metadata = format!("{{\"latchkey_user_id\": \"{user_id}\"}}");
        for body in [
            checkout("evt_readme_1", Some(user_id), t),
            subscription_in(
                "stripe/customer.subscription.json",
                "evt_readme_2",
                "created",
                "active",
                t,
                t + 30 * DAY,
                &metadata,
            ),
        ] {
            assert_eq!(
                stripe_signed(&app, &body, &secret, t).await.status,
                StatusCode::OK
            );
        }
        let device = DeviceKey::ed25519();
        let minted = app.mint(&client, &device).await;
        let claims: Value = serde_json::from_slice(&crate::helpers::unb64(
            minted.body["license"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        ))
        .unwrap();
        assert_eq!(claims["ent"], serde_json::json!(["premium"]));
        assert_eq!(
            claims["exp"].as_i64().unwrap(),
            (t + 30 * DAY + 3 * DAY).min(claims["iat"].as_i64().unwrap() + 30 * DAY)
        );
        let key = latchkey::apikeys::ops::create(
            &app.state.store,
            &latchkey::admin::ops::Actor::Cli,
            "server",
            &[latchkey::apikeys::Scope::UsersRead],
            None,
        )
        .await
        .unwrap()
        .secret;
        let found = crate::apikeys::with_key(
            &app,
            &key,
            reqwest::Method::GET,
            &format!("/api/admin/users?external_id={CUSTOMER}"),
            None,
        )
        .await;
        assert_eq!(found.body["users"][0]["id"], user_id, "{}", found.text);
    }
}

crate::on_both_databases! {
    async fn a_price_mapped_with_a_device_limit_grants_it_and_the_limit_holds(app) {
        let secrets = format!("{STRIPE_OLD},{STRIPE_NEW}");
        let map = format!("{PRICE}=premium@1");
        let app = crate::helpers::spawn_app_with(app.db, &["--stripe-webhook-secret", &secrets, "--stripe-entitlements", &map]).await;
        let client = new_client();
        let alice = app.register_with(&client, "alice", Default::default()).await;
        let t = now();
        assert_eq!(outcome(&stripe(&app, &checkout("evt_checkout", Some(&alice.user_id), t)).await), "linked");
        assert_eq!(outcome(&stripe(&app, &subscription("evt_created", "created", "active", t + 1, t + 30 * DAY)).await), "applied");
        assert_eq!(app.scalar("SELECT max_devices FROM entitlements WHERE name = 'premium'").await, 1);
        assert_eq!(app.mint(&client, &DeviceKey::ed25519()).await.status, StatusCode::CREATED);
        let second = app.mint(&client, &DeviceKey::ed25519()).await;
        assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text);
        assert_eq!(second.problem(), "device-limit");
    }
}

#[test]
fn a_device_limit_in_the_price_mapping_must_be_a_number_from_1_to_10000() {
    use clap::Parser;
    for bad in [
        "price_1=premium@0",
        "price_1=premium@x",
        "price_1=premium@",
        "price_1=premium@2,price_2=premium@3",
    ] {
        let cli = latchkey::config::Cli::try_parse_from([
            "latchkey",
            "serve",
            "--stripe-entitlements",
            bad,
        ])
        .unwrap();
        let Some(latchkey::config::Command::Serve(serve)) = cli.command else {
            panic!("serve")
        };
        assert!(serve.business.parse().is_err(), "{bad}");
    }
    let cli = latchkey::config::Cli::try_parse_from([
        "latchkey",
        "serve",
        "--stripe-entitlements",
        "price_1=premium@3,price_2=premium@3,price_3=pro",
    ])
    .unwrap();
    let Some(latchkey::config::Command::Serve(serve)) = cli.command else {
        panic!("serve")
    };
    let business = serve.business.parse().unwrap();
    assert_eq!(business.stripe.entitlements["price_1"], "premium");
    assert_eq!(business.stripe.entitlements["price_3"], "pro");
    assert_eq!(business.stripe.max_devices.get("premium"), Some(&3));
    assert_eq!(business.stripe.max_devices.get("pro"), None);
}
