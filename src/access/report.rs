//! The rule checker's report: the decision, the rule that made it (by
//! index and line in the config file), and every earlier rule with why it
//! did not match. Plain text for a terminal; the caller prints it.

use std::fmt::Write;

use super::{Decision, Policy, Trace};

/// Exit status of the checker: 0 when the request would be let through
/// (after signing in, if asked), 1 when it would be refused.
pub fn exit_code(d: &Decision) -> i32 {
    match d.policy {
        Policy::Deny => 1,
        Policy::Bypass | Policy::OneFactor | Policy::TwoFactor => 0,
    }
}

/// What a policy means for the request checked.
fn meaning(d: &Decision, signed_in: bool) -> &'static str {
    match (d.policy, d.needs_subject) {
        (_, true) => {
            "sign in first; the rule names subjects, so it is asked again once the user is known"
        }
        (Policy::Bypass, _) => "allowed without signing in",
        (Policy::OneFactor, _) if signed_in => "allowed for this user, signed in with a password",
        (Policy::OneFactor, _) => "allowed after signing in",
        (Policy::TwoFactor, _) => "allowed after signing in with a second factor",
        (Policy::Deny, _) => "refused",
    }
}

/// The report. `line_of(i)` is the line of rule `i` in `file`, when known.
pub fn render(
    d: &Decision,
    traces: &[Trace],
    signed_in: bool,
    file: &str,
    line_of: impl Fn(usize) -> Option<usize>,
) -> String {
    let at = |i: usize| match line_of(i) {
        Some(l) => format!("rule {i} ({file}:{l})"),
        None => format!("rule {i}"),
    };
    let mut out = String::new();
    let who = match d.rule {
        Some(i) => at(i),
        None => "the default policy ([access] default_policy)".to_string(),
    };
    let verdict = if d.policy == Policy::Deny {
        "DENY"
    } else {
        "ALLOW"
    };
    let _ = writeln!(out, "{verdict}: {} by {who}", d.policy.as_str());
    let _ = writeln!(out, "  {}", meaning(d, signed_in));
    let earlier: Vec<&Trace> = traces.iter().filter(|t| Some(t.index) != d.rule).collect();
    if !earlier.is_empty() {
        let _ = writeln!(out, "earlier rules that did not match:");
        for t in earlier {
            let why: Vec<&str> = t.misses.iter().map(|m| m.describe()).collect();
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                at(t.index),
                t.policy.as_str(),
                why.join("; ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Miss;

    #[test]
    fn names_the_rule_its_line_and_the_misses() {
        let d = Decision {
            policy: Policy::Deny,
            rule: Some(2),
            needs_subject: false,
        };
        let traces = vec![
            Trace {
                index: 0,
                policy: Policy::Bypass,
                misses: vec![Miss::Path],
            },
            Trace {
                index: 1,
                policy: Policy::TwoFactor,
                misses: vec![Miss::Subject],
            },
            Trace {
                index: 2,
                policy: Policy::Deny,
                misses: vec![],
            },
        ];
        let text = render(&d, &traces, true, "gatehouse.toml", |i| Some(10 + 5 * i));
        assert!(
            text.starts_with("DENY: deny by rule 2 (gatehouse.toml:20)\n"),
            "{text}"
        );
        assert!(
            text.contains("rule 0 (gatehouse.toml:10) (bypass): the path and query match none"),
            "{text}"
        );
        assert!(
            text.contains(
                "rule 1 (gatehouse.toml:15) (two_factor): the user is not one of its subjects"
            ),
            "{text}"
        );
        assert_eq!(exit_code(&d), 1);
        let default = Decision {
            policy: Policy::OneFactor,
            rule: None,
            needs_subject: false,
        };
        let text = render(&default, &[], false, "g.toml", |_| None);
        assert!(
            text.starts_with("ALLOW: one_factor by the default policy"),
            "{text}"
        );
        assert_eq!(exit_code(&default), 0);
    }
}
