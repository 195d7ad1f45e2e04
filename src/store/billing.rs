//! Payment-provider events applied exactly once: the event id, the
//! subscription's newest state and the entitlements it grants or takes away
//! (with the license cascade) change together in one transaction, or not at
//! all. What to change is decided by the billing feature's rules, called
//! inside the transaction with what is stored.

use super::audit::{insert_event, AuditEvent, Event};
use super::revocations::{carries, BUMP_LISTS};
use super::{transaction, Result, Store};

/// A subscription as stored: its newest known state and what it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub subscription_id: String,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: String,
    /// The entitlement names its prices map to.
    pub entitlements: Vec<String>,
    pub period_end: Option<i64>,
    /// Canceled for good: no older state may revive it.
    pub rank_final: bool,
    /// The provider's time for this state.
    pub rank_at: i64,
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<i64>,
    i64,
    i64,
);

fn from_row(r: Row) -> Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        subscription_id: r.0,
        user_id: r.1,
        customer_id: r.2,
        status: r.3,
        entitlements: serde_json::from_str(&r.4)?,
        period_end: r.5,
        rank_final: r.6 != 0,
        rank_at: r.7,
    })
}

const COLUMNS: &str =
    "subscription_id, user_id, customer_id, status, entitlements, period_end, rank_final, rank_at";

/// What the rules see.
#[derive(Debug, Default)]
pub struct BillingContext {
    /// The subscription as stored, if the event names one.
    pub stored: Option<SubscriptionRow>,
    /// The user the event names (client reference or metadata), if that user exists.
    pub named_user: Option<String>,
    /// The user's other subscriptions with this provider.
    pub others: Vec<SubscriptionRow>,
}

/// One entitlement to grant, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    pub name: String,
    pub expires_at: Option<i64>,
    /// From the price mapping (`name@N`); `None` keeps the entitlement's own.
    pub max_devices: Option<i64>,
}

/// What the rules decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub subscription: Option<SubscriptionRow>,
    /// `(user, customer id)`: set as the user's external id if they have none.
    pub external_id: Option<(String, String)>,
    pub grants: Vec<Grant>,
    /// `(user, entitlement)`: removed, and licenses carrying it revoked.
    pub removals: Vec<(String, String)>,
    /// A word or two for the record: `applied`, `stale`, `ignored: …`.
    pub outcome: String,
}

/// One verified event.
pub struct BillingEvent<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub subscription_id: Option<&'a str>,
    pub named_user: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Seen before: nothing was done.
    Duplicate,
    /// Recorded with this outcome; `revoked` when licenses were revoked.
    Done { outcome: String, revoked: bool },
}

