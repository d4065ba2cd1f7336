//! Access rules: which requests to which apps need what, decided per
//! forward-auth check. Pure: rules are compiled once at load
//! ([`Rules::compile`]), and [`Rules::decide`] takes plain values (the
//! original request, the signed-in subject) and returns a [`Decision`],
//! allocating nothing. [`Rules::explain`] walks the same rules for the rule
//! checker and says why each earlier rule did not match.
//!
//! Rules are evaluated in file order; the first match wins; an absent
//! matcher matches anything; when nothing matches, the default policy
//! applies. A rule naming subjects cannot match an anonymous request, but
//! if everything else about it matches, the anonymous request is asked to
//! sign in first (the rule may match once the subject is known) instead of
//! falling through to a later, perhaps more open, rule.

mod compile;
mod decide;
pub mod denials;
mod forwarded;
pub mod normalize;
pub mod report;

pub use compile::{RuleError, RuleSpec, Rules};
pub use decide::{Decision, Miss, Request, Subject, Trace};
pub use forwarded::{Family, Original, Unreadable, read as read_original};

use serde::Deserialize;

/// What a matching rule demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Let the request through, signed in or not.
    Bypass,
    /// A session, signed in with a password (or more).
    OneFactor,
    /// A session that completed a second factor.
    TwoFactor,
    /// Refuse, whoever asks.
    Deny,
}

/// How a rule is named in metrics, logs and audit details: its index, or
/// `default` for the default policy.
pub fn rule_label(rule: Option<usize>) -> String {
    rule.map_or_else(|| "default".to_string(), |r| r.to_string())
}

impl Default for Policy {
    /// `one_factor`: any signed-in user may reach every app, as with no rules.
    fn default() -> Self {
        Policy::OneFactor
    }
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
            Policy::Deny => "deny",
        }
    }
}
