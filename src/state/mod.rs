//! The application state every handler reads, and the bootstrap that builds
//! it: opening the store, loading the key-encryption key and the signing keys.
//! Imports no feature.

pub mod files;
pub mod keys;
pub mod slots;
pub mod status;
pub mod throttle;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::FromRef;
use latchkey_core::dpop::NonceKey;
use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::config::{Common, ServeArgs};
use crate::http::ratelimit::RateLimiter;
use crate::store::Store;
use keys::{Kek, Keyring, SharedKeyring};
use slots::SlotAllocator;
use status::StatusLists;
use throttle::AuditThrottle;

/// Settings the handlers read, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public origin without a trailing slash, e.g. `http://localhost:8080`.
    pub origin: String,
    /// The path prefix everything is served under (`/auth`), or empty for the root.
    pub base_path: String,
    pub audience: String,
    pub license_ttl: Duration,
    pub ceremony_ttl: Duration,
    pub dpop_window_secs: i64,
    pub status_list_ttl_secs: i64,
    pub status_list_validity_secs: i64,
    pub admin_reauth_secs: i64,
    /// `LATCHKEY_STEP_UP_MINUTES` in seconds.
    pub step_up_secs: i64,
    pub session_ttl_secs: i64,
    pub https: bool,
    /// Take the client's address from the proxy's `X-Forwarded-For` hop.
    pub trust_forwarded_for: bool,
    pub request_timeout: Duration,
    pub max_pending_ceremonies: i64,
    /// `LATCHKEY_CHECK_IN` in seconds: the licenses' `chk`.
    pub check_in_secs: u64,
    /// `LATCHKEY_MAX_DEVICES`: devices per entitlement unless its grant says otherwise.
    pub max_devices: Option<i64>,
    /// `LATCHKEY_DEVICE_REMOVALS_PER_30D`.
    pub device_removals_per_30d: i64,
    /// Payment webhooks in, event webhooks out.
    pub business: crate::config::Business,
}

impl Settings {
    /// The public URI of status list `id`, as licenses name it: what the
    /// browser fetches through the proxy, base path included.
    pub fn status_list_uri(&self, id: i64) -> String {
        self.public_uri(&format!("/api/status-lists/{id}"))
    }

    /// The URI a client addresses for `path` (a route of this service), as a
    /// DPoP proof's `htu` names it: public origin, then base path.
    pub fn public_uri(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.base_path)
    }
}

/// What every handler reads: one pointer, so that the several copies axum
/// makes of it per request cost one reference count each.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}

