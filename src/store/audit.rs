//! The append-only audit log of security events and admin actions.

use super::{on_writer, read, Result, Store};

/// Declares the audit events once: the enum, its stored names and its schema.
macro_rules! events {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:tt,)*) => {
        /// What happened. Stored, filtered on and reported by its dotted name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum Event {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl Event {
            /// Every event, in declaration order.
            pub const ALL: &'static [Event] = &[$(Event::$variant,)*];

            /// The stored name, e.g. `signin.success`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    /// A new account with its first passkey.
    Registration = "registration",
    PasskeyAdded = "passkey.added",
    /// Removed by its owner.
    PasskeyRemoved = "passkey.removed",
    /// Revoked by an administrator.
    PasskeyRevoked = "passkey.revoked",
    SigninSuccess = "signin.success",
    SigninFailure = "signin.failure",
    /// A non-zero signature counter that did not increase: a possible clone.
    SigninCounterRegression = "signin.counter_regression",
    /// A signed-in user confirmed a passkey again (step-up).
    StepUp = "signin.step_up",
    LicenseMinted = "license.minted",
    LicenseRevoked = "license.revoked",
    EntitlementGranted = "entitlement.granted",
    EntitlementRemoved = "entitlement.removed",
    UserRoleChanged = "user.role_changed",
    UserDisabled = "user.disabled",
    UserEnabled = "user.enabled",
    KeyRotated = "key.rotated",
    KeyRetired = "key.retired",
    /// Every signing key re-encrypted under a new key-encryption key.
    KekRotated = "kek.rotated",
    /// A user's external id was set or cleared.
    UserExternalIdSet = "user.external_id_set",
    /// A user was created through the admin API.
    UserCreated = "user.created",
    /// An administrator issued a recovery link (detail: lifetime, whether it revokes the other passkeys).
    RecoveryIssued = "recovery.issued",
    /// A passkey was added with a recovery link (detail: whether the other passkeys were revoked).
    Recovered = "recovery.completed",
    /// A signed-in user made a new set of recovery codes.
    RecoveryCodesMade = "recovery.codes_made",
    /// A device was removed (by its user or an administrator); its licenses are revoked.
    DeviceRemoved = "device.removed",
    /// A wrong recovery code (or unknown username) was tried.
    RecoveryCodeRefused = "recovery.code_refused",
    ApiKeyCreated = "apikey.created",
    ApiKeyRevoked = "apikey.revoked",
    /// A payment provider's event changed a subscription (detail: provider, event id and type).
    BillingApplied = "billing.applied",
    /// A payment webhook whose signature did not verify, or that could not be read.
    BillingRejected = "billing.rejected",
    /// An event-webhook endpoint answered 410 Gone and was disabled.
    WebhookEndpointDisabled = "webhook.endpoint_disabled",
    WebhookEndpointEnabled = "webhook.endpoint_enabled",
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub event: Event,
    pub actor_user_id: Option<&'a str>,
    /// The API key a change was made with, and its name.
    pub actor_key_id: Option<&'a str>,
    pub actor_key_name: Option<&'a str>,
    pub target_user_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> AuditEvent<'a> {
    /// An event with nothing but its kind; fill in the rest with struct update syntax.
    pub fn new(event: Event) -> Self {
        Self {
            event,
            actor_user_id: None,
            actor_key_id: None,
            actor_key_name: None,
            target_user_id: None,
            target: None,
            client_addr: None,
            user_agent: None,
            detail: None,
        }
    }

    /// The same actor and context, for another event.
    pub fn with(self, event: Event) -> Self {
        Self { event, ..self }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub actor_user_id: Option<String>,
    pub actor_key_id: Option<String>,
    pub actor_key_name: Option<String>,
    pub target_user_id: Option<String>,
    pub target: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// The longest text an audit row keeps in each of its text fields; longer
/// values (most of them sent by clients) are cut at a character boundary.
pub const MAX_TEXT_CHARS: usize = 256;

/// `text` cut to [`MAX_TEXT_CHARS`] characters.
pub fn clip(text: Option<&str>) -> Option<&str> {
    text.map(|t| match t.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => &t[..end],
        None => t,
    })
}

/// The statement that records one event; [`bind_event!`] binds its parameters.
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO audit_log (at, event, actor_user_id, target_user_id, target, client_addr, user_agent, detail, \
     actor_key_id, actor_key_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Binds an event's ten values, in [`INSERT_EVENT`]'s order, to query `$q`.
macro_rules! bind_event {
    ($q:expr, $e:expr, $now:expr) => {
        $q.bind($now)
            .bind($e.event.as_str())
            .bind($crate::store::audit::clip($e.actor_user_id))
            .bind($crate::store::audit::clip($e.target_user_id))
            .bind($crate::store::audit::clip($e.target))
            .bind($crate::store::audit::clip($e.client_addr))
            .bind($crate::store::audit::clip($e.user_agent))
            .bind($crate::store::audit::clip($e.detail))
            .bind($crate::store::audit::clip($e.actor_key_id))
            .bind($crate::store::audit::clip($e.actor_key_name))
    };
}
pub(crate) use bind_event;

/// The insert query for one event, bound and ready to run on any executor.
macro_rules! insert_event {
    ($e:expr, $now:expr) => {
        $crate::store::audit::bind_event!(sqlx::query($crate::store::audit::INSERT_EVENT), $e, $now)
    };
}
pub(crate) use insert_event;

/// [`AuditEvent`] owned, to wait in the group-commit queue.
pub(crate) struct OwnedAuditEvent {
    event: Event,
    actor_user_id: Option<String>,
    actor_key_id: Option<String>,
    actor_key_name: Option<String>,
    target_user_id: Option<String>,
    target: Option<String>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
}

impl From<&AuditEvent<'_>> for OwnedAuditEvent {
    fn from(e: &AuditEvent<'_>) -> Self {
        let own = |v: Option<&str>| v.map(str::to_owned);
        Self {
            event: e.event,
            actor_user_id: own(e.actor_user_id),
            actor_key_id: own(e.actor_key_id),
            actor_key_name: own(e.actor_key_name),
            target_user_id: own(e.target_user_id),
            target: own(e.target),
            client_addr: own(e.client_addr),
            user_agent: own(e.user_agent),
            detail: own(e.detail),
        }
    }
}

impl OwnedAuditEvent {
    pub(crate) fn borrowed(&self) -> AuditEvent<'_> {
        AuditEvent {
            event: self.event,
            actor_user_id: self.actor_user_id.as_deref(),
            actor_key_id: self.actor_key_id.as_deref(),
            actor_key_name: self.actor_key_name.as_deref(),
            target_user_id: self.target_user_id.as_deref(),
            target: self.target.as_deref(),
            client_addr: self.client_addr.as_deref(),
            user_agent: self.user_agent.as_deref(),
            detail: self.detail.as_deref(),
        }
    }
}