impl Store {
    /// Records the event and carries out what `decide` makes of it, in one
    /// transaction; a repeated event id changes nothing.
    pub async fn apply_billing_event(
        &self,
        event: &BillingEvent<'_>,
        decide: impl FnOnce(&BillingContext) -> Plan,
        audit: &AuditEvent<'_>,
        now: i64,
    ) -> Result<Applied> {
        let sqlite = self.is_sqlite();
        let revoke = format!(
            "UPDATE licenses SET revoked_at = $3, revoked_reason = 'entitlement removed' \
             WHERE user_id = $1 AND revoked_at IS NULL AND {}",
            carries(sqlite)
        );
        let by_id = format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE provider = $1 AND subscription_id = $2"
        );
        let by_user = format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE provider = $1 AND user_id = $2 AND subscription_id <> $3"
        );
        let upsert = "INSERT INTO subscriptions (provider, subscription_id, user_id, customer_id, status, entitlements, \
                      period_end, rank_final, rank_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                      ON CONFLICT (provider, subscription_id) DO UPDATE SET user_id = excluded.user_id, \
                      customer_id = excluded.customer_id, status = excluded.status, entitlements = excluded.entitlements, \
                      period_end = excluded.period_end, rank_final = excluded.rank_final, rank_at = excluded.rank_at, \
                      updated_at = excluded.updated_at";
        let applied = transaction!(self, tx => {
            if !sqlite {
                // Billing events are rare: one at a time keeps two events of one
                // subscription from both deciding on the same stored state.
                sqlx::query("SELECT pg_advisory_xact_lock(7361002)").execute(&mut *tx).await?;
            }
            let fresh = sqlx::query("INSERT INTO billing_events (provider, event_id, event_type, outcome, received_at) \
                                     VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (provider, event_id) DO NOTHING")
                .bind(event.provider).bind(event.event_id).bind(event.event_type).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if fresh == 0 {
                return Ok(Applied::Duplicate);
            }
            let mut context = BillingContext::default();
            if let Some(id) = event.subscription_id {
                let row: Option<Row> = sqlx::query_as(&by_id).bind(event.provider).bind(id).fetch_optional(&mut *tx).await?;
                context.stored = row.map(from_row).transpose()?;
            }
            if let Some(user) = event.named_user {
                let found: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1").bind(user).fetch_optional(&mut *tx).await?;
                context.named_user = found.map(|(id,)| id);
            }
            let owner = context.stored.as_ref().and_then(|s| s.user_id.clone()).or_else(|| context.named_user.clone());
            if let Some(owner) = &owner {
                let rows: Vec<Row> = sqlx::query_as(&by_user).bind(event.provider).bind(owner)
                    .bind(event.subscription_id.unwrap_or_default()).fetch_all(&mut *tx).await?;
                context.others = rows.into_iter().map(from_row).collect::<Result<_>>()?;
            }
            let plan = decide(&context);
            let mut changed = false;
            let mut revoked = false;
            if let Some(sub) = &plan.subscription {
                sqlx::query(upsert).bind(event.provider).bind(&sub.subscription_id).bind(&sub.user_id)
                    .bind(&sub.customer_id).bind(&sub.status).bind(serde_json::to_string(&sub.entitlements)?)
                    .bind(sub.period_end).bind(i64::from(sub.rank_final)).bind(sub.rank_at).bind(now)
                    .execute(&mut *tx).await?;
                changed = true;
            }
            if let Some((user, external)) = &plan.external_id {
                // Only a user without one, and only an id nobody has: never a conflict mid-transaction.
                let n = sqlx::query("UPDATE users SET external_id = $2 WHERE id = $1 AND external_id IS NULL \
                                     AND NOT EXISTS (SELECT 1 FROM users o WHERE o.external_id = $2)")
                    .bind(user).bind(external).execute(&mut *tx).await?.rows_affected();
                if n == 1 {
                    let row = AuditEvent { target_user_id: Some(user), target: Some(external), ..audit.clone().with(Event::UserExternalIdSet) };
                    insert_event!(row, now).execute(&mut *tx).await?;
                }
            }
            for grant in &plan.grants {
                let current: Option<(Option<i64>, Option<i64>)> = sqlx::query_as("SELECT expires_at, max_devices FROM entitlements WHERE user_id = $1 AND name = $2")
                    .bind(&grant.user_id).bind(&grant.name).fetch_optional(&mut *tx).await?;
                if current.is_some_and(|(at, max)| at == grant.expires_at && (grant.max_devices.is_none() || max == grant.max_devices)) {
                    continue;
                }
                sqlx::query("INSERT INTO entitlements (user_id, name, expires_at, granted_at, max_devices) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (user_id, name) DO UPDATE SET expires_at = excluded.expires_at, granted_at = excluded.granted_at, \
                             max_devices = COALESCE(excluded.max_devices, entitlements.max_devices)")
                    .bind(&grant.user_id).bind(&grant.name).bind(grant.expires_at).bind(now).bind(grant.max_devices).execute(&mut *tx).await?;
                let row = AuditEvent { target_user_id: Some(&grant.user_id), target: Some(&grant.name), ..audit.clone().with(Event::EntitlementGranted) };
                insert_event!(row, now).execute(&mut *tx).await?;
                changed = true;
            }
            for (user, name) in &plan.removals {
                let n = sqlx::query("DELETE FROM entitlements WHERE user_id = $1 AND name = $2")
                    .bind(user).bind(name).execute(&mut *tx).await?.rows_affected();
                if n == 1 {
                    sqlx::query(&revoke).bind(user).bind(name).bind(now).execute(&mut *tx).await?;
                    sqlx::query(BUMP_LISTS).execute(&mut *tx).await?;
                    let row = AuditEvent { target_user_id: Some(user), target: Some(name), ..audit.clone().with(Event::EntitlementRemoved) };
                    insert_event!(row, now).execute(&mut *tx).await?;
                    revoked = true;
                    changed = true;
                }
            }
            sqlx::query("UPDATE billing_events SET outcome = $3 WHERE provider = $1 AND event_id = $2")
                .bind(event.provider).bind(event.event_id).bind(&plan.outcome).execute(&mut *tx).await?;
            if changed {
                let row = AuditEvent { target_user_id: owner.as_deref(), target: event.subscription_id, ..audit.clone().with(Event::BillingApplied) };
                insert_event!(row, now).execute(&mut *tx).await?;
            }
            Applied::Done { outcome: plan.outcome, revoked }
        });
        Ok(applied)
    }
}
