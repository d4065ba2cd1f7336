//! The per-node caches of session and access-token lookups, so that the
//! forward-auth check answers on the spot (`session_by_hash_now`,
//! `token_by_hash_now`) for credentials this node has seen.
//!
//! Invariants:
//! - A miss is never cached: a session made on another node is read from
//!   Redis the first time, and then cached.
//! - An entry serves only while the node is subscribed to the deployment's
//!   invalidation channel (`<prefix>:inv`, published by every script that
//!   removes a session or a token). The cache is flushed when the subscription is
//!   lost and again when it is back; meanwhile every lookup is a miss, and
//!   a miss that cannot reach Redis fails closed.
//! - An entry ends at the credential's deadline as cached, and at most
//!   [`MAX_AGE_MS`] after it was read: another node's touch may have moved
//!   the deadline on, so that is only a miss, never a wrong answer.
//! - This node's own revocations evict before they answer.
//! - At most [`CAPACITY`] entries; when full, ended entries go, and a new
//!   one is not cached if none did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::connection::Conn;
use crate::domain::{AccessTokenInfo, Session, TokenHash};

/// Entries kept at most.
pub const CAPACITY: usize = 100_000;

/// The longest an entry serves after it was read.
pub const MAX_AGE_MS: u64 = 5_000;

/// What a node's markers on the invalidation channel start with (a hash
/// is 64 hex digits, never this).
const MARKER: &str = "mark:";

/// How long the listener waits before subscribing again after a failure.
const RESUBSCRIBE: Duration = Duration::from_millis(200);

/// What a cache holds: whose it is, and until when it is valid.
pub(super) trait Cached: Clone {
    fn user(&self) -> &str;
    fn deadline_ms(&self) -> u64;
}

impl Cached for Session {
    fn user(&self) -> &str {
        &self.user
    }
    fn deadline_ms(&self) -> u64 {
        Session::deadline_ms(self)
    }
}

impl Cached for AccessTokenInfo {
    fn user(&self) -> &str {
        &self.user
    }
    fn deadline_ms(&self) -> u64 {
        self.expires_ms
    }
}

/// One kind's cache (see the module documentation).
pub(super) struct Cache<V> {
    entries: Mutex<HashMap<TokenHash, (V, u64)>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Cached> Cache<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, (V, u64)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached live record of `hash` at `now_ms`, if any.
    fn get(&self, hash: &TokenHash, now_ms: u64) -> Option<V> {
        let entries = self.lock();
        let (v, until) = entries.get(hash)?;
        (now_ms < *until).then(|| v.clone())
    }

