//! Credential checks: whether a session may still be created from a
//! password (or passkey) checked against a user's entry, after a reload
//! may have replaced it.
//!
//! A [`CredentialCheck`] is plain data: a fingerprint of the password hash
//! the login verified against (SHA-256 of its PHC string, never the hash
//! itself), so any backend can compare it inside the write that creates
//! the session. The store keeps the current fingerprint of each user whose
//! credentials changed ([`SessionStore::set_credentials`](super::SessionStore::set_credentials));
//! a user never changed holds any check. The order that makes this sound:
//!
//! 1. a login takes the check from the entry whose hash it verifies;
//! 2. a reload sets the changed users' fingerprints (a removed user's to
//!    none) *before* it swaps the users and queues the revocations that end
//!    their sessions;
//! 3. the store applies writes in order, and a session-creating write with
//!    a check creates nothing when the user's fingerprint is another.
//!
//! So a session made from a password check against a replaced hash either
//! commits before the revocation (and is ended by it) or is refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

/// What a session-creating write checks: the credentials a sign-in was
/// checked against. `Debug` shows no bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CredentialCheck([u8; 32]);

impl std::fmt::Debug for CredentialCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCheck(..)")
    }
}

impl CredentialCheck {
    /// The check of a user entry whose password hash is `password_hash`.
    pub fn of(password_hash: &str) -> Self {
        CredentialCheck(Sha256::digest(password_hash.as_bytes()).into())
    }

    /// Lower-case hex, as a shared store keeps it.
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The current credentials of the users whose credentials changed, in
/// process (the redb backend's). Cheap to clone; clones share the table.
/// Bounded by the names an operator ever configured: an entry is added
/// only when a reload changes a user.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `Some`: the current check; `None`: removed, nothing holds.
    table: Arc<RwLock<HashMap<String, Option<CredentialCheck>>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.table.read().map_or(0, |t| t.len());
        f.debug_struct("Credentials").field("users", &n).finish()
    }
}

impl Credentials {
    /// Whether `check`, taken for `user`, still holds.
    pub fn holds(&self, user: &str, check: &CredentialCheck) -> bool {
        // Each update is one insert: a poisoned lock holds a consistent map.
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        match table.get(user) {
            None => true,
            Some(current) => current.as_ref() == Some(check),
        }
    }

    /// Records the current credentials of each user given: `None` for a
    /// user who was removed.
    pub fn set(&self, changes: impl IntoIterator<Item = (String, Option<CredentialCheck>)>) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.extend(changes);
    }
}

/// A check bound to the table it is checked against, as a write carries it.
#[derive(Clone, Debug)]
pub struct HeldCheck {
    pub table: Credentials,
    pub check: CredentialCheck,
}

impl HeldCheck {
    /// Whether the check still holds for `user`.
    pub fn holds(&self, user: &str) -> bool {
        self.table.holds(user, &self.check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_refuses_earlier_checks_of_that_user_only() {
        let table = Credentials::default();
        let alice = CredentialCheck::of("$argon2id$alice-old");
        let bob = CredentialCheck::of("$argon2id$bob");
        // Never changed: any check holds.
        assert!(table.holds("alice", &alice) && table.holds("bob", &bob));
        let new = CredentialCheck::of("$argon2id$alice-new");
        table.set([("alice".to_string(), Some(new))]);
        assert!(!table.holds("alice", &alice));
        assert!(table.holds("alice", &new));
        assert!(table.holds("bob", &bob));
        // Removed: nothing holds, until the name comes back.
        table.set([("alice".to_string(), None)]);
        assert!(!table.holds("alice", &new));
        table.set([("alice".to_string(), Some(alice))]);
        assert!(table.holds("alice", &alice));
        assert_eq!(format!("{alice:?}"), "CredentialCheck(..)");
    }
}
