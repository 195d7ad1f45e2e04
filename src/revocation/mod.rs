//! Revocation reaching offline apps: signed status lists, served from a cache
//! of pre-signed bodies that is rebuilt when a revocation changes a list.

pub mod slots;
pub mod status_list;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::license::jose::b64;
use crate::store::now;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/status-lists/{id}", get(serve))
}

/// One signed list, ready to send.
pub struct Built {
    version: i64,
    built_at: i64,
    body: Bytes,
    etag: HeaderValue,
}

/// The cache of built lists and the versions last seen in the database.
#[derive(Default)]
pub struct StatusLists {
    built: Mutex<HashMap<i64, Arc<Built>>>,
    versions: Mutex<HashMap<i64, i64>>,
    /// Serialises rebuilds so a burst of requests builds a list once.
    building: tokio::sync::Mutex<()>,
}

impl StatusLists {
    /// Records the current versions (from the database); lists whose version
    /// moved are rebuilt on their next request.
    pub fn set_versions(&self, versions: impl IntoIterator<Item = (i64, i64)>) {
        if let Ok(mut map) = self.versions.lock() {
            map.extend(versions);
        }
    }

    fn fresh(&self, id: i64, max_age: i64, now: i64) -> Option<Arc<Built>> {
        let version = *self.versions.lock().ok()?.get(&id)?;
        let built = self.built.lock().ok()?.get(&id)?.clone();
        (built.version == version && now - built.built_at < max_age).then_some(built)
    }

    /// Forgets every built list (after the signing keys changed).
    pub fn clear(&self) {
        if let Ok(mut map) = self.built.lock() {
            map.clear();
        }
    }

    /// Re-reads list versions from the database (after a local revocation, or periodically).
    pub async fn refresh(&self, store: &crate::store::Store) -> Result<(), sqlx::Error> {
        self.set_versions(store.status_list_versions().await?);
        Ok(())
    }
}

async fn build(state: &AppState, id: i64, now: i64) -> Result<Option<Arc<Built>>> {
    let settings = &state.settings;
    // Read the version before the bits: a revocation landing in between makes
    // the next request rebuild again rather than serve a list that misses it.
    let versions = state.store.status_list_versions().await?;
    state.status.set_versions(versions.iter().copied());
    let Some(version) = versions
        .iter()
        .find(|(list, _)| *list == id)
        .map(|(_, v)| *v)
    else {
        return Ok(None);
    };
    let Some((size, revoked)) = state.store.status_list_bits(id).await? else {
        return Ok(None);
    };
    let keyring = state.keys.load();
    let uri = format!("{}/api/status-lists/{id}", settings.origin);
    let (ttl, validity) = (
        settings.status_list_ttl_secs,
        settings.status_list_validity_secs,
    );
    let token = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let bits = status_list::bitstring(
            u64::try_from(size).unwrap_or(0),
            revoked.into_iter().filter_map(|i| u64::try_from(i).ok()),
        );
        let lst = status_list::encode_lst(&bits)?;
        let claims = status_list::claims(&uri, now, now + validity, ttl, &lst);
        crate::license::sign_jwt(
            &keyring.active.key,
            &keyring.active.kid,
            status_list::STATUS_LIST_TYP,
            &claims,
        )
    })
    .await
    .map_err(anyhow::Error::from)??;
    let etag = HeaderValue::from_str(&format!(
        "\"{}\"",
        &b64(Sha256::digest(token.as_bytes()))[..22]
    ))
    .map_err(anyhow::Error::from)?;
    let built = Arc::new(Built {
        version,
        built_at: now,
        body: Bytes::from(token),
        etag,
    });
    if let Ok(mut map) = state.status.built.lock() {
        map.insert(id, built.clone());
    }
    Ok(Some(built))
}

#[utoipa::path(
    get,
    path = "/api/status-lists/{id}",
    tag = "licenses",
    summary = "A signed status list (application/statuslist+jwt)",
    params(("id" = i64, Path, description = "list id")),
    responses(
        (status = 200, description = "Status list token; ETag and Cache-Control from ttl", body = String, content_type = "application/statuslist+jwt"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such list", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn serve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let not_found = || {
        AppError::not_found(
            "no-such-status-list",
            "there is no status list with this id",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let now = now();
    // Re-sign well before `exp` so clients always get a list with time to spare.
    let max_age = (state.settings.status_list_validity_secs / 2).max(1);
    let built = match state.status.fresh(id, max_age, now) {
        Some(built) => built,
        None => {
            let _guard = state.status.building.lock().await;
            match state.status.fresh(id, max_age, now) {
                Some(built) => built,
                None => build(&state, id, now).await?.ok_or_else(not_found)?,
            }
        }
    };
    let cache_control = format!("public, max-age={}", state.settings.status_list_ttl_secs);
    let mut response = if headers.get(header::IF_NONE_MATCH) == Some(&built.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/statuslist+jwt"),
            )],
            built.body.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, built.etag.clone());
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(response)
}
