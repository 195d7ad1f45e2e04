//! Paddle Billing: `POST /api/webhooks/paddle`, events read from Paddle's
//! JSON shapes.

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

fn millis(text: &Value) -> Option<i64> {
    let t = time::OffsetDateTime::parse(
        text.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn subscription(data: &Value) -> Option<SubState> {
    let mut prices = Vec::new();
    for item in data["items"].as_array().into_iter().flatten() {
        prices.extend(text(&item["price"]["id"]));
        prices.extend(text(&item["price"]["product_id"]));
    }
    let status = data["status"].as_str()?.to_owned();
    Some(SubState {
        id: data["id"].as_str()?.to_owned(),
        customer_id: text(&data["customer_id"]),
        named_user: text(&data["custom_data"]["latchkey_user_id"]),
        ended: status == "canceled",
        status,
        prices,
        period_end: millis(&data["current_billing_period"]["ends_at"]).map(|ms| ms / 1000),
        // The subscription's own last change orders its states.
        rank_at: millis(&data["updated_at"])?,
    })
}

/// Reads a verified Paddle notification.
pub fn parse(body: &[u8]) -> Option<Incoming> {
    let event: Value = serde_json::from_slice(body).ok()?;
    let id = event["event_id"].as_str()?.to_owned();
    let kind = event["event_type"].as_str()?.to_owned();
    let data = &event["data"];
    let change = if kind.starts_with("subscription.") {
        Change::Subscription(subscription(data)?)
    } else if kind == "transaction.completed" || kind == "transaction.paid" {
        Change::Link {
            subscription_id: text(&data["subscription_id"]),
            user: text(&data["custom_data"]["latchkey_user_id"]),
            customer_id: text(&data["customer_id"]),
        }
    } else {
        Change::Ignore
    };
    Some(Incoming {
        event_id: id,
        event_type: kind,
        change,
    })
}

#[utoipa::path(
    post,
    path = "/api/webhooks/paddle",
    tag = "billing",
    operation_id = "paddle_webhook",
    summary = "Paddle Billing notifications: transactions and subscriptions grant and remove entitlements",
    params(("Paddle-Signature" = String, Header, description = "ts=…;h1=… (HMAC-SHA256 with the notification secret)")),
    request_body(content = Object, content_type = "application/json", description = "A Paddle notification, byte for byte as Paddle sent it"),
    responses(
        (status = 200, description = "Received (also a repeat, an old state or a type this service ignores)", body = Received),
        (status = 400, description = "`invalid-signature` (missing, forged or older than five minutes) or `invalid-event`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Paddle is not set up here (LATCHKEY_PADDLE_WEBHOOK_SECRET)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>> {
    let header = headers
        .get("paddle-signature")
        .and_then(|v| v.to_str().ok());
    receive(
        &state,
        Provider::Paddle,
        &client,
        |secrets, now| signature::verify_paddle(header, &body, secrets, now),
        || parse(&body),
    )
    .await
}