/// The state behind [`AppState`].
pub struct Shared {
    pub store: Store,
    pub webauthn: Arc<Webauthn>,
    pub settings: Arc<Settings>,
    pub keys: SharedKeyring,
    pub status: Arc<StatusLists>,
    pub dpop_nonce: Option<NonceKey>,
    pub fake_credential_key: Arc<[u8; 32]>,
    pub kek: Kek,
    pub rate_limiter: Arc<RateLimiter>,
    /// Ceremonies started and not yet finished or expired (refreshed by upkeep).
    pub pending_ceremonies: Arc<AtomicI64>,
    /// Status-list indexes this instance hands to new licenses.
    pub slots: Arc<SlotAllocator>,
    /// How many failed sign-ins per address reach the audit log.
    pub audit_throttle: Arc<AuditThrottle>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl AppState {
    /// Checks every setting, then connects, migrates and loads the signing keys:
    /// everything `serve` needs. Nothing is written before the settings pass.
    pub async fn build(common: &Common, serve: &ServeArgs) -> anyhow::Result<Self> {
        for warning in serve.validate(common).map_err(anyhow::Error::msg)? {
            tracing::warn!("{warning}");
        }
        let given = read_kek(common)?;
        let business = serve.business.parse().map_err(anyhow::Error::msg)?;
        let store = open_store(common, serve.db_max_connections).await?;
        match Self::build_on(store.clone(), common, serve, given, business).await {
            Ok(state) => Ok(state),
            Err(err) => {
                // Closed cleanly, SQLite leaves no -wal/-shm files behind.
                store.close().await;
                Err(err)
            }
        }
    }

    async fn build_on(
        store: Store,
        common: &Common,
        serve: &ServeArgs,
        given: Option<Kek>,
        business: crate::config::Business,
    ) -> anyhow::Result<Self> {
        let kek = open_kek(common, &store, given).await?;
        store.migrate().await?;
        migrate_usernames(&store).await?;
        store
            .set_audit_retention(secs(serve.audit_retention))
            .await?;
        let origin = common.origin_str();
        let keyring = Keyring::load(&store, &kek, &origin, &common.audience()).await?;
        // `rp_id` is bound into every passkey: changing it orphans all of them.
        let rp_origin = Url::parse(&origin)?;
        let webauthn = WebauthnBuilder::new(&common.rp_id, &rp_origin)
            .map_err(|e| {
                anyhow::anyhow!("LATCHKEY_RP_ID / LATCHKEY_ORIGIN rejected by WebAuthn: {e}")
            })?
            .rp_name(&common.rp_name)
            .timeout(serve.ceremony_ttl)
            .build()
            .map_err(|e| anyhow::anyhow!("WebAuthn configuration: {e}"))?;
        let status = Arc::new(StatusLists::default());
        status.refresh(&store).await?;
        let settings = Settings {
            origin,
            base_path: serve.base_path.clone(),
            audience: common.audience(),
            license_ttl: common.license_ttl,
            ceremony_ttl: serve.ceremony_ttl,
            dpop_window_secs: secs(serve.dpop_window).max(1),
            status_list_ttl_secs: secs(serve.status_list_ttl).max(1),
            status_list_validity_secs: secs(serve.status_list_validity).max(60),
            admin_reauth_secs: i64::try_from(serve.admin_reauth_minutes.saturating_mul(60))
                .unwrap_or(i64::MAX),
            step_up_secs: i64::try_from(serve.step_up_minutes.saturating_mul(60))
                .unwrap_or(i64::MAX),
            session_ttl_secs: secs(serve.session_ttl).max(60),
            https: common.is_https(),
            trust_forwarded_for: serve.trust_forwarded_for,
            request_timeout: serve.request_timeout,
            max_pending_ceremonies: serve.max_pending_ceremonies.max(1),
            check_in_secs: serve.check_in.as_secs().max(1),
            max_devices: serve.max_devices.map(i64::from),
            device_removals_per_30d: i64::from(serve.device_removals_per_30d),
            business,
        };
        let rate_limiter = RateLimiter::new([
            serve.rate_limit_ceremonies,
            serve.rate_limit_licenses,
            serve.rate_limit_admin,
            serve.rate_limit_premium,
        ]);
        let pending_ceremonies = Arc::new(AtomicI64::new(
            store.anonymous_sessions(crate::store::now()).await?,
        ));
        let dpop_nonce = serve
            .dpop_nonce
            .then(|| NonceKey::new(kek.derive("dpop nonce"), 300));
        Ok(Self(Arc::new(Shared {
            store,
            webauthn: Arc::new(webauthn),
            settings: Arc::new(settings),
            keys: Arc::new(ArcSwap::from_pointee(keyring)),
            status,
            dpop_nonce,
            fake_credential_key: Arc::new(kek.derive("fake credential ids")),
            kek,
            rate_limiter,
            pending_ceremonies,
            slots: Arc::default(),
            audit_throttle: Arc::default(),
        })))
    }

    /// Re-reads state other instances may have changed: signing keys and status-list versions.
    pub async fn refresh_shared(&self) -> anyhow::Result<()> {
        let version = self.store.signing_keys_version().await?;
        if self.keys.load().stale(version, crate::store::now()) {
            let keyring = Keyring::load(
                &self.store,
                &self.kek,
                &self.settings.origin,
                &self.settings.audience,
            )
            .await?;
            self.keys.store(Arc::new(keyring));
            // Lists signed with a key that may no longer be published are re-signed.
            self.status.clear();
            tracing::info!("signing keys reloaded");
        }
        self.status.refresh(&self.store).await?;
        Ok(())
    }

    /// Records, once per address, the failed sign-ins that were only counted
    /// (see [`throttle`]).
    pub async fn record_counted_failures(&self) {
        use crate::store::audit::{AuditEvent, Event};
        for (addr, n) in self.audit_throttle.drain() {
            let detail = format!(
                "{n} more failures from this address were counted, not recorded one by one"
            );
            let event = AuditEvent {
                client_addr: Some(&addr),
                detail: Some(&detail),
                ..AuditEvent::new(Event::SigninFailure)
            };
            if let Err(err) = self.store.audit(&event, crate::store::now()).await {
                tracing::warn!(error = %err, "could not record counted sign-in failures");
            }
        }
    }

    /// Background upkeep: notice changes made by other instances, delete what expired.
    pub fn spawn_upkeep(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rounds: u64 = 0;
            loop {
                tick.tick().await;
                if let Err(err) = state.refresh_shared().await {
                    tracing::warn!(error = format!("{err:#}"), "could not refresh shared state");
                }
                rounds += 1;
                if rounds % 12 == 1 {
                    match state.store.delete_expired(crate::store::now()).await {
                        Ok(n) if n > 0 => tracing::debug!(deleted = n, "expired rows deleted"),
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "could not delete expired rows"),
                    }
                }
                if rounds % 720 == 1 {
                    match state.store.prune_audit(crate::store::now()).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(deleted = n, "audit rows past their retention deleted")
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "could not prune the audit log"),
                    }
                    let before = crate::store::now() - state.settings.business.log_retention_secs;
                    match state.store.prune_webhook_log(before).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(
                                deleted = n,
                                "webhook log rows past their retention deleted"
                            )
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "could not prune the webhook log"),
                    }
                }
                state.record_counted_failures().await;
                if let Ok(n) = state.store.anonymous_sessions(crate::store::now()).await {
                    state.pending_ceremonies.store(n, Ordering::Relaxed);
                }
            }
        })
    }
}