    fn put(&self, hash: TokenHash, v: &V, now_ms: u64) {
        let until = v.deadline_ms().min(now_ms.saturating_add(MAX_AGE_MS));
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&hash) {
            entries.retain(|_, (_, u)| *u > now_ms);
            if entries.len() >= CAPACITY {
                return;
            }
        }
        entries.insert(hash, (v.clone(), until));
    }

    fn evict(&self, hash: &TokenHash) {
        self.lock().remove(hash);
    }

    fn evict_user(&self, user: &str) {
        self.lock().retain(|_, (v, _)| v.user() != user);
    }

    fn clear(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The node's caches: sessions and access tokens.
#[derive(Default)]
pub(super) struct Caches {
    pub(super) sessions: Cache<Session>,
    pub(super) tokens: Cache<AccessTokenInfo>,
    /// Subscribed to the invalidation channel: entries may serve.
    live: AtomicBool,
    /// Bumped at each removal heard and each change of `live`: one
    /// value, never a queue.
    removals: tokio::sync::watch::Sender<u64>,
    /// The last of this node's own markers heard back on the channel
    /// ([`Caches::marker`]): every removal published before it has been
    /// heard too, since Redis delivers one channel's messages in order.
    heard: tokio::sync::watch::Sender<u64>,
    /// This node's markers so far, and its id among the nodes.
    markers: std::sync::atomic::AtomicU64,
    node: std::sync::OnceLock<u64>,
}

impl Caches {
    /// The cached live record of `hash` in `cache` (one of these caches),
    /// while entries may serve.
    pub(super) fn get<V: Cached>(
        &self,
        cache: &Cache<V>,
        hash: &TokenHash,
        now_ms: u64,
    ) -> Option<V> {
        self.is_live().then(|| cache.get(hash, now_ms)).flatten()
    }

    /// Caches a live record just read from Redis, while entries may serve.
    pub(super) fn put<V: Cached>(&self, cache: &Cache<V>, hash: TokenHash, v: &V, now_ms: u64) {
        if self.is_live() {
            cache.put(hash, v, now_ms);
        }
    }

    /// Forgets `hash`, whichever kind it names.
    pub(super) fn evict(&self, hash: &TokenHash) {
        self.sessions.evict(hash);
        self.tokens.evict(hash);
    }

    pub(super) fn evict_user_sessions(&self, user: &str) {
        self.sessions.evict_user(user);
    }

    pub(super) fn evict_user_tokens(&self, user: &str) {
        self.tokens.evict_user(user);
    }

    /// A notice of [`Caches::removed`].
    pub(super) fn removals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.removals.subscribe()
    }

    /// Tells the holders of a notice that something may have ended.
    fn removed(&self) {
        self.removals.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new marker to publish on the channel, and its number: once
    /// [`Caches::heard_up_to`] reaches it, every invalidation published
    /// before it has been applied here.
    pub(super) fn marker(&self) -> (String, u64) {
        let n = self.markers.fetch_add(1, Ordering::Relaxed) + 1;
        (format!("{MARKER}{}:{n}", self.node_id()), n)
    }

    /// Waits until marker `n` has been heard, or the cache stops serving
    /// (then nothing is answered from it).
    pub(super) async fn heard_up_to(&self, n: u64) {
        let mut heard = self.heard.subscribe();
        let mut removals = self.removals.subscribe();
        while *heard.borrow_and_update() < n && self.is_live() {
            tokio::select! {
                _ = heard.changed() => {}
                _ = removals.changed() => {}
            }
        }
    }

    fn node_id(&self) -> u64 {
        *self
            .node
            .get_or_init(|| getrandom::u64().unwrap_or_else(|_| crate::domain::now_us()))
    }

    /// A marker of this node's (`<MARKER><node>:<n>`) heard on the channel.
    fn hear_marker(&self, payload: &[u8]) {
        let own = std::str::from_utf8(payload)
            .ok()
            .and_then(|p| p.strip_prefix(MARKER))
            .and_then(|p| p.split_once(':'))
            .filter(|(node, _)| node.parse() == Ok(self.node_id()))
            .and_then(|(_, n)| n.parse::<u64>().ok());
        if let Some(n) = own {
            self.heard.send_modify(|h| *h = (*h).max(n));
        }
    }

    /// Whether entries may serve (subscribed).
    pub(super) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Sets whether entries may serve; flushes on every change.
    fn set_live(&self, live: bool) {
        self.sessions.clear();
        self.tokens.clear();
        self.live.store(live, Ordering::Release);
        self.sessions.clear();
        self.tokens.clear();
        self.removed();
    }

    #[cfg(test)]
    pub(super) fn sessions_held(&self) -> usize {
        self.sessions.len()
    }
}

/// Keeps `cache` subscribed to `channel` on the server `conn` reaches,
/// evicting each hash published there. When `conn` moves to another
/// server (a Sentinel failover), the subscription moves with it, the cache
/// flushed meanwhile. Ends when the cache is dropped.
pub(super) async fn listen(conn: Conn, channel: String, cache: Weak<Caches>) {
    let mut server = conn.server();
    loop {
        let Some(c) = cache.upgrade() else { return };
        c.set_live(false);
        drop(c);
        let subscribed = async {
            let client = conn.target().client().await.ok()?;
            let at = client.get_connection_info().addr().to_string();
            let mut ps = client.get_async_pubsub().await.ok()?;
            ps.subscribe(&channel).await.ok()?;
            Some((ps, at))
        };
        // Bounded like a connection attempt: a Sentinel or server that
        // does not answer never holds the listener (nor the Sentinel
        // lookup it shares with the connection).
        let subscribed = tokio::time::timeout(super::connection::ATTEMPT_TIMEOUT, subscribed);
        if let Ok(Some((mut ps, at))) = subscribed.await {
            let Some(c) = cache.upgrade() else { return };
            c.set_live(true);
            drop(c);
            server.mark_unchanged();
            let mut messages = ps.on_message();
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    moved = server.changed() => {
                        let elsewhere = moved.is_ok()
                            && server.borrow_and_update().as_deref().is_some_and(|s| s != at);
                        if elsewhere {
                            tracing::warn!("Redis moved; the session cache follows it, flushed meanwhile");
                            break;
                        }
                        continue;
                    }
                };
                let Some(m) = m else {
                    tracing::warn!(
                        "the session cache lost its invalidations; flushed until they are back"
                    );
                    break;
                };
                let Some(c) = cache.upgrade() else { return };
                let payload = m.get_payload_bytes();
                if let Some(hash) = parse_hex(payload) {
                    c.evict(&hash);
                    c.removed();
                } else {
                    c.hear_marker(payload);
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// The token hash written as 64 hex digits.
pub(super) fn parse_hex(bytes: &[u8]) -> Option<TokenHash> {
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(TokenHash(out))
}

/// The listener's task, ended when the last handle of the state is dropped.
pub(super) struct Listener {
    pub(super) cache: Arc<Caches>,
    task: tokio::task::AbortHandle,
}

impl Listener {
    pub(super) fn start(conn: &Conn, channel: String) -> Listener {
        let cache = Arc::new(Caches::default());
        let task =
            tokio::spawn(listen(conn.clone(), channel, Arc::downgrade(&cache))).abort_handle();
        Listener { cache, task }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
