//! The cache of signed status lists: each list is signed once and served from
//! memory until a revocation changes its version or it ages past half its
//! validity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderValue;
use latchkey_core::jose::b64;
use latchkey_core::{sign_jwt, status_list};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::store::{Result, Store};

/// One signed list, ready to send.
pub struct Built {
    version: i64,
    built_at: i64,
    pub body: Bytes,
    pub etag: HeaderValue,
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
    fn set_versions(&self, versions: impl IntoIterator<Item = (i64, i64)>) {
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
    pub async fn refresh(&self, store: &Store) -> Result<()> {
        self.set_versions(store.status_list_versions().await?);
        Ok(())
    }

    /// The signed list `id`, from the cache or built now; `None` if there is no such list.
    pub async fn get(
        &self,
        state: &AppState,
        id: i64,
        now: i64,
    ) -> anyhow::Result<Option<Arc<Built>>> {
        // Re-sign well before `exp` so clients always get a list with time to spare.
        let max_age = (state.settings.status_list_validity_secs / 2).max(1);
        if let Some(built) = self.fresh(id, max_age, now) {
            return Ok(Some(built));
        }
        let _guard = self.building.lock().await;
        if let Some(built) = self.fresh(id, max_age, now) {
            return Ok(Some(built));
        }
        self.build(state, id, now).await
    }

    async fn build(
        &self,
        state: &AppState,
        id: i64,
        now: i64,
    ) -> anyhow::Result<Option<Arc<Built>>> {
        let settings = &state.settings;
        // Read the version before the bits: a revocation landing in between makes
        // the next request rebuild again rather than serve a list that misses it.
        let versions = state.store.status_list_versions().await?;
        self.set_versions(versions.iter().copied());
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
        let keyring = state.keys.load_full();
        let uri = settings.status_list_uri(id);
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
            let claims = status_list::claims(&uri, now, now + validity, ttl, lst);
            Ok(sign_jwt(
                &keyring.active.key,
                &keyring.active.kid,
                status_list::STATUS_LIST_TYP,
                &claims,
            )?)
        })
        .await??;
        let etag = HeaderValue::from_str(&format!(
            "\"{}\"",
            &b64(Sha256::digest(token.as_bytes()))[..22]
        ))?;
        let built = Arc::new(Built {
            version,
            built_at: now,
            body: Bytes::from(token),
            etag,
        });
        if let Ok(mut map) = self.built.lock() {
            map.insert(id, built.clone());
        }
        Ok(Some(built))
    }
}
