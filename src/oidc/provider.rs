//! [`Provider`]: the provider's part of the shared state (the issuer, the
//! discovery document made once, the signing keys), and making and
//! rotating the keys in the store. Knows nothing of HTTP.

use std::sync::{Arc, RwLock};

use crate::domain::oidc::StoredSigningKey;
use crate::identity::secret_box::SecretBox;
use crate::oidc::keys::{KeyError, KeyRing, SigningKey};
use crate::store::{Backend, OidcStore, now_ms};

/// Longest lifetime of any ID token a client may ask for: a retired key
/// stays published at least this long after its rotation.
pub const KEY_OVERLAP_MS: u64 = 86_400_000;

/// The provider's state.
pub struct Provider {
    /// `public_origin` without a trailing slash; `None` when unset (then no
    /// client can be configured).
    pub issuer: Option<String>,
    /// `/.well-known/openid-configuration`, made once.
    pub discovery: Option<String>,
    /// The keys in force; `None` until first loaded.
    keys: RwLock<Option<Arc<KeyRing>>>,
    /// One key creation or rotation at a time on this node.
    making: tokio::sync::Mutex<()>,
}

impl Provider {
    pub fn new(config: &crate::config::Config) -> Provider {
        let issuer = config
            .public_origin
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string());
        let discovery = issuer.as_deref().map(crate::oidc::discovery_document);
        Provider {
            issuer,
            discovery,
            keys: RwLock::new(None),
            making: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys in force: loaded from the store on first use, or made and
    /// stored when it holds none; loaded again once a retired key's
    /// publication has ended, so that it leaves the JWKS.
    pub async fn keys(
        &self,
        store: &Backend,
        secrets: &SecretBox,
    ) -> Result<Arc<KeyRing>, KeyOpError> {
        let fresh = |k: &Arc<KeyRing>| k.publish_ends_ms().is_none_or(|end| now_ms() < end);
        if let Some(k) = self.keys.read().expect("keys lock").clone().filter(fresh) {
            return Ok(k);
        }
        let _one = self.making.lock().await;
        if let Some(k) = self.keys.read().expect("keys lock").clone().filter(fresh) {
            return Ok(k);
        }
        let ring = load_or_make(store, secrets).await?;
        *self.keys.write().expect("keys lock") = Some(ring.clone());
        Ok(ring)
    }

    /// Makes a new signing key current and retires the one in force (kept
    /// in the JWKS for [`KEY_OVERLAP_MS`]). Returns the new key's `kid`.
    pub async fn rotate(&self, store: &Backend, secrets: &SecretBox) -> Result<String, KeyOpError> {
        let _one = self.making.lock().await;
        let stored = store
            .signing_keys()
            .await
            .map_err(|e| KeyOpError::Store(e.to_string()))?;
        let current = stored
            .first()
            .filter(|k| k.retired_ms.is_none())
            .map(|k| k.kid.clone());
        let kid = rotate_stored(store, secrets, current).await?;
        let ring = reload(store, secrets).await?;
        *self.keys.write().expect("keys lock") = Some(ring);
        Ok(kid)
    }
}

/// A key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the store failed: {0}")]
    Store(String),
}

/// Stores a new key as the current one, retiring `current`.
async fn rotate_stored(
    store: &Backend,
    secrets: &SecretBox,
    current: Option<String>,
) -> Result<String, KeyOpError> {
    let key = SigningKey::generate()?;
    let now = now_ms();
    let sealed: StoredSigningKey = key.seal(secrets, now)?;
    store
        .add_signing_key(sealed, current, now + KEY_OVERLAP_MS, now)
        .await
        .map_err(|e| KeyOpError::Store(e.to_string()))?;
    Ok(key.kid().to_string())
}

async fn reload(store: &Backend, secrets: &SecretBox) -> Result<Arc<KeyRing>, KeyOpError> {
    let stored = store
        .signing_keys()
        .await
        .map_err(|e| KeyOpError::Store(e.to_string()))?;
    KeyRing::open(&stored, secrets, now_ms())?
        .map(Arc::new)
        .ok_or_else(|| KeyOpError::Store("the store holds no current signing key".into()))
}

/// The stored keys, after making the first one if there is none.
pub async fn load_or_make(
    store: &Backend,
    secrets: &SecretBox,
) -> Result<Arc<KeyRing>, KeyOpError> {
    let stored = store
        .signing_keys()
        .await
        .map_err(|e| KeyOpError::Store(e.to_string()))?;
    if stored.first().is_none_or(|k| k.retired_ms.is_some()) {
        rotate_stored(store, secrets, None).await?;
    }
    reload(store, secrets).await
}
