//! Rule specifications as the config file states them, and their compiled
//! form: lower-cased domains split into exact names and `*.` suffixes, one
//! `RegexSet` per rule for its paths, parsed networks, upper-cased
//! methods, and subjects split into user and group names.

use std::collections::HashMap;

use regex::RegexSet;
use serde::Deserialize;

use super::Policy;
use crate::domain::IpNet;

/// Longest regex source accepted, and the compiled size limit: a rule file
/// cannot make matching slow or compilation huge.
const MAX_PATTERN: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most rules in one file.
pub const MAX_RULES: usize = 10_000;

/// One `[[rules]]` entry. Every matcher is optional; an absent one matches
/// anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Exact host names, or `*.example.com` for any subdomain of it.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    /// Regexes on the path plus query; any may match.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// HTTP methods.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Client networks in CIDR form (IPv4 and IPv6).
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// `user:NAME` or `group:NAME`; any may match.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    pub policy: Policy,
    /// On a `two_factor` rule: let a request authenticated by an access
    /// token through (a token counts as one factor, so such a rule refuses
    /// it otherwise). Meaningless on other policies, so refused there.
    #[serde(default)]
    pub allow_tokens: bool,
}

/// A rule that does not compile: which one (0-based, in file order), which
/// field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: `{field}`: {message}")]
pub struct RuleError {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// A compiled rule.
#[derive(Debug)]
pub(super) struct Rule {
    pub(super) policy: Policy,
    /// Exact host names, lower case; `None`: any host.
    pub(super) exact: Option<Vec<String>>,
    /// `.example.com` for `*.example.com`, lower case.
    pub(super) suffixes: Vec<String>,
    pub(super) paths: Option<RegexSet>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) networks: Option<Vec<IpNet>>,
    pub(super) users: Vec<String>,
    pub(super) groups: Vec<String>,
    pub(super) has_subjects: bool,
    /// A `two_factor` rule that accepts access tokens.
    pub(super) allow_tokens: bool,
}

/// The compiled rules and the default policy. Cheap to share behind an
/// `Arc`; replaced whole on reload.
#[derive(Debug, Default)]
pub struct Rules {
    pub(super) rules: Vec<Rule>,
    pub(super) default: Policy,
    /// Rules by exact host name (lower case), each list in file order.
    pub(super) by_host: HashMap<String, Vec<usize>>,
    /// Rules by `*.` suffix (`.example.com`), each list in file order.
    pub(super) by_suffix: HashMap<String, Vec<usize>>,
    /// Rules without `domains`, in file order: candidates for every host.
    pub(super) any_host: Vec<usize>,
    /// Whether some rule matches on networks (else the client address is
    /// not worked out at all).
    pub(super) uses_networks: bool,
}

