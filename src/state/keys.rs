//! Ed25519 signing keys: generated on first start, stored sealed under the
//! key-encryption key (KEK), rotated with overlap, published as a JWK set.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use latchkey_core::jose::{b64, unb64};
use latchkey_core::{
    check_time, JwkSet, LicenseClaims, PublishedJwk, PublishedJwkSet, Verifier, VerifyError,
};

use crate::store::audit::AuditEvent;
use crate::store::keys::KeyRow;
use crate::store::{now, Store};

/// The key-encryption key. Never logged, never sent anywhere.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(redacted)")
    }
}

impl Kek {
    /// From `LATCHKEY_KEK` (base64url of 32 bytes) or the key file; `None` when
    /// neither is set and the file does not exist. Reads only: whether a new key
    /// may be made is the caller's decision (never when keys are sealed already).
    pub fn read(explicit: Option<&str>, file: &Path) -> anyhow::Result<Option<Self>> {
        if let Some(text) = explicit {
            return Self::decode(text)
                .map(Some)
                .context("LATCHKEY_KEK must be 32 random bytes in base64url (43 characters)");
        }
        Self::read_file(file, "LATCHKEY_KEK_FILE")
    }

    /// The KEK in `file`, or `None` when it does not exist; errors name `setting`.
    pub fn read_file(file: &Path, setting: &str) -> anyhow::Result<Option<Self>> {
        match std::fs::read_to_string(file) {
            Ok(text) => Self::decode(text.trim()).map(Some).with_context(|| {
                format!(
                    "{setting}: {} does not hold a valid KEK (32 bytes in base64url)",
                    file.display()
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => {
                Err(err).with_context(|| format!("{setting}: cannot read {}", file.display()))
            }
        }
    }

    /// A new random KEK, written to `file` (mode 0600), which must not exist yet.
    pub fn create(file: &Path, setting: &str) -> anyhow::Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        write_private_file(file, &b64(bytes.as_ref()))
            .with_context(|| format!("{setting}: cannot create {}", file.display()))?;
        Ok(Self(bytes))
    }

    /// Whether two KEKs are the same key. Compares digests derived from them, so
    /// the comparison's timing says nothing about the keys themselves.
    pub fn same_as(&self, other: &Kek) -> bool {
        self.derive("kek identity") == other.derive("kek identity")
    }

    fn decode(text: &str) -> anyhow::Result<Self> {
        let bytes = Zeroizing::new(unb64(text).context("not base64url")?);
        let array: [u8; 32] = bytes.as_slice().try_into().context("not 32 bytes")?;
        Ok(Self(Zeroizing::new(array)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Seals a private key; the key id is bound in as associated data so a sealed
    /// key cannot be swapped onto another row.
    pub fn seal(&self, kid: &str, secret: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 {
            bail!("sealed key too short");
        }
        let (nonce, body) = sealed.split_at(24);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: kid.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                anyhow::anyhow!("cannot decrypt signing key {kid}: the key-encryption key is wrong")
            })
    }

    /// A key for a purpose, derived from the KEK (so every instance agrees on it).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"latchkey derive v1\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0.as_ref());
        h.finalize().into()
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        super::files::private_dir(parent).map_err(std::io::Error::other)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// A usable signing key.
pub struct ActiveKey {
    pub kid: String,
    pub key: SigningKey,
}

/// The keys in force: the one that signs, and the published JWK set (pre-built bytes).
pub struct Keyring {
    pub active: ActiveKey,
    /// Public keys that verify, by kid (the active one, those whose licenses have not all
    /// expired, and the announced ones that will sign next).
    pub published: Vec<(String, VerifyingKey)>,
    /// Kids of the announced keys: published, not signing yet.
    pub announced: Vec<String>,
    pub jwks: axum::body::Bytes,
    /// `/latchkey-keys.json`: the keys apps pin, current and announced next.
    pub pins: axum::body::Bytes,
    /// Verifies licenses against the published keys.
    pub verifier: Verifier,
    /// Licenses this keyring has already verified (see [`Keyring::verify_license`]).
    verified: VerifiedLicenses,
    pub version: (i64, i64, i64),
    /// When an announced key starts signing: the keyring must be loaded again then.
    pub next_change: Option<i64>,
}

/// The pinned-keys manifest apps keep with their code (see `static/latchkey.js`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PinnedKeys {
    /// Changes whenever the set of keys changes.
    pub version: String,
    /// Keys whose licenses verify now (the signing key first).
    pub keys: Vec<PublishedJwk>,
    /// Keys announced ahead of use: they sign new licenses from a later date.
    pub next: Vec<PublishedJwk>,
}

impl Keyring {
    /// Loads the keys, generating the first one on a fresh database. Refuses to
    /// go on when any key in force cannot be decrypted: making new keys then
    /// would orphan every license in the field.
    pub async fn load(
        store: &Store,
        kek: &Kek,
        issuer: &str,
        audience: &str,
    ) -> anyhow::Result<Self> {
        let mut rows = store.signing_keys().await?;
        if rows.is_empty() {
            generate(store, kek, None, 0).await?;
            rows = store.signing_keys().await?;
        }
        let version = store.signing_keys_version().await?;
        let verifier = Verifier {
            jwks: JwkSet::default(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        };
        Self::from_rows(&rows, kek, now(), version, verifier)
    }

    /// Whether the keyring must be loaded again: another instance changed the keys,
    /// or an announced key's time to sign has come.
    pub fn stale(&self, version: (i64, i64, i64), now: i64) -> bool {
        version != self.version || self.next_change.is_some_and(|at| at <= now)
    }

    fn from_rows(
        rows: &[KeyRow],
        kek: &Kek,
        now: i64,
        version: (i64, i64, i64),
        mut verifier: Verifier,
    ) -> anyhow::Result<Self> {
        let live: Vec<&KeyRow> = rows.iter().filter(|r| r.retired_at.is_none()).collect();
        // Newest first: the newest key whose time has come signs. Should every key still
        // be announced (a clock set back), the oldest one signs rather than none.
        let signing = live
            .iter()
            .find(|r| r.signs_from <= now)
            .or_else(|| live.last())
            .copied();
        let Some(signing) = signing else {
            bail!(
                "every signing key is retired: run `latchkey keys rotate --now` to make a new one"
            );
        };
        let mut active = None;
        let mut published = Vec::new();
        let mut announced = Vec::new();
        let mut next_change: Option<i64> = None;
        for row in live {
            let public: [u8; 32] = row
                .public_key
                .as_slice()
                .try_into()
                .context("stored public key is not 32 bytes")?;
            let verifying =
                VerifyingKey::from_bytes(&public).context("stored public key is invalid")?;
            if row.kid == signing.kid {
                let secret = kek.open(&row.kid, &row.sealed_private).context(
                    "the signing keys cannot be decrypted: set LATCHKEY_KEK (or LATCHKEY_KEK_FILE) to the key that encrypted them",
                )?;
                let bytes: [u8; 32] = secret
                    .as_slice()
                    .try_into()
                    .context("stored private key is not 32 bytes")?;
                let key = SigningKey::from_bytes(&bytes);
                if key.verifying_key() != verifying {
                    bail!("signing key {} does not match its public key", row.kid);
                }
                active = Some(ActiveKey {
                    kid: row.kid.clone(),
                    key,
                });
                published.push((row.kid.clone(), verifying));
            } else if row.signs_from > now {
                // Announced: apps learn it before any license carries it. Its private half
                // is opened when it starts signing.
                announced.push(row.kid.clone());
                published.push((row.kid.clone(), verifying));
                next_change = Some(next_change.map_or(row.signs_from, |t| t.min(row.signs_from)));
            } else if row.signed_until > now {
                published.push((row.kid.clone(), verifying));
            }
        }
        let Some(active) = active else {
            bail!("no signing key could be chosen");
        };
        // The signing key first, then the others as they were listed (newest first).
        published.sort_by_key(|(kid, _)| kid != &active.kid);
        let set = PublishedJwkSet {
            keys: published
                .iter()
                .map(|(_, key)| PublishedJwk::ed25519(key))
                .collect(),
        };
        let jwks = serde_json::to_vec(&set)?.into();
        let pins = pinned_keys(&published, &announced);
        let pins = serde_json::to_vec(&pins)?.into();
        for (kid, key) in &published {
            verifier.jwks.insert(kid.clone(), *key);
        }
        Ok(Self {
            active,
            published,
            announced,
            jwks,
            pins,
            verifier,
            verified: VerifiedLicenses::default(),
            version,
            next_change,
        })
    }

    /// Verifies a license presented to this service. A device presents the
    /// same license on every call, so the signature, issuer and audience of a
    /// token are checked once per keyring (a reloaded keyring, after a key
    /// change, starts empty) and only its time at each use.
    pub fn verify_license(&self, token: &str, now: i64) -> Result<Arc<LicenseClaims>, VerifyError> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self
            .verified
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned());
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verifier.verify_signed(token)?);
                if let Ok(mut map) = self.verified.0.lock() {
                    if map.len() >= VERIFIED_LICENSES_MAX {
                        map.clear();
                    }
                    map.insert(digest, claims.clone());
                }
                claims
            }
        };
        check_time(&claims, now)?;
        Ok(claims)
    }
}

