//! The provider-neutral core: what a verified event means (a checkout that
//! links a subscription to a user, a subscription's new state, an invoice),
//! and the rules that turn it and what is stored into changes. The rules are
//! plain functions; the store runs them inside the event's transaction.

use std::collections::{BTreeSet, HashMap};

use crate::store::billing::{BillingContext, Grant, Plan, SubscriptionRow};

/// A subscription's state as the provider reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubState {
    pub id: String,
    pub customer_id: Option<String>,
    /// `latchkey_user_id` in the subscription's metadata (custom data), set by
    /// the server that made the checkout.
    pub named_user: Option<String>,
    pub status: String,
    /// Price and product ids of its items.
    pub prices: Vec<String>,
    pub period_end: Option<i64>,
    /// Canceled or deleted: the end of this subscription.
    pub ended: bool,
    /// The provider's time of this state, in milliseconds.
    pub rank_at: i64,
}

/// What a verified event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A type this service does not act on: acknowledged, recorded, ignored.
    Ignore,
    /// A completed checkout: the user who paid (client reference or custom
    /// data, never an e-mail address), the customer and the subscription.
    Link {
        subscription_id: Option<String>,
        user: Option<String>,
        customer_id: Option<String>,
    },
    Subscription(SubState),
    /// An invoice paid (extends the period) or failed (payment is late).
    Invoice {
        subscription_id: Option<String>,
        period_end: Option<i64>,
        paid: bool,
        rank_at: i64,
    },
}

impl Change {
    /// The subscription and the user the event names, for the store to look up.
    pub fn keys(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Ignore => (None, None),
            Self::Link {
                subscription_id,
                user,
                ..
            } => (subscription_id.as_deref(), user.as_deref()),
            Self::Subscription(s) => (Some(&s.id), s.named_user.as_deref()),
            Self::Invoice {
                subscription_id, ..
            } => (subscription_id.as_deref(), None),
        }
    }
}

/// What a status means for the entitlements it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Paid or on trial: granted until the period's end plus the grace.
    Live,
    /// Payment is late: kept as granted, not extended, so it lapses when the grace ends.
    Late,
    /// Canceled, unpaid, paused, never paid: taken away.
    Ended,
}

fn standing(status: &str, ended: bool) -> Standing {
    match status {
        _ if ended => Standing::Ended,
        "active" | "trialing" => Standing::Live,
        "past_due" => Standing::Late,
        _ => Standing::Ended,
    }
}

/// The order of a subscription's states: its end beats everything, then a
/// later period, then the provider's time within a period. Events arriving
/// late or twice never move a subscription back.
fn rank(ended: bool, period_end: Option<i64>, at: i64) -> (bool, i64, i64) {
    (ended, period_end.unwrap_or(0), at)
}

fn row_rank(row: &SubscriptionRow) -> (bool, i64, i64) {
    rank(row.rank_final, row.period_end, row.rank_at)
}

/// The entitlement names a subscription's prices map to.
fn mapped(prices: &[String], map: &HashMap<String, String>) -> Vec<String> {
    let names: BTreeSet<&String> = prices.iter().filter_map(|p| map.get(p)).collect();
    names.into_iter().cloned().collect()
}

/// Grants and removals that take `user` from what `before` granted to what
/// `after` grants. A name another live or late subscription of theirs still
/// pays for is not removed.
fn effects(
    user: &str,
    before: &[String],
    after: &SubscriptionRow,
    others: &[SubscriptionRow],
    grace: i64,
    plan: &mut Plan,
) {
    let now_standing = standing(&after.status, after.rank_final);
    if now_standing == Standing::Live {
        for name in &after.entitlements {
            plan.grants.push(Grant {
                user_id: user.to_owned(),
                name: name.clone(),
                expires_at: after.period_end.map(|end| end.saturating_add(grace)),
                max_devices: None,
            });
        }
    }
    let kept: BTreeSet<&String> = if now_standing == Standing::Ended {
        BTreeSet::new()
    } else {
        after.entitlements.iter().collect()
    };
    let paid_elsewhere = |name: &String| {
        others.iter().any(|o| {
            standing(&o.status, o.rank_final) != Standing::Ended && o.entitlements.contains(name)
        })
    };
    let gone: BTreeSet<&String> = before
        .iter()
        .chain(if now_standing == Standing::Ended {
            after.entitlements.iter()
        } else {
            [].iter()
        })
        .filter(|n| !kept.contains(n) && !paid_elsewhere(n))
        .collect();
    for name in gone {
        plan.removals.push((user.to_owned(), name.clone()));
    }
}

