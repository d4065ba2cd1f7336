//! The policy: who may sign in (and, as they are added, access rules and
//! groups). One immutable value built from a validated config; a running
//! server holds the current one behind a single lock and a reload replaces
//! it whole, so a request never sees parts of two reloads.

use std::collections::HashMap;
use std::sync::Arc;

use super::oidc::OidcClient;
use super::schema::{Argon2Settings, UserEntry};
use crate::access::Rules;

/// Users and the access rules that refer to them, fixed once built.
#[derive(Debug, Default)]
pub struct Policy {
    /// Users by name; names are unique and validated.
    users: HashMap<String, UserEntry>,
    /// Each user's groups as `Remote-Groups` sends them, comma-separated,
    /// made once here rather than on every forward-auth check.
    groups: HashMap<String, String>,
    /// Each user's groups as a list, for access rules.
    group_lists: HashMap<String, Vec<String>>,
    /// Compiled access rules.
    rules: Rules,
    /// OpenID Connect clients, by id.
    clients: HashMap<String, Arc<OidcClient>>,
}

impl Policy {
    /// A policy of already validated users and compiled rules (see
    /// [`super::Config::load`]).
    pub(super) fn new(
        users: HashMap<String, UserEntry>,
        rules: Rules,
        clients: Vec<OidcClient>,
    ) -> Policy {
        let groups = users
            .values()
            .map(|u| (u.name.clone(), u.all_groups().collect::<Vec<_>>().join(",")))
            .collect();
        let group_lists = users
            .values()
            .map(|u| (u.name.clone(), u.all_groups().map(str::to_string).collect()))
            .collect();
        Policy {
            users,
            groups,
            group_lists,
            rules,
            clients: clients
                .into_iter()
                .map(|c| (c.id.clone(), Arc::new(c)))
                .collect(),
        }
    }

    /// User `name`'s groups (empty for none or an unknown name).
    pub fn group_list(&self, name: &str) -> &[String] {
        self.group_lists.get(name).map_or(&[], Vec::as_slice)
    }

    /// User `name`'s groups, comma-separated (empty for none).
    pub fn groups_header(&self, name: &str) -> &str {
        self.groups.get(name).map_or("", String::as_str)
    }

    /// The access rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The OpenID Connect client `id`.
    pub fn client(&self, id: &str) -> Option<&Arc<OidcClient>> {
        self.clients.get(id)
    }

    /// Every OpenID Connect client, by id.
    pub fn clients(&self) -> &HashMap<String, Arc<OidcClient>> {
        &self.clients
    }

    /// The entry of user `name`.
    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> &HashMap<String, UserEntry> {
        &self.users
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user at all (the server then creates one).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Users whose hash is not argon2id at cost `a`, sorted. A login for an
    /// unknown name is checked against a dummy hash at that cost, so a failed
    /// login for one of these users takes a different time than one for a
    /// name that does not exist, which tells that the name exists.
    pub fn users_with_other_cost(&self, a: &Argon2Settings) -> Vec<String> {
        let mut odd: Vec<String> = self
            .users
            .values()
            .filter(|u| {
                let Ok(h) = argon2::PasswordHash::new(&u.password_hash) else {
                    return true;
                };
                let param = |name: &str| h.params.get_decimal(name);
                h.algorithm.as_str() != "argon2id"
                    || param("m") != Some(a.memory_kib)
                    || param("t") != Some(a.iterations)
                    || param("p") != Some(a.parallelism)
            })
            .map(|u| u.name.clone())
            .collect();
        odd.sort();
        odd
    }
}