impl Store {
    /// Records an event that goes with no other change (a sign-in, a failed
    /// one), through the group commit: answered once its batch has committed.
    pub async fn audit(&self, e: &AuditEvent<'_>, now: i64) -> Result<()> {
        let item = super::batch::Item::Audit(Box::new(OwnedAuditEvent::from(e)), now);
        self.queue.submit(item).await?;
        Ok(())
    }

    /// Sets how long rows are kept (at least 30 days; the database refuses less).
    pub async fn set_audit_retention(&self, secs: i64) -> Result<()> {
        let sql = "UPDATE audit_policy SET retention_secs = $1 WHERE id = 1";
        on_writer!(self, p => sqlx::query(sql).bind(secs).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes rows older than the retention, a batch at a time; younger rows
    /// stay append-only (the database refuses to delete them).
    pub async fn prune_audit(&self, now: i64) -> Result<u64> {
        // A minute of margin: the database's clock decides what it lets go.
        let sql = format!(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at <= $1 - 60 \
                   - (SELECT retention_secs FROM audit_policy WHERE id = 1) ORDER BY id LIMIT {})",
            super::PRUNE_BATCH
        );
        super::prune_in_batches(|| async {
            Ok(on_writer!(self, p => sqlx::query(&sql).bind(now).execute(p).await.map(|r| r.rows_affected()))?)
        })
        .await
    }

    /// Newest first; `before` is the cursor (an id from the previous page).
    pub async fn audit_page(
        &self,
        user_id: Option<&str>,
        event: Option<Event>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let sql = "SELECT id, at, event, actor_user_id, actor_key_id, actor_key_name, target_user_id, target, client_addr, user_agent, detail \
                   FROM audit_log WHERE ($1 IS NULL OR target_user_id = $1 OR actor_user_id = $1) \
                   AND ($2 IS NULL OR event = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4";
        let event = event.map(Event::as_str);
        Ok(read!(self, p => sqlx::query_as(sql)
            .bind(user_id).bind(event).bind(before).bind(limit).fetch_all(p).await)?)
    }
}