/// How many verified licenses a keyring remembers; when full, it starts over.
const VERIFIED_LICENSES_MAX: usize = 4096;

/// Verified licenses' claims by the SHA-256 of the token. Only tokens that
/// verified are kept, so a flood of bad ones cannot fill it.
#[derive(Default)]
struct VerifiedLicenses(Mutex<HashMap<[u8; 32], Arc<LicenseClaims>>>);

/// The manifest of pinned keys; its version is a digest of the kids it lists.
fn pinned_keys(published: &[(String, VerifyingKey)], announced: &[String]) -> PinnedKeys {
    use sha2::{Digest, Sha256};
    let (next, keys): (Vec<_>, Vec<_>) = published
        .iter()
        .partition(|(kid, _)| announced.contains(kid));
    let mut digest = Sha256::new();
    for (kid, _) in keys.iter().chain(next.iter()) {
        digest.update(kid.as_bytes());
        digest.update([0]);
    }
    digest.update([u8::from(!next.is_empty())]);
    PinnedKeys {
        version: b64(&digest.finalize()[..12]),
        keys: keys.iter().map(|(_, k)| PublishedJwk::ed25519(k)).collect(),
        next: next.iter().map(|(_, k)| PublishedJwk::ed25519(k)).collect(),
    }
}

/// Makes a new signing key, published at once and signing `announce_secs` from now
/// (0: at once); `audit` records who made it.
pub async fn generate(
    store: &Store,
    kek: &Kek,
    audit: Option<&AuditEvent<'_>>,
    announce_secs: i64,
) -> anyhow::Result<String> {
    let created = now();
    let key = SigningKey::generate(&mut OsRng);
    let kid = PublishedJwk::ed25519(&key.verifying_key()).kid;
    let sealed = kek.seal(&kid, key.as_bytes())?;
    let audit = audit.map(|a| AuditEvent {
        target: Some(&kid),
        ..a.clone()
    });
    store
        .insert_signing_key(
            &kid,
            key.verifying_key().as_bytes(),
            &sealed,
            audit.as_ref(),
            created,
            created.saturating_add(announce_secs.max(0)),
        )
        .await?;
    Ok(kid)
}

/// The keyring every request reads and upkeep replaces when keys change.
pub type SharedKeyring = std::sync::Arc<arc_swap::ArcSwap<Keyring>>;