impl Rules {
    /// Compiles `specs` in order. `two_factor_available`: whether the server
    /// can check a second factor; when it cannot, a rule (or the default)
    /// asking for one is refused here rather than silently weakened.
    pub fn compile(
        specs: &[RuleSpec],
        default: Policy,
        two_factor_available: bool,
    ) -> Result<Rules, RuleError> {
        if specs.len() > MAX_RULES {
            return Err(RuleError {
                index: MAX_RULES,
                field: "rules",
                message: format!("at most {MAX_RULES} rules"),
            });
        }
        let two_factor = |index, field| RuleError {
            index,
            field,
            message: "`two_factor` needs second factors, which this server does not offer yet"
                .into(),
        };
        if default == Policy::TwoFactor && !two_factor_available {
            return Err(two_factor(usize::MAX, "default_policy"));
        }
        let mut rules = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            if spec.policy == Policy::TwoFactor && !two_factor_available {
                return Err(two_factor(index, "policy"));
            }
            rules.push(compile_one(index, spec)?);
        }
        let mut r = Rules {
            default,
            ..Rules::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            match &rule.exact {
                None => r.any_host.push(i),
                Some(exact) => {
                    for h in exact {
                        let list = r.by_host.entry(h.clone()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                    for sfx in &rule.suffixes {
                        let list = r.by_suffix.entry(sfx.clone()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
            }
            r.uses_networks |= rule.networks.is_some();
        }
        r.rules = rules;
        Ok(r)
    }

    /// Whether some rule matches on the client's address.
    pub fn uses_networks(&self) -> bool {
        self.uses_networks
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The policy when no rule matches.
    pub fn default_policy(&self) -> Policy {
        self.default
    }

    /// Whether a request authenticated by an access token may pass a
    /// decision made by `rule` (`None`: the default policy). A token is one
    /// factor: it passes everything but `two_factor`, and a `two_factor`
    /// rule only when it sets `allow_tokens` (the default policy never does)
    /// and the session that made the token had done a second factor
    /// (`two_factor_made`): a password-only session cannot mint its way
    /// past such a rule.
    pub fn admits_token(&self, policy: Policy, rule: Option<usize>, two_factor_made: bool) -> bool {
        if policy != Policy::TwoFactor {
            return true;
        }
        two_factor_made
            && rule
                .and_then(|i| self.rules.get(i))
                .is_some_and(|r| r.allow_tokens)
    }
}

fn compile_one(index: usize, spec: &RuleSpec) -> Result<Rule, RuleError> {
    let err = |field, message: String| RuleError {
        index,
        field,
        message,
    };
    if spec.allow_tokens && spec.policy != Policy::TwoFactor {
        return Err(err(
            "allow_tokens",
            "only a `two_factor` rule refuses tokens; leave it out elsewhere".into(),
        ));
    }
    let nonempty = |field, v: &Option<Vec<String>>| match v {
        Some(v) if v.is_empty() => Err(err(
            field,
            "an empty list matches nothing; leave the field out to match anything".into(),
        )),
        _ => Ok(()),
    };
    for (field, v) in [
        ("domains", &spec.domains),
        ("paths", &spec.paths),
        ("methods", &spec.methods),
        ("networks", &spec.networks),
        ("subjects", &spec.subjects),
    ] {
        nonempty(field, v)?;
    }

    let (mut exact, mut suffixes) = (Vec::new(), Vec::new());
    for d in spec.domains.iter().flatten() {
        let d = d.trim().to_ascii_lowercase();
        let (wild, name) = match d.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, d.clone()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(err(
                "domains",
                format!("{d:?} is not a host name or `*.` followed by one"),
            ));
        }
        if wild {
            suffixes.push(format!(".{name}"));
        } else {
            exact.push(name);
        }
    }
    let domains_given = spec.domains.is_some();

    let paths = match &spec.paths {
        None => None,
        Some(p) => {
            if let Some(long) = p.iter().find(|p| p.len() > MAX_PATTERN) {
                return Err(err(
                    "paths",
                    format!("a pattern of {} bytes; at most {MAX_PATTERN}", long.len()),
                ));
            }
            Some(
                regex::RegexSetBuilder::new(p)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| err("paths", e.to_string()))?,
            )
        }
    };

    let methods = match &spec.methods {
        None => None,
        Some(m) => {
            let mut out = Vec::new();
            for m in m {
                let up = m.trim().to_ascii_uppercase();
                if up.is_empty() || !up.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(err("methods", format!("{m:?} is not an HTTP method")));
                }
                out.push(up);
            }
            Some(out)
        }
    };

    let networks = match &spec.networks {
        None => None,
        Some(n) => Some(
            n.iter()
                .map(|s| IpNet::parse_explained(s).map_err(|reason| err("networks", reason)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };

    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for s in spec.subjects.iter().flatten() {
        match s.split_once(':') {
            Some(("user", name)) if !name.is_empty() => users.push(name.to_string()),
            Some(("group", name)) if !name.is_empty() => groups.push(name.to_string()),
            _ => {
                return Err(err(
                    "subjects",
                    format!("{s:?}: write `user:NAME` or `group:NAME`"),
                ));
            }
        }
    }

    Ok(Rule {
        policy: spec.policy,
        exact: domains_given.then_some(exact),
        suffixes,
        paths,
        methods,
        networks,
        has_subjects: spec.subjects.is_some(),
        users,
        groups,
        allow_tokens: spec.allow_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: Policy, allow_tokens: bool, domain: &str) -> RuleSpec {
        RuleSpec {
            domains: Some(vec![domain.into()]),
            policy,
            allow_tokens,
            ..RuleSpec::default()
        }
    }

    /// A token passes one-factor rules, and a two-factor rule only when it
    /// allows tokens; the two-factor default never does.
    #[test]
    fn tokens_pass_two_factor_rules_only_when_allowed() {
        let rules = Rules::compile(
            &[
                spec(Policy::TwoFactor, false, "a.example"),
                spec(Policy::TwoFactor, true, "b.example"),
                spec(Policy::OneFactor, false, "c.example"),
            ],
            Policy::TwoFactor,
            true,
        )
        .unwrap();
        assert!(!rules.admits_token(Policy::TwoFactor, Some(0), true));
        assert!(rules.admits_token(Policy::TwoFactor, Some(1), true));
        assert!(!rules.admits_token(Policy::TwoFactor, Some(1), false));
        assert!(rules.admits_token(Policy::OneFactor, Some(2), false));
        assert!(!rules.admits_token(Policy::TwoFactor, None, true));
        assert!(rules.admits_token(Policy::Bypass, None, false));
        // Through the decision for a request, as the check asks.
        let subject = super::super::Subject {
            user: Some("alice"),
            groups: &[],
        };
        for (host, admitted) in [
            ("a.example", false),
            ("b.example", true),
            ("c.example", true),
            ("z.example", false),
        ] {
            let req = super::super::Request {
                host,
                path: "/",
                method: "GET",
                ip: None,
            };
            let d = rules.decide(&req, &subject);
            assert_eq!(
                rules.admits_token(d.policy, d.rule, true),
                admitted,
                "{host}"
            );
        }
    }

    #[test]
    fn allow_tokens_is_refused_off_two_factor_rules() {
        let e = Rules::compile(
            &[spec(Policy::OneFactor, true, "a.example")],
            Policy::OneFactor,
            true,
        )
        .unwrap_err();
        assert_eq!((e.index, e.field), (0, "allow_tokens"));
    }
}
