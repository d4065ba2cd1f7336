//! Fuzzes normalisation and rule matching together: a request target and
//! another spelling of it (`access::normalize::respell`) get the same
//! decision, on any spelling of the host; no target panics either step.

#![no_main]

use std::sync::OnceLock;

use gatehouse::access::normalize::{host, path, respell};
use gatehouse::access::{Policy, Request, RuleSpec, Rules, Subject};
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let specs: Vec<RuleSpec> = [
            ("^/admin(/|$|\\?)", Policy::Deny),
            ("^/api/health$", Policy::Bypass),
            ("/x/", Policy::TwoFactor),
            ("\\.php$", Policy::Deny),
            ("^/%[0-9A-F]{2}", Policy::Deny),
        ]
        .into_iter()
        .map(|(p, policy)| RuleSpec {
            domains: Some(vec!["code.example.com".into()]),
            paths: Some(vec![p.into()]),
            policy,
            ..Default::default()
        })
        .collect();
        Rules::compile(&specs, Policy::OneFactor, true).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // The first four bytes choose the respelling; the rest is the target.
    let (choices, target) = data.split_at(data.len().min(4));
    let Ok(normal) = path(target) else { return };
    let other = respell(&normal, choices);
    let renormal = path(other.as_bytes()).expect("a respelling of a readable path is readable");
    assert_eq!(renormal, normal, "{other:?}");
    let hosts = [
        "code.example.com",
        "CODE.example.com.",
        "code.example.com:8443",
    ];
    let decide = |p: &str, h: &str| {
        let h = host(h.as_bytes()).unwrap();
        let req = Request {
            host: &h,
            path: p,
            method: "GET",
            ip: None,
        };
        rules().decide(&req, &Subject::ANONYMOUS)
    };
    let first = decide(&normal, hosts[0]);
    for h in hosts {
        assert_eq!(decide(&renormal, h), first, "{other:?} on {h}");
    }
});
