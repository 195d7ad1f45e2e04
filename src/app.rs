//! The router that puts the features together, and serving with graceful shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::config::ConnectionLimits;
use crate::http::middleware::{
    client_addr, no_such_endpoint, problems, record_metrics, request_span, same_origin_writes,
    sane_request_id, security_headers,
};
use crate::http::ratelimit::rate_limit;
use crate::state::AppState;
use crate::store::sessions::SessionDb;

/// The whole HTTP surface, under the base path when there is one.
pub fn build_router(state: AppState, static_dir: PathBuf, body_limit: usize) -> Router {
    let base = state.settings.base_path.clone();
    let https = state.settings.https;
    let router = routes(state, static_dir, body_limit);
    if base.is_empty() {
        router
    } else {
        // The answers outside the prefix get the same security headers as those inside.
        Router::new()
            .fallback_service(router)
            .layer(from_fn_with_state(Arc::<str>::from(base), under_base))
            .layer(from_fn_with_state(https, security_headers))
    }
}

/// Everything is served under the base path: its prefix is taken off before
/// routing, so routes, rate-limit classes and metrics labels stay the same;
/// `/auth` itself redirects to `/auth/`, where the pages' relative links work.
async fn under_base(State(base): State<Arc<str>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if path == &*base {
        let location = format!("{base}/{query}");
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let Some(rest) = path.strip_prefix(&*base).filter(|r| r.starts_with('/')) else {
        return crate::error::AppError::not_found(
            "not-found",
            format!("This service answers under {base}/ only."),
        )
        .into_response();
    };
    match format!("{rest}{query}").parse::<Uri>() {
        Ok(inner) => {
            *request.uri_mut() = inner;
            next.run(request).await
        }
        Err(_) => {
            crate::error::AppError::bad_request("bad-request", "The request's path cannot be read.")
                .into_response()
        }
    }
}

/// The 404 page, with its root-relative links put under the base path (it is
/// shown at any depth, so it cannot use relative links as the other pages do).
fn not_found_page(static_dir: &std::path::Path, base: &str) -> Html<String> {
    let page = std::fs::read_to_string(static_dir.join("404.html")).unwrap_or_else(|_| {
        "<!doctype html><title>Not found</title><p>There is nothing at this address.</p>".into()
    });
    Html(
        page.replace("href=\"/", &format!("href=\"{base}/"))
            .replace("src=\"/", &format!("src=\"{base}/")),
    )
}

/// The routes, pages and layers, as seen below the base path.
fn routes(state: AppState, static_dir: PathBuf, body_limit: usize) -> Router {
    let settings = state.settings.clone();
    let anonymous_ttl = i64::try_from(settings.ceremony_ttl.as_secs()).unwrap_or(300);
    let sessions = SessionManagerLayer::new(SessionDb::new(state.store.clone(), anonymous_ttl))
        .with_name(crate::http::session::cookie_name(settings.https))
        .with_secure(settings.https)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            settings.session_ttl_secs,
        )));
    let not_found = not_found_page(&static_dir, &settings.base_path);
    let pages = ServeDir::new(&static_dir)
        .append_index_html_on_directories(true)
        .not_found_service(any(move || std::future::ready(not_found.clone())));
    let admin_page = ServeFile::new(static_dir.join("admin.html"));
    let origin: Arc<str> = settings.origin.as_str().into();
    let (api, api_doc) = session_routes()
        .layer(sessions)
        .layer(from_fn_with_state(origin, same_origin_writes))
        .split_for_parts();
    let (public, public_doc) = public_routes().split_for_parts();
    let mut doc = crate::openapi::document([api_doc, public_doc]);
    if !settings.base_path.is_empty() {
        // Paths in the document are below the base path; the server entry says where that is.
        doc.servers = Some(vec![utoipa::openapi::server::Server::new(
            settings.base_path.clone(),
        )]);
    }
    let doc = crate::openapi::Serialized(Arc::new(
        serde_json::to_vec(&doc).unwrap_or_default().into(),
    ));
    Router::new()
        .merge(api)
        .merge(public)
        .merge(
            Router::new()
                .route("/openapi.json", get(crate::openapi::openapi_json))
                .with_state(doc),
        )
        .route("/api/{*rest}", {
            let document: Arc<str> = format!("{}/openapi.json", settings.base_path).into();
            any(move || no_such_endpoint(document.clone()))
        })
        .route_service("/admin", admin_page)
        .fallback_service(pages)
        // Innermost first: metrics see the matched route.
        .layer(from_fn(record_metrics))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(from_fn_with_state(state.rate_limiter.clone(), rate_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(from_fn(problems))
        .layer(from_fn_with_state(settings.https, security_headers))
        .layer(from_fn_with_state(
            settings.trust_forwarded_for,
            client_addr,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(from_fn(sane_request_id))
        .with_state(state)
}

/// The API proper: it uses sessions, and state changes must come from the
/// service's own origin.
fn session_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::passkey::router())
        .merge(crate::license::router())
        .merge(crate::devices::router())
        .merge(crate::admin::router())
        .merge(crate::apikeys::router())
        .merge(crate::webhooks::router())
}

/// Public, read-only documents and probes: no session work on their hot path.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::license::public_router())
        .merge(crate::revocation::router())
        .merge(crate::health::router())
        .merge(crate::billing::router())
}

/// The OpenAPI document of everything [`build_router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::openapi::document([
        session_routes().into_openapi(),
        public_routes().into_openapi(),
    ])
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// HTTP/1.1 and HTTP/2 (cleartext); each connection must send its request
/// head within the header-read timeout, and at most `max_connections` are
/// served at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
