//! Stripe: `POST /api/webhooks/stripe`, events read from Stripe's JSON shapes
//! (current API versions and older ones where they differ).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;

use super::core::{Change, SubState};
use super::{receive, signature, Incoming, Provider, Received};
use crate::error::Result;
use crate::http::ClientInfo;
use crate::state::AppState;

/// An id field that may also be an expanded object.
fn id_of(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["id"].as_str())
        .map(str::to_owned)
}

fn user_in(metadata: &Value) -> Option<String> {
    metadata["latchkey_user_id"].as_str().map(str::to_owned)
}

fn subscription(obj: &Value, deleted: bool, at: i64) -> Option<SubState> {
    let items = obj["items"]["data"].as_array().cloned().unwrap_or_default();
    let mut prices = Vec::new();
    for item in &items {
        let price = if item["price"].is_object() {
            &item["price"]
        } else {
            &item["plan"]
        };
        prices.extend(id_of(price));
        prices.extend(id_of(&price["product"]));
    }
    // Current API versions keep the period on each item; older ones on the subscription.
    let period_end = items
        .iter()
        .filter_map(|i| i["current_period_end"].as_i64())
        .max()
        .or_else(|| obj["current_period_end"].as_i64());
    let status = obj["status"].as_str()?.to_owned();
    Some(SubState {
        id: obj["id"].as_str()?.to_owned(),
        customer_id: id_of(&obj["customer"]),
        named_user: user_in(&obj["metadata"]),
        ended: deleted || matches!(status.as_str(), "canceled" | "incomplete_expired"),
        status,
        prices,
        period_end,
        rank_at: at.saturating_mul(1000),
    })
}

/// Reads a verified Stripe event.
pub fn parse(body: &[u8]) -> Option<Incoming> {
    let event: Value = serde_json::from_slice(body).ok()?;
    let id = event["id"].as_str()?.to_owned();
    let kind = event["type"].as_str()?.to_owned();
    let created = event["created"].as_i64()?;
    let obj = &event["data"]["object"];
    let change = match kind.as_str() {
        "checkout.session.completed" => Change::Link {
            subscription_id: id_of(&obj["subscription"]),
            user: obj["client_reference_id"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| user_in(&obj["metadata"])),
            customer_id: id_of(&obj["customer"]),
        },
        "customer.subscription.created" | "customer.subscription.updated" => {
            Change::Subscription(subscription(obj, false, created)?)
        }
        "customer.subscription.deleted" => Change::Subscription(subscription(obj, true, created)?),
        "invoice.paid" | "invoice.payment_failed" => Change::Invoice {
            subscription_id: id_of(&obj["subscription"])
                .or_else(|| id_of(&obj["parent"]["subscription_details"]["subscription"])),
            period_end: obj["lines"]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["period"]["end"].as_i64())
                .max(),
            paid: kind == "invoice.paid",
            rank_at: created.saturating_mul(1000),
        },
        _ => Change::Ignore,
    };
    Some(Incoming {
        event_id: id,
        event_type: kind,
        change,
    })
}

#[utoipa::path(
    post,
    path = "/api/webhooks/stripe",
    tag = "billing",
    operation_id = "stripe_webhook",
    summary = "Stripe events: checkouts, subscriptions and invoices grant and remove entitlements",
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=… (HMAC-SHA256 with the endpoint secret)")),
    request_body(content = Object, content_type = "application/json", description = "A Stripe event, byte for byte as Stripe sent it"),
    responses(
        (status = 200, description = "Received (also a repeat, an old state or a type this service ignores)", body = Received),
        (status = 400, description = "`invalid-signature` (missing, forged or older than five minutes) or `invalid-event`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Stripe is not set up here (LATCHKEY_STRIPE_WEBHOOK_SECRET)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    receive(
        &state,
        Provider::Stripe,
        &client,
        |secrets, now| signature::verify_stripe(header, &body, secrets, now),
        || parse(&body),
    )
    .await
}
