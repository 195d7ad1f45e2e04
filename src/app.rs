//! Application state, the router, and serving with graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tower_http::services::{ServeDir, ServeFile};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::config::{Common, ServeArgs};
use crate::error::{AppError, Result};
use crate::license::dpop::NonceKey;
use crate::license::keys::{arc_swap_lite::Swap, Kek, Keyring, SharedKeyring};
use crate::middleware::RateLimiter;
use crate::revocation::StatusLists;
use crate::store::sessions::SessionDb;
use crate::store::Store;
use std::sync::atomic::{AtomicI64, Ordering};

/// Settings the handlers read, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public origin without a trailing slash, e.g. `http://localhost:8080`.
    pub origin: String,
    pub audience: String,
    pub license_ttl: Duration,
    pub ceremony_ttl: Duration,
    pub dpop_window_secs: i64,
    pub status_list_ttl_secs: i64,
    pub status_list_validity_secs: i64,
    pub admin_reauth_secs: i64,
    pub session_ttl_secs: i64,
    pub https: bool,
    pub request_timeout: Duration,
    pub max_pending_ceremonies: i64,
}

#[derive(Clone, FromRef)]
pub struct AppState {
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
    pub slots: Arc<crate::revocation::slots::SlotAllocator>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl AppState {
    /// Connects, migrates, loads the signing keys: everything `serve` needs.
    pub async fn build(common: &Common, serve: &ServeArgs) -> anyhow::Result<Self> {
        common.validate().map_err(anyhow::Error::msg)?;
        let store = open_store(common, serve.db_max_connections).await?;
        store.migrate().await?;
        let kek = load_kek(common)?;
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
            audience: common.audience(),
            license_ttl: common.license_ttl,
            ceremony_ttl: serve.ceremony_ttl,
            dpop_window_secs: secs(serve.dpop_window).max(1),
            status_list_ttl_secs: secs(serve.status_list_ttl).max(1),
            status_list_validity_secs: secs(serve.status_list_validity).max(60),
            admin_reauth_secs: i64::try_from(serve.admin_reauth_minutes.saturating_mul(60))
                .unwrap_or(i64::MAX),
            session_ttl_secs: secs(serve.session_ttl).max(60),
            https: common.is_https(),
            request_timeout: serve.request_timeout,
            max_pending_ceremonies: serve.max_pending_ceremonies.max(1),
        };
        let rate_limiter = RateLimiter::new(
            [
                serve.rate_limit_ceremonies,
                serve.rate_limit_licenses,
                serve.rate_limit_admin,
            ],
            serve.trust_forwarded_for,
        );
        let pending_ceremonies = Arc::new(AtomicI64::new(store.pending_ceremonies().await?));
        let dpop_nonce = serve
            .dpop_nonce
            .then(|| NonceKey::new(kek.derive("dpop nonce"), 300));
        Ok(Self {
            store,
            webauthn: Arc::new(webauthn),
            settings: Arc::new(settings),
            keys: Arc::new(Swap::new(keyring)),
            status,
            dpop_nonce,
            fake_credential_key: Arc::new(kek.derive("fake credential ids")),
            kek,
            rate_limiter,
            pending_ceremonies,
            slots: Arc::default(),
        })
    }

    /// Re-reads state other instances may have changed: signing keys and status-list versions.
    pub async fn refresh_shared(&self) -> anyhow::Result<()> {
        let version = self.store.signing_keys_version().await?;
        if version != self.keys.load().version {
            let keyring = Keyring::load(
                &self.store,
                &self.kek,
                &self.settings.origin,
                &self.settings.audience,
            )
            .await?;
            self.keys.store(keyring);
            // Lists signed with a key that may no longer be published are re-signed.
            self.status.clear();
            tracing::info!("signing keys reloaded");
        }
        self.status.refresh(&self.store).await?;
        Ok(())
    }
}

/// Creates the data directory (for the default SQLite file) and connects.
pub async fn open_store(common: &Common, max_connections: u32) -> anyhow::Result<Store> {
    let url = common.database_url();
    if common.database_url.is_none() {
        std::fs::create_dir_all(&common.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                common.data_dir.display()
            )
        })?;
    }
    Store::connect(&url, max_connections).await
}

pub fn load_kek(common: &Common) -> anyhow::Result<Kek> {
    let file = common
        .kek_file
        .clone()
        .unwrap_or_else(|| common.data_dir.join("kek"));
    Kek::load(common.kek.as_ref().map(|s| s.expose()), &file)
}

/// The whole HTTP surface.
pub fn build_router(state: AppState, static_dir: PathBuf, body_limit: usize) -> Router {
    let anonymous_ttl = i64::try_from(state.settings.ceremony_ttl.as_secs()).unwrap_or(300);
    let sessions = SessionManagerLayer::new(SessionDb::new(state.store.clone(), anonymous_ttl))
        .with_name(if state.settings.https {
            "__Host-latchkey"
        } else {
            "latchkey"
        })
        .with_secure(state.settings.https)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            state.settings.session_ttl_secs,
        )));
    let pages = ServeDir::new(&static_dir)
        .append_index_html_on_directories(true)
        .not_found_service(ServeFile::new(static_dir.join("404.html")));
    let admin_page = ServeFile::new(static_dir.join("admin.html"));
    // The API proper: sessions, and the same-origin check on state changes.
    let api = Router::new()
        .merge(crate::passkey::router())
        .merge(crate::license::router())
        .merge(crate::admin::router())
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_writes,
        ));
    // Public, read-only documents and pages: no session work on their hot path.
    Router::new()
        .merge(api)
        .merge(crate::license::public_router())
        .merge(crate::revocation::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route_service("/admin", admin_page)
        .fallback_service(pages)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(body_limit, limit_body))
        .layer(middleware::from_fn_with_state(
            state.rate_limiter.clone(),
            crate::middleware::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.settings.request_timeout,
            crate::middleware::timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.settings.https,
            crate::middleware::security_headers,
        ))
        .layer(middleware::from_fn(crate::middleware::trace))
        .with_state(state)
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is up",
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain")
    )
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "The database can take writes",
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Database unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn readyz(State(store): State<Store>) -> Result<&'static str> {
    tokio::time::timeout(Duration::from_secs(1), store.ping())
        .await
        .map_err(|_| AppError::Unavailable("database ping timed out".into()))??;
    Ok("ready")
}

/// State-changing requests must come from the service's own origin (CSRF defence
/// in depth, on top of SameSite=Strict cookies).
async fn same_origin_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if origin != Some(state.settings.origin.as_str()) {
            return AppError::forbidden(
                "cross-origin-request",
                "state-changing requests must come from the service's own origin",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Refuses declared bodies over the limit with a 413 problem, on every route;
/// bodies without a length are cut off at the limit by the extractors
/// (`DefaultBodyLimit`), which answer the same problem.
async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return AppError::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

/// JSON extractor whose rejections are problem documents too.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
                    "json-required",
                    "send Content-Type: application/json".into(),
                ),
                _ => AppError::bad_request("malformed-json", rejection.body_text()),
            }),
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub addr: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        Ok(Self { addr, user_agent })
    }
}

/// A JSON response that must not be stored by any cache (it carries a
/// session's data, a token or personal data).
pub fn no_store(value: serde_json::Value) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// RFC 3339 text for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Background upkeep: notice changes made by other instances, delete what expired.
pub fn spawn_upkeep(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
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
            if let Ok(n) = state.store.pending_ceremonies().await {
                state.pending_ceremonies.store(n, Ordering::Relaxed);
            }
        }
    })
}

pub fn default_static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static")
}
