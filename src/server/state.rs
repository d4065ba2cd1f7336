//! The state every handler shares: [`AppState`], one `Arc` cloned per request.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::config::{Config, Policy, UserEntry};
use crate::store::{Backend, CredentialCheck, Revocation, RevokeReason, SessionStore, TokenStore};

/// Most (user, rule, minute) keys remembered for recording refusals.
const MAX_DENIAL_KEYS: usize = 10_000;

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What [`AppState`] holds.
pub struct Inner {
    /// Settings fixed at start. Its policy is the one the server started
    /// with; the current one is [`AppState::policy`].
    pub config: Config,
    /// The current policy, replaced whole by a reload.
    policy: RwLock<Arc<Policy>>,
    /// The store: sessions, bans and the audit trail.
    pub store: Backend,
    pub hasher: crate::server::password::Hasher,
    /// Refused logins not yet recorded, per subject and window.
    pub rejections: crate::server::guard::rejections::Rejections,
    /// Which access refusals become `access.denied` events (bounded).
    pub denials: crate::access::denials::Denials,
    pub metrics: crate::server::metrics::Metrics,
    pub activity: Arc<crate::server::activity::Activity>,
    /// Seals second-factor secrets at rest, with the data directory's key.
    pub secrets: crate::identity::secret_box::SecretBox,
    /// The WebAuthn relying party of the public origin, built once.
    pub relying: crate::server::factors::relying::Relying,
    /// Results of Basic password checks on `/auth/verify`, a minute at
    /// most, keyed by an HMAC of the credential; cleared when a reload
    /// changes users.
    pub basic: crate::identity::basic::BasicCache,
    /// TLS on the listener (`[tls]`): its certificate, reloaded with the
    /// users. `None`: plain HTTP.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The OpenID Connect provider: issuer, discovery, signing keys.
    pub oidc: crate::oidc::provider::Provider,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// A handle that does not keep the state alive (the reload task holds
    /// one, so that it ends with the server).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The state behind `weak`, while the server still holds it.
    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<AppState> {
        weak.upgrade().map(|inner| AppState { inner })
    }

