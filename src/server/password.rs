//! Password hashing and verification on a bounded pool.
//!
//! argon2 is CPU-heavy by design, so it never runs on the async workers: each
//! hash runs under `spawn_blocking` while holding one permit of a semaphore
//! sized to the CPU count. At most `queue` more callers may wait for a permit;
//! beyond that [`Hasher::verify`] fails at once with [`HashError::Busy`] and the
//! login answers 503, so a flood of logins can neither queue without bound nor
//! slow down session checks.
//!
//! With the `test-util` feature the pool also has a [`HashGate`], open unless a
//! test closes it, that holds verifications before they hash so that a test can
//! act while several logins are known to be mid-check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Settings;

/// Hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot is taken and the wait queue is full.
    #[error("too many logins in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Builds the argon2id context for `s`.
pub fn argon2(s: &Argon2Settings) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` into a PHC string with a fresh random salt. Blocking.
pub fn hash_password(password: &str, s: &Argon2Settings) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError::Failed(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Failed(e.to_string()))?;
    argon2(s)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

/// Checks `password` against a PHC string. Blocking. The comparison inside
/// the argon2 crate is constant-time. A malformed hash verifies as false.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string itself.
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password: 24 characters of unpadded base64url (144 bits).
pub fn random_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The bounded hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Semaphore,
    workers: usize,
    /// Callers currently waiting for a permit; never above `queue`.
    waiting: AtomicUsize,
    queue: usize,
    /// Hash of a random password with the configured cost: unknown users are
    /// verified against it so that they take as long as known ones.
    dummy: String,
    #[cfg(feature = "test-util")]
    gate: HashGate,
}

impl Hasher {
    /// A pool of `workers` slots (0: one per core) and `queue` waiters.
    pub fn new(workers: usize, queue: usize, cost: &Argon2Settings) -> Result<Hasher, HashError> {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        };
        let dummy = hash_password(&random_password(), cost)?;
        Ok(Hasher {
            inner: Arc::new(Inner {
                permits: Semaphore::new(workers),
                workers,
                waiting: AtomicUsize::new(0),
                queue,
                dummy,
                #[cfg(feature = "test-util")]
                gate: HashGate::default(),
            }),
        })
    }

    /// The test gate every verification passes before it hashes.
    #[cfg(feature = "test-util")]
    pub fn gate(&self) -> &HashGate {
        &self.inner.gate
    }

    /// Slots busy hashing right now.
    pub fn in_use(&self) -> usize {
        self.inner.workers - self.inner.permits.available_permits()
    }

    /// Verifies `password` against `phc`, or against the dummy hash when
    /// `phc` is `None` (unknown user; the answer is then always false).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, HashError> {
        let inner = &self.inner;
        // Before the pool: a held verification takes no slot, so a test can
        // hold more of them than there are slots.
        #[cfg(feature = "test-util")]
        inner.gate.pass().await;
        let permit = match inner.permits.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                // Join the short queue if there is room, else refuse now.
                let n = inner.waiting.fetch_add(1, Ordering::AcqRel);
                if n >= inner.queue {
                    inner.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(HashError::Busy);
                }
                let p = inner.permits.acquire().await;
                inner.waiting.fetch_sub(1, Ordering::AcqRel);
                p.map_err(|_| HashError::Busy)?
            }
        };
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| inner.dummy.clone());
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        drop(permit);
        Ok(known && ok)
    }
}

/// Test hook: holds verifications while closed. Open by default, so a server
/// built with `test-util` behaves as without it until a test calls
/// [`HashGate::close`].
#[cfg(feature = "test-util")]
#[derive(Clone)]
pub struct HashGate {
    inner: Arc<GateInner>,
}

#[cfg(feature = "test-util")]
struct GateInner {
    closed: tokio::sync::watch::Sender<bool>,
    /// Verifications waiting at the closed gate.
    held: tokio::sync::watch::Sender<usize>,
    /// Verifications that went through the gate (to the pool).
    passed: AtomicUsize,
}

#[cfg(feature = "test-util")]
impl Default for HashGate {
    fn default() -> Self {
        HashGate {
            inner: Arc::new(GateInner {
                closed: tokio::sync::watch::Sender::new(false),
                held: tokio::sync::watch::Sender::new(0),
                passed: AtomicUsize::new(0),
            }),
        }
    }
}

#[cfg(feature = "test-util")]
impl HashGate {
    /// Holds every verification that arrives from now on.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Lets the held verifications and every later one through.
    pub fn open(&self) {
        self.inner.closed.send_replace(false);
    }

    /// Verifications waiting at the gate now.
    pub fn held(&self) -> usize {
        *self.inner.held.borrow()
    }

    /// Verifications that went through the gate so far.
    pub fn passed(&self) -> usize {
        self.inner.passed.load(Ordering::Acquire)
    }

    /// Completes once at least `n` verifications wait at the gate.
    pub async fn wait_held(&self, n: usize) {
        let mut rx = self.inner.held.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|h| *h >= n).await;
    }

    async fn pass(&self) {
        let mut closed = self.inner.closed.subscribe();
        if *closed.borrow_and_update() {
            // Counted while waiting, also when the waiting future is dropped.
            struct Held<'a>(&'a tokio::sync::watch::Sender<usize>);
            impl Drop for Held<'_> {
                fn drop(&mut self) {
                    self.0.send_modify(|h| *h -= 1);
                }
            }
            self.inner.held.send_modify(|h| *h += 1);
            let _held = Held(&self.inner.held);
            let _ = closed.wait_for(|c| !*c).await;
        }
        self.inner.passed.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse", &cheap()).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong", &h));
        assert!(!verify_blocking("x", "not a hash"));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let h = Hasher::new(1, 0, &cheap()).unwrap();
        assert!(!h.verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn full_pool_fails_fast() {
        let h = Hasher::new(1, 0, &cheap()).unwrap();
        let _held = h.inner.permits.try_acquire().unwrap();
        assert!(matches!(
            h.verify("x".into(), None).await,
            Err(HashError::Busy)
        ));
    }
}
