//! Evaluating the compiled rules against one request: [`Rules::decide`] on
//! the hot path (no allocation), [`Rules::explain`] for the rule checker.

use std::net::IpAddr;

use super::Policy;
use super::compile::{Rule, Rules};

/// The original request, as the proxy reports it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The host the client asked for, with or without a port.
    pub host: &'a str,
    /// The path plus query.
    pub path: &'a str,
    pub method: &'a str,
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
}

/// Who is asking: nobody (`user: None`), or a user and their groups.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: Option<&'a str>,
    pub groups: &'a [String],
}

impl Subject<'_> {
    /// An anonymous request.
    pub const ANONYMOUS: Subject<'static> = Subject {
        user: None,
        groups: &[],
    };
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub policy: Policy,
    /// The rule that decided (0-based, file order); `None`: the default.
    pub rule: Option<usize>,
    /// The request is anonymous and the rule names subjects: sign in first,
    /// then the rules are asked again.
    pub needs_subject: bool,
}

/// Why a rule did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Domain,
    Path,
    Method,
    Network,
    /// The request is anonymous and the rule names subjects.
    Anonymous,
    /// The user is neither named nor in a named group.
    Subject,
}

impl Miss {
    /// Why, in words, for the rule checker.
    pub fn describe(self) -> &'static str {
        match self {
            Miss::Domain => "the host is not one of its domains",
            Miss::Path => "the path and query match none of its patterns",
            Miss::Method => "the method is not one of its methods",
            Miss::Network => "the client address is in none of its networks",
            Miss::Anonymous => "it names subjects, and the request is anonymous",
            Miss::Subject => "the user is not one of its subjects and in none of its groups",
        }
    }
}

/// One rule as the checker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub index: usize,
    pub policy: Policy,
    /// Every matcher that failed; empty for the rule that matched.
    pub misses: Vec<Miss>,
}

/// Most candidate lists merged for one host: the rules without domains, the
/// exact host, and one per suffix of the host that rules name. A host with
/// more is checked against every rule instead.
const MAX_LISTS: usize = 18;

/// Sorted lists of rule indexes merged into one ascending sequence without
/// allocating; an index in several lists comes out once.
struct Merge<'a> {
    lists: [&'a [usize]; MAX_LISTS],
    len: usize,
}

impl Iterator for Merge<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let next = self.lists[..self.len]
            .iter()
            .filter_map(|l| l.first().copied())
            .min()?;
        for l in &mut self.lists[..self.len] {
            if l.first() == Some(&next) {
                *l = &l[1..];
            }
        }
        Some(next)
    }
}

/// `host` without a port (and without the brackets of an IPv6 literal).
fn bare_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl Rule {
    fn domain_ok(&self, host: &str) -> bool {
        let Some(exact) = &self.exact else {
            return true;
        };
        let h = host.as_bytes();
        exact.iter().any(|d| d.as_bytes().eq_ignore_ascii_case(h))
            || self.suffixes.iter().any(|s| {
                let s = s.as_bytes();
                h.len() > s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
            })
    }

    fn path_ok(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|p| p.is_match(path))
    }

    fn method_ok(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }

    fn network_ok(&self, ip: Option<IpAddr>) -> bool {
        match (&self.networks, ip) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(n), Some(ip)) => n.iter().any(|n| n.contains(ip)),
        }
    }

    /// `None` when the rule names no subjects; else whether `who` is one.
    fn subject_ok(&self, who: &Subject<'_>) -> Option<Result<(), Miss>> {
        if !self.has_subjects {
            return None;
        }
        let Some(user) = who.user else {
            return Some(Err(Miss::Anonymous));
        };
        let named = self.users.iter().any(|u| u == user)
            || self
                .groups
                .iter()
                .any(|g| who.groups.iter().any(|h| h == g));
        Some(if named { Ok(()) } else { Err(Miss::Subject) })
    }

    /// Every failing matcher, in a fixed order.
    fn misses(&self, req: &Request<'_>, host: &str, who: &Subject<'_>) -> Vec<Miss> {
        let mut m = Vec::new();
        if !self.domain_ok(host) {
            m.push(Miss::Domain);
        }
        if !self.path_ok(req.path) {
            m.push(Miss::Path);
        }
        if !self.method_ok(req.method) {
            m.push(Miss::Method);
        }
        if !self.network_ok(req.ip) {
            m.push(Miss::Network);
        }
        if let Some(Err(miss)) = self.subject_ok(who) {
            m.push(miss);
        }
        m
    }
}

