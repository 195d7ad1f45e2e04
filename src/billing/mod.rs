//! Payment webhooks: Stripe and Paddle Billing behind one provider-neutral
//! core. Each request is verified (the provider's own signature scheme), its
//! event id recorded, its user found (only through the id the checkout
//! carried, never an e-mail address), and its effect on entitlements applied,
//! all in one transaction: a repeated, late or forged event changes nothing.

pub mod core;
mod paddle;
pub mod signature;
mod stripe;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::core::Change;
use crate::config::Secret;
use crate::error::{AppError, Result};
use crate::http::ClientInfo;
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Event};
use crate::store::billing::{Applied, BillingEvent};
use crate::store::now;
use signature::Refusal;

pub use paddle::parse as parse_paddle;
pub use stripe::parse as parse_stripe;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stripe::webhook))
        .routes(routes!(paddle::webhook))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Stripe,
    Paddle,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Paddle => "paddle",
        }
    }

    fn settings(self, state: &AppState) -> &crate::config::ProviderSettings {
        match self {
            Self::Stripe => &state.settings.business.stripe,
            Self::Paddle => &state.settings.business.paddle,
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Self::Stripe => "LATCHKEY_STRIPE_WEBHOOK_SECRET",
            Self::Paddle => "LATCHKEY_PADDLE_WEBHOOK_SECRET",
        }
    }
}

/// A verified event, read.
pub struct Incoming {
    pub event_id: String,
    pub event_type: String,
    pub change: Change,
}

/// The answer to a provider: 200 means "do not send this again".
#[derive(Serialize, ToSchema)]
pub(crate) struct Received {
    received: bool,
    /// `applied`, `duplicate`, `stale: …`, `ignored: …`, `linked`, `stored: …`, `no change`.
    outcome: String,
}

/// Verify, record, map, apply: the same for every provider.
async fn receive(
    state: &AppState,
    provider: Provider,
    client: &ClientInfo,
    verify: impl FnOnce(&[Secret], i64) -> std::result::Result<(), Refusal>,
    parse: impl FnOnce() -> Option<Incoming>,
) -> Result<axum::Json<Received>> {
    let settings = provider.settings(state);
    if settings.secrets.is_empty() {
        return Err(AppError::not_found(
            "billing-not-configured",
            format!(
                "{} webhooks are not set up here ({}).",
                provider.as_str(),
                provider.variable()
            ),
        ));
    }
    if let Err(refusal) = verify(&settings.secrets, now()) {
        reject(state, provider, client, refusal.reason()).await?;
        return Err(AppError::bad_request(
            "invalid-signature",
            format!(
                "The {} signature does not verify: {}.",
                provider.as_str(),
                refusal.reason()
            ),
        ));
    }
    let Some(incoming) = parse() else {
        reject(
            state,
            provider,
            client,
            "a signed body that is not an event",
        )
        .await?;
        return Err(AppError::bad_request(
            "invalid-event",
            "The body is signed but is not an event this service can read.",
        ));
    };
    let detail = format!(
        "{} {} {}",
        provider.as_str(),
        incoming.event_id,
        incoming.event_type
    );
    let audit = AuditEvent {
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: Some(&detail),
        ..AuditEvent::new(Event::BillingApplied)
    };
    let (subscription_id, named_user) = incoming.change.keys();
    let event = BillingEvent {
        provider: provider.as_str(),
        event_id: &incoming.event_id,
        event_type: &incoming.event_type,
        subscription_id,
        named_user,
    };
    let grace = state.settings.business.grace_secs;
    let applied = state
        .store
        .apply_billing_event(
            &event,
            |context| {
                let mut plan = core::plan(context, &incoming.change, &settings.entitlements, grace);
                for grant in &mut plan.grants {
                    grant.max_devices = settings.max_devices.get(&grant.name).copied();
                }
                plan
            },
            &audit,
            now(),
        )
        .await?;
    let outcome = match applied {
        Applied::Duplicate => "duplicate".to_owned(),
        Applied::Done { outcome, revoked } => {
            if revoked {
                crate::metrics::revocation("entitlement");
                state.status.refresh(&state.store).await?;
            }
            outcome
        }
    };
    tracing::info!(provider = provider.as_str(), event = %incoming.event_id, kind = %incoming.event_type, %outcome, "billing event");
    Ok(axum::Json(Received {
        received: true,
        outcome,
    }))
}

/// Records a refused delivery (the body is not kept: it was not trusted).
async fn reject(
    state: &AppState,
    provider: Provider,
    client: &ClientInfo,
    why: &str,
) -> Result<()> {
    let detail = format!("{}: {why}", provider.as_str());
    let audit = AuditEvent {
        client_addr: client.addr.as_deref(),
        user_agent: client.user_agent.as_deref(),
        detail: Some(&detail),
        ..AuditEvent::new(Event::BillingRejected)
    };
    state.store.audit(&audit, now()).await?;
    Ok(())
}