    pub fn new(
        config: Config,
        store: Backend,
        hasher: crate::server::password::Hasher,
        activity: Arc<crate::server::activity::Activity>,
        secrets: crate::identity::secret_box::SecretBox,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Self {
        let rejections = crate::server::guard::rejections::Rejections::new(&config.regulation);
        let relying = crate::server::factors::relying::relying_party(&config);
        AppState {
            inner: Arc::new(Inner {
                policy: RwLock::new(config.policy().clone()),
                oidc: crate::oidc::provider::Provider::new(&config),
                config,
                store,
                hasher,
                rejections,
                denials: crate::access::denials::Denials::new(MAX_DENIAL_KEYS),
                metrics: crate::server::metrics::Metrics::default(),
                activity,
                secrets,
                relying,
                basic: crate::identity::basic::BasicCache::new(
                    BASIC_CACHE_ENTRIES,
                    crate::identity::basic::MAX_TTL_MS,
                ),
                tls,
            }),
        }
    }

    /// Records a refusal by an access rule as an `access.denied` event, at
    /// most once per user, rule and minute. Called on the forward-auth hot
    /// path, which never waits on a write: the append runs in its own short
    /// task, bounded in number by that once-a-minute rule; if it fails (a
    /// full disk, shutdown) the failure is logged and the refusal stands.
    pub fn record_denial(
        &self,
        user: &str,
        rule: Option<usize>,
        host: &str,
        path: &str,
        ip: Option<IpAddr>,
    ) {
        if !self
            .denials
            .should_record(user, rule, crate::store::now_ms())
        {
            return;
        }
        let event = crate::store::NewEvent::now(crate::store::EventKind::AccessDenied)
            .user(user.to_string())
            .ip(ip)
            .detail("host", host)
            .detail("path", path)
            .detail("rule", crate::access::rule_label(rule));
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::store::AuditStore::append(&state.store, event).await {
                tracing::warn!(error = %e, "recording an access refusal failed");
            }
        });
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` on the current policy under its read lock, without cloning
    /// the `Arc` (the forward-auth path).
    pub fn with_policy<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        f(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current entry of `name`, and the check of its credentials that
    /// a session made from it carries: it holds until a reload changes that
    /// user's credentials. (An unknown name gets the check of an empty
    /// hash, never used: no session is made for one.)
    pub fn user_for_login(&self, name: &str) -> (Option<UserEntry>, CredentialCheck) {
        let user = self.with_policy(|p| p.user(name).cloned());
        let check = CredentialCheck::of(user.as_ref().map_or("", |u| u.password_hash.as_str()));
        (user, check)
    }

    /// Replaces the policy (a reload) and ends every session and access
    /// token of a user who was removed, whose password hash changed, or who
    /// was just added. So
    /// a password change signs out the old sessions, and a name that comes
    /// back (perhaps for someone else, perhaps after being removed while the
    /// server was stopped) never inherits sessions from before.
    /// Returns the users whose sessions were ended.
    ///
    /// Logins still checking a password against the old entry are covered
    /// too: the store learns the changed users' credentials before the swap
    /// and before any revocation is queued, so their session creation is
    /// refused by the store if it comes after the revocation.
    pub async fn replace_policy(&self, policy: Arc<Policy>) -> Vec<String> {
        let old = self.policy();
        let removed_or_changed = old.users().values().filter(|u| {
            policy
                .user(&u.name)
                .is_none_or(|n| n.password_hash != u.password_hash)
        });
        let now = crate::store::now_ms();
        // A newly added name should have no sessions; any it has are leftovers.
        let mut changed: Vec<String> = removed_or_changed.map(|u| u.name.clone()).collect();
        for u in policy.users().values() {
            if old.user(&u.name).is_none()
                && (self
                    .store
                    .sessions_of(&u.name, now)
                    .await
                    .map_or(true, |s| !s.is_empty())
                    || self
                        .store
                        .tokens_of(&u.name, now)
                        .await
                        .map_or(true, |t| !t.is_empty()))
            {
                changed.push(u.name.clone());
            }
        }
        changed.sort();
        changed.dedup();
        // A name that leaves or arrives keeps no second factor: a passkey
        // left by the person who had the name must never sign in whoever
        // has it next (passkeys sign in alone).
        let mut arrived_or_left: Vec<String> = old
            .users()
            .keys()
            .filter(|n| policy.user(n).is_none())
            .chain(policy.users().keys().filter(|n| old.user(n).is_none()))
            .cloned()
            .collect();
        arrived_or_left.sort();
        // Every name whose credentials differ, removed names as none.
        // Before the swap and the revocations below: the store applies
        // writes in order, so each login of a changed user either commits
        // its session before the revocation or finds its credentials
        // replaced (and a login between this and the swap checks the old
        // entry, which no longer holds either).
        let credentials: Vec<(String, Option<CredentialCheck>)> = old
            .users()
            .keys()
            .chain(policy.users().keys())
            .filter(|n| {
                old.user(n).map(|u| &u.password_hash) != policy.user(n).map(|u| &u.password_hash)
            })
            .map(|n| {
                (
                    n.clone(),
                    policy
                        .user(n)
                        .map(|u| CredentialCheck::of(&u.password_hash)),
                )
            })
            .collect();
        if let Err(e) = self.store.set_credentials(credentials).await {
            tracing::error!(error = %e, "recording changed credentials failed");
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
        if !changed.is_empty() {
            // A Basic password checked against a replaced hash must not
            // pass from the cache for the rest of its minute.
            self.basic.clear();
        }
        for user in &changed {
            let how = Revocation::new(RevokeReason::UserChanged, crate::store::now_ms());
            if let Err(e) = self.store.revoke_user(user, None, how.clone()).await {
                tracing::error!(error = %e, user = ?user, "ending the sessions of a changed user failed");
            }
            // Queued after the sessions' revocation: a token being created
            // from one of those sessions is refused once it is gone
            // (`TokenStore::create_token`), or was created before and ends
            // here.
            if let Err(e) = self.store.revoke_user_tokens(user, how).await {
                tracing::error!(error = %e, user = ?user, "ending the tokens of a changed user failed");
            }
        }
        for user in &arrived_or_left {
            match crate::store::FactorStore::factors(&self.store, user).await {
                Ok(set) if set.is_empty() => {}
                Ok(_) => {
                    if let Err(e) =
                        crate::server::factors::reset::reset_factors(&self.store, user, "reload")
                            .await
                    {
                        tracing::error!(error = %e, user = ?user, "removing the second factors of a removed user failed");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, user = ?user, "reading the second factors of a removed user failed")
                }
            }
        }
        changed
    }
}

/// How many Basic password results are cached at once (each about 50
/// bytes); beyond it new credentials are hashed every time, still through
/// the bounded pool and the failure limit.
pub const BASIC_CACHE_ENTRIES: usize = 10_000;