impl Rules {
    /// The decision for `req` by `who`: the first rule that matches, else
    /// the default policy. Allocates nothing: only the rules whose domains
    /// can match the host are looked at, found through the host and suffix
    /// maps and merged in file order.
    pub fn decide(&self, req: &Request<'_>, who: &Subject<'_>) -> Decision {
        let host = bare_host(req.host);
        match self.candidates(host) {
            Some(merged) => self.first_match(merged.map(|i| (i, &self.rules[i])), req, host, who),
            // Every rule, in order: the same answer, found the slow way.
            None => self.first_match(self.rules.iter().enumerate(), req, host, who),
        }
    }

    /// The rules whose domains can match `host`, in file order, through the
    /// host and suffix maps. `None` when the maps cannot say: the host has
    /// upper case (the maps hold lower-case names) or more suffixes with
    /// rules than one merge holds; the caller then tries every rule.
    fn candidates(&self, host: &str) -> Option<Merge<'_>> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut lists: [&[usize]; MAX_LISTS] = [&[]; MAX_LISTS];
        let mut n = 0;
        lists[n] = &self.any_host;
        n += 1;
        if let Some(l) = self.by_host.get(host) {
            lists[n] = l;
            n += 1;
        }
        for (i, b) in host.bytes().enumerate() {
            if b == b'.'
                && i > 0
                && let Some(l) = self.by_suffix.get(&host[i..])
            {
                if n == MAX_LISTS {
                    return None;
                }
                lists[n] = l;
                n += 1;
            }
        }
        Some(Merge { lists, len: n })
    }

    fn first_match<'r>(
        &'r self,
        candidates: impl Iterator<Item = (usize, &'r Rule)>,
        req: &Request<'_>,
        host: &str,
        who: &Subject<'_>,
    ) -> Decision {
        for (index, rule) in candidates {
            let request_ok = rule.domain_ok(host)
                && rule.method_ok(req.method)
                && rule.network_ok(req.ip)
                && rule.path_ok(req.path);
            if !request_ok {
                continue;
            }
            match rule.subject_ok(who) {
                None | Some(Ok(())) => {
                    return Decision {
                        policy: rule.policy,
                        rule: Some(index),
                        needs_subject: false,
                    };
                }
                Some(Err(Miss::Anonymous)) => {
                    return Decision {
                        policy: rule.policy,
                        rule: Some(index),
                        needs_subject: true,
                    };
                }
                Some(Err(_)) => {}
            }
        }
        Decision {
            policy: self.default,
            rule: None,
            needs_subject: false,
        }
    }

    /// The rules [`Rules::decide`] looked at, in order, up to and including
    /// the one that decided, each with why it did not match. Agrees with
    /// `decide` (a test checks it on random rules and requests).
    pub fn explain(&self, req: &Request<'_>, who: &Subject<'_>) -> (Decision, Vec<Trace>) {
        let decision = self.decide(req, who);
        let host = bare_host(req.host);
        let last = decision.rule.unwrap_or(self.rules.len().saturating_sub(1));
        let traces = self
            .rules
            .iter()
            .enumerate()
            .take(if self.rules.is_empty() { 0 } else { last + 1 })
            .map(|(index, rule)| {
                let mut misses = rule.misses(req, host, who);
                if decision.rule == Some(index) {
                    misses.retain(|m| *m != Miss::Anonymous);
                }
                Trace {
                    index,
                    policy: rule.policy,
                    misses,
                }
            })
            .collect();
        (decision, traces)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RuleSpec;
    use super::*;
    use proptest::prelude::*;

    fn rules(toml_rules: &str, default: Policy) -> Rules {
        #[derive(serde::Deserialize)]
        struct File {
            rules: Vec<RuleSpec>,
        }
        let f: File = toml::from_str(toml_rules).unwrap();
        Rules::compile(&f.rules, default, true).unwrap()
    }

    fn req<'a>(host: &'a str, path: &'a str, method: &'a str, ip: &str) -> Request<'a> {
        Request {
            host,
            path,
            method,
            ip: ip.parse().ok(),
        }
    }

    const FILE: &str = r#"
        [[rules]]                       # 0: health checks are public
        domains = ["code.example.com"]
        paths = ['^/api/health$']
        policy = "bypass"

        [[rules]]                       # 1: the admin area of code-server, admins only
        domains = ["code.example.com"]
        paths = ['^/admin(/|$|\?)']
        subjects = ["group:admin"]
        policy = "two_factor"

        [[rules]]                       # 2: nobody else gets the admin area
        domains = ["code.example.com"]
        paths = ['^/admin(/|$|\?)']
        policy = "deny"

        [[rules]]                       # 3: the office network needs no login
        domains = ["*.intranet.example.com"]
        networks = ["10.0.0.0/8", "fd00::/8"]
        policy = "bypass"

        [[rules]]                       # 4: Grafana for ops and for carol
        domains = ["grafana.example.com"]
        subjects = ["group:ops", "user:carol"]
        policy = "one_factor"

        [[rules]]                       # 5: writes to the wiki need two factors
        domains = ["wiki.example.com"]
        methods = ["POST", "put", "DELETE"]
        policy = "two_factor"

        [[rules]]                       # 6: the rest of Grafana: no
        domains = ["grafana.example.com"]
        policy = "deny"
    "#;

    #[test]
    fn matrix() {
        let r = rules(FILE, Policy::OneFactor);
        let admins = vec!["admin".to_string()];
        let ops = vec!["ops".to_string()];
        let none: Vec<String> = vec![];
        let alice = Subject {
            user: Some("alice"),
            groups: &admins,
        };
        let bob = Subject {
            user: Some("bob"),
            groups: &none,
        };
        let olga = Subject {
            user: Some("olga"),
            groups: &ops,
        };
        let carol = Subject {
            user: Some("carol"),
            groups: &none,
        };
        let anon = Subject::ANONYMOUS;
        let d = |p, rule, needs| Decision {
            policy: p,
            rule,
            needs_subject: needs,
        };
        use Policy::*;
        let cases: Vec<(Request, Subject, Decision)> = vec![
            // bypass, before anything else, signed in or not
            (
                req("code.example.com", "/api/health", "GET", "1.2.3.4"),
                anon,
                d(Bypass, Some(0), false),
            ),
            (
                req("CODE.example.com:443", "/api/health", "GET", "1.2.3.4"),
                bob,
                d(Bypass, Some(0), false),
            ),
            // the path regex sees the query; an anchored regex is exact
            (
                req("code.example.com", "/api/health?x=1", "GET", "1.2.3.4"),
                anon,
                d(OneFactor, None, false),
            ),
            // first match wins: admins get two_factor, others deny
            (
                req("code.example.com", "/admin?x=1", "GET", "1.2.3.4"),
                alice,
                d(TwoFactor, Some(1), false),
            ),
            (
                req("code.example.com", "/admin/users", "POST", "1.2.3.4"),
                bob,
                d(Deny, Some(2), false),
            ),
            // anonymous meets a subject rule: sign in first
            (
                req("code.example.com", "/admin", "GET", "1.2.3.4"),
                anon,
                d(TwoFactor, Some(1), true),
            ),
            (
                req("code.example.com", "/administrator", "GET", "1.2.3.4"),
                bob,
                d(OneFactor, None, false),
            ),
            // wildcard domains and networks, IPv4 and IPv6
            (
                req("docs.intranet.example.com", "/", "GET", "10.1.2.3"),
                anon,
                d(Bypass, Some(3), false),
            ),
            (
                req("docs.intranet.example.com", "/", "GET", "fd12::1"),
                anon,
                d(Bypass, Some(3), false),
            ),
            (
                req("docs.intranet.example.com", "/", "GET", "::ffff:10.9.9.9"),
                anon,
                d(Bypass, Some(3), false),
            ),
            (
                req("docs.intranet.example.com", "/", "GET", "11.0.0.1"),
                anon,
                d(OneFactor, None, false),
            ),
            (
                req("docs.intranet.example.com", "/", "GET", "fe80::1"),
                anon,
                d(OneFactor, None, false),
            ),
            (
                req("intranet.example.com", "/", "GET", "10.0.0.1"),
                anon,
                d(OneFactor, None, false),
            ),
            (
                req("evilintranet.example.com", "/", "GET", "10.0.0.1"),
                anon,
                d(OneFactor, None, false),
            ),
            // subjects: a group, a user, neither
            (
                req("grafana.example.com", "/d/1", "GET", "1.2.3.4"),
                olga,
                d(OneFactor, Some(4), false),
            ),
            (
                req("grafana.example.com", "/d/1", "GET", "1.2.3.4"),
                carol,
                d(OneFactor, Some(4), false),
            ),
            (
                req("grafana.example.com", "/d/1", "GET", "1.2.3.4"),
                bob,
                d(Deny, Some(6), false),
            ),
            (
                req("grafana.example.com", "/d/1", "GET", "1.2.3.4"),
                anon,
                d(OneFactor, Some(4), true),
            ),
            // methods, any case
            (
                req("wiki.example.com", "/p", "put", "1.2.3.4"),
                bob,
                d(TwoFactor, Some(5), false),
            ),
            (
                req("wiki.example.com", "/p", "GET", "1.2.3.4"),
                bob,
                d(OneFactor, None, false),
            ),
            // no address known: a network rule cannot match
            (
                Request {
                    host: "a.intranet.example.com",
                    path: "/",
                    method: "GET",
                    ip: None,
                },
                anon,
                d(OneFactor, None, false),
            ),
        ];
        for (i, (rq, who, want)) in cases.iter().enumerate() {
            assert_eq!(r.decide(rq, who), *want, "case {i}: {rq:?} {who:?}");
            let (d, trace) = r.explain(rq, who);
            assert_eq!(d, *want, "case {i}");
            if let Some(rule) = d.rule {
                assert_eq!(trace.len(), rule + 1);
                assert!(trace[rule].misses.is_empty(), "case {i}: {trace:?}");
                assert!(
                    trace[..rule].iter().all(|t| !t.misses.is_empty()),
                    "case {i}"
                );
            }
        }
        // The default policy applies when nothing matches.
        let deny_all = rules(FILE, Policy::Deny);
        assert_eq!(
            deny_all.decide(&req("other.example.com", "/", "GET", "1.2.3.4"), &bob),
            d(Deny, None, false)
        );
    }

    #[test]
    fn deep_hosts_with_many_suffix_rules_still_meet_every_rule() {
        // 20 labels, a (non-matching) rule for each suffix, then a deny for
        // the shortest suffix: more suffix lists than one merge holds.
        let labels: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let host = format!("{}.example", labels.join("."));
        let mut specs: Vec<RuleSpec> = (1..=20)
            .map(|i| RuleSpec {
                domains: Some(vec![format!("*.{}.example", labels[i.min(19)..].join("."))]),
                methods: Some(vec!["POST".into()]),
                policy: Policy::Bypass,
                ..RuleSpec::default()
            })
            .collect();
        specs.push(RuleSpec {
            domains: Some(vec!["*.example".into()]),
            policy: Policy::Deny,
            ..RuleSpec::default()
        });
        let r = Rules::compile(&specs, Policy::OneFactor, true).unwrap();
        let d = r.decide(&req(&host, "/", "GET", "1.2.3.4"), &Subject::ANONYMOUS);
        assert_eq!((d.policy, d.rule), (Policy::Deny, Some(20)));
    }

    #[test]
    fn explain_says_why() {
        let r = rules(FILE, Policy::OneFactor);
        let none: Vec<String> = vec![];
        let bob = Subject {
            user: Some("bob"),
            groups: &none,
        };
        let (d, trace) = r.explain(&req("grafana.example.com", "/x", "GET", "1.2.3.4"), &bob);
        assert_eq!(d.rule, Some(6));
        assert_eq!(trace[0].misses, vec![Miss::Domain, Miss::Path]);
        assert_eq!(trace[4].misses, vec![Miss::Subject]);
        assert_eq!(trace[5].misses, vec![Miss::Domain, Miss::Method]);
    }

    #[test]
    fn bad_rules_name_their_index_and_field() {
        let spec = |f: fn(&mut RuleSpec)| {
            let mut ok = RuleSpec {
                policy: Policy::OneFactor,
                ..RuleSpec::default()
            };
            let mut bad = ok.clone();
            f(&mut bad);
            ok.domains = Some(vec!["a.example".into()]);
            Rules::compile(&[ok, bad], Policy::OneFactor, true).unwrap_err()
        };
        let e = spec(|r| r.paths = Some(vec!["(".into()]));
        assert_eq!((e.index, e.field), (1, "paths"));
        let e = spec(|r| r.domains = Some(vec!["exa mple.com".into()]));
        assert_eq!((e.index, e.field), (1, "domains"));
        let e = spec(|r| r.networks = Some(vec!["10.0.0.0/33".into()]));
        assert_eq!((e.index, e.field), (1, "networks"));
        let e = spec(|r| r.subjects = Some(vec!["team:x".into()]));
        assert_eq!((e.index, e.field), (1, "subjects"));
        let e = spec(|r| r.methods = Some(vec!["GE T".into()]));
        assert_eq!((e.index, e.field), (1, "methods"));
        let e = spec(|r| r.methods = Some(vec![]));
        assert!(e.message.contains("empty list"), "{e}");
        let e = spec(|r| r.paths = Some(vec!["a".repeat(2000)]));
        assert_eq!((e.index, e.field), (1, "paths"));
        // two_factor without second factors is refused, naming why.
        let two = RuleSpec {
            policy: Policy::TwoFactor,
            ..RuleSpec::default()
        };
        let e = Rules::compile(&[two], Policy::OneFactor, false).unwrap_err();
        assert!(e.to_string().contains("second factors"), "{e}");
        assert!(Rules::compile(&[], Policy::TwoFactor, false).is_err());
    }

    fn spec_strategy() -> impl Strategy<Value = RuleSpec> {
        let list =
            |s: BoxedStrategy<String>| proptest::option::of(proptest::collection::vec(s, 1..3));
        (
            list(
                prop_oneof![
                    Just("a.example".to_string()),
                    Just("*.example".to_string()),
                    Just("b.example".to_string())
                ]
                .boxed(),
            ),
            list(
                prop_oneof![
                    Just("^/x".to_string()),
                    Just("y".to_string()),
                    Just("\\?q=".to_string())
                ]
                .boxed(),
            ),
            list(prop_oneof![Just("GET".to_string()), Just("post".to_string())].boxed()),
            list(
                prop_oneof![
                    Just("10.0.0.0/8".to_string()),
                    Just("::/0".to_string()),
                    Just("1.2.3.4".to_string())
                ]
                .boxed(),
            ),
            list(prop_oneof![Just("user:u".to_string()), Just("group:g".to_string())].boxed()),
            prop_oneof![
                Just(Policy::Bypass),
                Just(Policy::OneFactor),
                Just(Policy::TwoFactor),
                Just(Policy::Deny)
            ],
        )
            .prop_map(
                |(domains, paths, methods, networks, subjects, policy)| RuleSpec {
                    domains,
                    paths,
                    methods,
                    networks,
                    subjects,
                    policy,
                    allow_tokens: false,
                },
            )
    }

    proptest! {
        /// Any rules and any request: no panic, the same answer twice, and
        /// the checker agrees with the decision.
        #[test]
        fn evaluation_is_total_and_deterministic(
            specs in proptest::collection::vec(spec_strategy(), 0..8),
            host in prop_oneof![Just("a.example".to_string()), Just("x.a.example:8080".to_string()), Just("[::1]:80".to_string()), ".{0,20}"],
            path in "(?s).{0,30}",
            method in prop_oneof![Just("GET".to_string()), Just("post".to_string()), ".{0,6}"],
            ip in proptest::option::of(any::<std::net::IpAddr>()),
            user in proptest::option::of(prop_oneof![Just("u".to_string()), Just("v".to_string())]),
            in_g in any::<bool>(),
        ) {
            let rules = Rules::compile(&specs, Policy::OneFactor, true).unwrap();
            let groups = if in_g { vec!["g".to_string()] } else { vec![] };
            let who = Subject { user: user.as_deref(), groups: &groups };
            let rq = Request { host: &host, path: &path, method: &method, ip };
            let a = rules.decide(&rq, &who);
            prop_assert_eq!(a, rules.decide(&rq, &who));
            let (b, trace) = rules.explain(&rq, &who);
            prop_assert_eq!(a, b);
            match a.rule {
                Some(i) => {
                    prop_assert_eq!(a.policy, specs[i].policy);
                    prop_assert!(trace[i].misses.is_empty());
                    prop_assert!(trace[..i].iter().all(|t| !t.misses.is_empty()));
                }
                None => {
                    prop_assert_eq!(a.policy, Policy::OneFactor);
                    prop_assert!(trace.iter().all(|t| !t.misses.is_empty()));
                }
            }
            if user.is_some() {
                prop_assert!(!a.needs_subject);
            }
        }
    }
}
