//! The sender: one task per configured endpoint, on every instance. A task
//! delivers only while it holds the endpoint's lease, oldest message first,
//! and waits for a failed message's retry before sending anything newer, so a
//! receiver sees each endpoint's events in order, one at a time.

use std::sync::Arc;
use std::time::Duration;

use crate::config::WebhookEndpoint;
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::webhooks::Attempt;
use crate::store::Store;

/// The stable id of an endpoint: its URL, hashed.
pub fn endpoint_id(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("ep_{hex}")
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Registers the configured endpoints and starts one sender per endpoint.
pub async fn start(state: &AppState) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let business = &state.settings.business;
    let configured: Vec<(String, String)> = business
        .endpoints
        .iter()
        .map(|e| (endpoint_id(e.url.as_str()), e.url.to_string()))
        .collect();
    state.store.sync_webhook_endpoints(&configured).await?;
    let client = reqwest::Client::builder()
        .timeout(business.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("latchkey-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let owner: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    Ok(business
        .endpoints
        .iter()
        .map(|endpoint| {
            let sender = Sender {
                store: state.store.clone(),
                client: client.clone(),
                owner: owner.clone(),
                id: endpoint_id(endpoint.url.as_str()),
                endpoint: endpoint.clone(),
                schedule: business.retry_schedule.clone(),
                lease_ms: ms(business.timeout) + 5_000,
            };
            let poll = business.poll;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(poll);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(err) = sender.round().await {
                        tracing::warn!(endpoint = %sender.id, error = %err, "webhook delivery round failed");
                    }
                }
            })
        })
        .collect())
}

struct Sender {
    store: Store,
    client: reqwest::Client,
    owner: Arc<str>,
    id: String,
    endpoint: WebhookEndpoint,
    schedule: Vec<Duration>,
    lease_ms: i64,
}

impl Sender {
    /// Delivers what is due, in order, while this instance holds the lease.
    async fn round(&self) -> crate::store::Result<()> {
        loop {
            let now = now_ms();
            if !self
                .store
                .claim_webhook_endpoint(&self.id, &self.owner, now, now + self.lease_ms)
                .await?
            {
                return Ok(());
            }
            let Some(message) = self.store.next_webhook_message(&self.id).await? else {
                return self
                    .store
                    .release_webhook_endpoint(&self.id, &self.owner)
                    .await;
            };
            if message.next_attempt_at > now {
                // The head of the queue waits for its retry; nothing newer may overtake it.
                return Ok(());
            }
            let body = super::message::body(&message);
            let timestamp = now / 1000;
            let signature = super::message::key(self.endpoint.secret.expose())
                .map(|key| super::message::signature(&key, &message.msg_id, timestamp, &body))
                .unwrap_or_default();
            let sent = self
                .client
                .post(self.endpoint.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &message.msg_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await;
            let attempt_no = usize::try_from(message.attempts).unwrap_or(usize::MAX);
            let retry_at = self
                .schedule
                .get(attempt_no)
                .map(|wait| now_ms().saturating_add(ms(*wait)));
            let (attempt, gone) = match &sent {
                Ok(r) if r.status().is_success() => (
                    Attempt::Delivered {
                        status: i64::from(r.status().as_u16()),
                        at: crate::store::now(),
                    },
                    false,
                ),
                Ok(r) => (
                    Attempt::Failed {
                        status: Some(i64::from(r.status().as_u16())),
                        error: "the receiver did not answer 2xx",
                        retry_at,
                    },
                    r.status() == reqwest::StatusCode::GONE,
                ),
                Err(err) => (
                    Attempt::Failed {
                        status: None,
                        error: if err.is_timeout() {
                            "no answer in time"
                        } else if err.is_connect() {
                            "could not connect"
                        } else {
                            "the request failed"
                        },
                        retry_at,
                    },
                    false,
                ),
            };
            let delivered = matches!(attempt, Attempt::Delivered { .. });
            self.store
                .record_webhook_attempt(message.id, &self.owner, attempt)
                .await?;
            if gone {
                // 410 Gone: the receiver asks for no more (Standard Webhooks).
                let audit = AuditEvent {
                    target: Some(&self.id),
                    detail: Some("the receiver answered 410 Gone"),
                    ..AuditEvent::new(Event::WebhookEndpointDisabled)
                };
                self.store
                    .set_webhook_endpoint_disabled(
                        &self.id,
                        Some("answered 410 Gone"),
                        &audit,
                        crate::store::now(),
                    )
                    .await?;
                tracing::warn!(endpoint = %self.id, "webhook endpoint answered 410 Gone: disabled");
                return Ok(());
            }
            if !delivered && retry_at.is_some() {
                return Ok(());
            }
        }
    }
}