fn outcome(text: &str) -> Plan {
    Plan {
        outcome: text.to_owned(),
        ..Plan::default()
    }
}

/// Decides what a verified event changes, given what is stored.
pub fn plan(
    context: &BillingContext,
    change: &Change,
    map: &HashMap<String, String>,
    grace: i64,
) -> Plan {
    let stored = context.stored.as_ref();
    match change {
        Change::Ignore => outcome("ignored: not an event this service acts on"),
        Change::Link {
            subscription_id,
            customer_id,
            ..
        } => {
            let Some(user) = context.named_user.as_deref() else {
                return outcome("ignored: the checkout names no user of this service");
            };
            let mut plan = outcome("linked");
            plan.external_id = customer_id.clone().map(|c| (user.to_owned(), c));
            let Some(id) = subscription_id else {
                return plan;
            };
            match stored {
                Some(s) if s.user_id.as_deref().is_some_and(|u| u != user) => {
                    outcome("ignored: the subscription belongs to another user")
                }
                Some(s) => {
                    // Its state may have arrived first: apply it to the user now.
                    let before = if s.user_id.is_some() {
                        s.entitlements.clone()
                    } else {
                        Vec::new()
                    };
                    let row = SubscriptionRow {
                        user_id: Some(user.to_owned()),
                        customer_id: s.customer_id.clone().or_else(|| customer_id.clone()),
                        ..s.clone()
                    };
                    effects(user, &before, &row, &context.others, grace, &mut plan);
                    plan.subscription = Some(row);
                    plan
                }
                None => {
                    plan.subscription = Some(SubscriptionRow {
                        subscription_id: id.clone(),
                        user_id: Some(user.to_owned()),
                        customer_id: customer_id.clone(),
                        status: "incomplete".into(),
                        entitlements: Vec::new(),
                        period_end: None,
                        rank_final: false,
                        rank_at: 0,
                    });
                    plan
                }
            }
        }
        Change::Subscription(s) => {
            if stored.is_some_and(|st| row_rank(st) > rank(s.ended, s.period_end, s.rank_at)) {
                return outcome("stale: older than the state already applied");
            }
            // A linked subscription stays with its user whatever later metadata says.
            let user = stored
                .and_then(|st| st.user_id.clone())
                .or_else(|| context.named_user.clone());
            let row = SubscriptionRow {
                subscription_id: s.id.clone(),
                user_id: user.clone(),
                customer_id: s
                    .customer_id
                    .clone()
                    .or_else(|| stored.and_then(|st| st.customer_id.clone())),
                status: s.status.clone(),
                entitlements: mapped(&s.prices, map),
                period_end: s.period_end,
                rank_final: s.ended,
                rank_at: s.rank_at,
            };
            let mut plan = outcome(if user.is_some() {
                "applied"
            } else {
                "stored: waiting for the checkout that names its user"
            });
            if let Some(user) = &user {
                let before = stored.map(|st| st.entitlements.clone()).unwrap_or_default();
                effects(user, &before, &row, &context.others, grace, &mut plan);
            }
            plan.subscription = Some(row);
            plan
        }
        Change::Invoice {
            period_end,
            paid,
            rank_at,
            ..
        } => {
            let Some(st) = stored else {
                return outcome("ignored: an invoice of an unknown subscription");
            };
            if st.rank_final {
                return outcome("stale: the subscription has ended");
            }
            let mut row = st.clone();
            if *paid {
                row.period_end = match (st.period_end, *period_end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if matches!(st.status.as_str(), "past_due" | "unpaid") {
                    row.status = "active".into();
                }
            } else if *rank_at >= st.rank_at && matches!(st.status.as_str(), "active" | "trialing")
            {
                row.status = "past_due".into();
            }
            if row == *st {
                return outcome("no change");
            }
            row.rank_at = st.rank_at.max(*rank_at);
            let mut plan = outcome("applied");
            if let Some(user) = &st.user_id {
                effects(
                    user,
                    &st.entitlements,
                    &row,
                    &context.others,
                    grace,
                    &mut plan,
                );
            }
            plan.subscription = Some(row);
            plan
        }
    }
}
