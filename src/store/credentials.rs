//! Credential generations: which version of each user's credentials a new
//! session may still be created against.
//!
//! The table is plain data (user name to a counter) shared between whoever
//! changes credentials (the server's reload) and the writer thread, which
//! checks it inside the transaction that would create a session. The order
//! that makes this sound:
//!
//! 1. a login takes a [`CredentialCheck`] (the user's generation) together
//!    with the password hash it verifies against;
//! 2. a reload bumps the generation of every changed user *before* it queues
//!    the `Op::RevokeUser` that ends their sessions;
//! 3. the writer applies operations in queue order, and
//!    `Op::CreateSessionAudited` with a check creates nothing when the
//!    generation has moved.
//!
//! So a session made from a password check against a replaced hash either
//! commits before the revocation (and is ended by it) or is refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Per-user credential generations. Cheap to clone; clones share the table.
/// A user never bumped is at generation 0. Entries are only ever added by
/// [`CredentialGenerations::bump`], once per user whose credentials change,
/// so the table is bounded by the names an operator ever configured.
#[derive(Clone, Default)]
pub struct CredentialGenerations {
    table: Arc<RwLock<HashMap<String, u64>>>,
}

impl std::fmt::Debug for CredentialGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialGenerations")
            .field("users", &self.read().len())
            .finish()
    }
}

impl CredentialGenerations {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, u64>> {
        // Each update is one insert: a poisoned lock holds a consistent map.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The current generation of `user`.
    pub fn current(&self, user: &str) -> u64 {
        self.read().get(user).copied().unwrap_or(0)
    }

    /// Moves each of `users` to a new generation: checks taken before no
    /// longer hold.
    pub fn bump<'a>(&self, users: impl IntoIterator<Item = &'a str>) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        for user in users {
            let g = table.entry(user.to_string()).or_insert(0);
            *g = g.wrapping_add(1);
        }
    }

    /// A check that holds while `user`'s generation stays what it is now.
    pub fn check(&self, user: &str) -> CredentialCheck {
        CredentialCheck {
            generations: self.clone(),
            generation: self.current(user),
        }
    }
}

/// The generation a password was checked against, carried by the operation
/// that creates the session.
#[derive(Clone, Debug)]
pub struct CredentialCheck {
    generations: CredentialGenerations,
    generation: u64,
}

impl CredentialCheck {
    /// Whether `user`'s credentials are still those the check was taken for.
    pub fn holds(&self, user: &str) -> bool {
        self.generations.current(user) == self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_invalidates_earlier_checks_of_that_user_only() {
        let g = CredentialGenerations::default();
        let alice = g.check("alice");
        let bob = g.check("bob");
        assert!(alice.holds("alice") && bob.holds("bob"));
        g.bump(["alice"]);
        assert!(!alice.holds("alice"));
        assert!(bob.holds("bob"));
        assert!(g.check("alice").holds("alice"));
    }
}