/// Gives users made before usernames were PRECIS identifiers their key and
/// confusable skeleton, then makes skeletons unique. A legacy name that no
/// longer parses keeps its old key; one whose new key or skeleton collides with
/// another user's gets a skeleton of its own (marked with its id) and a warning,
/// so no account is lost and an admin can rename one of the two.
pub async fn migrate_usernames(store: &Store) -> anyhow::Result<()> {
    for (id, username, old_key) in store.users_without_skeleton().await? {
        let (key, skeleton) = match crate::usernames::parse(&username) {
            Ok(name) => (name.key, name.skeleton),
            Err(_) => {
                let skeleton = unicode_security::confusable_detection::skeleton(&old_key).collect();
                (old_key.clone(), skeleton)
            }
        };
        if !store.set_username_identity(&id, &key, &skeleton).await? {
            tracing::warn!(user_id = %id, "this user's name matches or looks like another's; it keeps its old key");
            store
                .set_username_identity(&id, &old_key, &format!("{skeleton}#{id}"))
                .await?;
        }
    }
    store.require_unique_skeletons().await?;
    Ok(())
}

/// Creates the data directory (for the default SQLite file) and the SQLite
/// file itself as private files, then connects.
pub async fn open_store(common: &Common, max_connections: u32) -> anyhow::Result<Store> {
    let url = common.database_url();
    if common.database_url.is_none() {
        files::private_dir(&common.data_dir)?;
    }
    if let Some(path) = files::sqlite_path(&url) {
        files::private_file(&path)?;
    }
    Store::connect(&url, max_connections).await
}

/// The file that holds the KEK: `LATCHKEY_KEK_FILE`, or `kek` in the data directory.
pub fn kek_file(common: &Common) -> std::path::PathBuf {
    common
        .kek_file
        .clone()
        .unwrap_or_else(|| common.data_dir.join("kek"))
}

/// The key-encryption key from `LATCHKEY_KEK` or its file, if there is one
/// (a malformed one is an error). Reads only.
pub fn read_kek(common: &Common) -> anyhow::Result<Option<Kek>> {
    Kek::read(common.kek.as_ref().map(|s| s.expose()), &kek_file(common))
}

/// The KEK `given` by [`read_kek`], or a new one. A new key file is made only
/// for a database that holds no signing keys yet (looked at before migrating,
/// so a refusal writes nothing): a new KEK next to keys sealed with another
/// one would orphan every license in the field.
pub async fn open_kek(common: &Common, store: &Store, given: Option<Kek>) -> anyhow::Result<Kek> {
    if let Some(kek) = given {
        return Ok(kek);
    }
    let file = kek_file(common);
    if store.has_signing_keys().await? {
        anyhow::bail!(
            "LATCHKEY_KEK_FILE: {} is missing, but the database holds signing keys sealed with a KEK; restore that file (or set LATCHKEY_KEK): a new KEK would orphan every license",
            file.display()
        );
    }
    let kek = Kek::create(&file, "LATCHKEY_KEK_FILE")?;
    tracing::warn!(path = %file.display(), "created a new key-encryption key file (mode 0600); back it up: without it the signing keys cannot be used");
    Ok(kek)
}
