//! Loading, validation and the lines errors name.

use std::collections::HashMap;

use super::*;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let file = parse_file(Path::new("g.toml"), text)?;
    Config::from_file("g.toml".into(), "d".into(), file).map_err(|e| locate(e, text))
}

#[test]
fn validation_errors_name_the_line() {
    let e = load_text("metrics = true\n[session]\nmax_per_user = 3\nidle_secs = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:4: invalid setting `session.idle_secs`"),
        "{e}"
    );
    let e = load_text("bind = \"x\"").unwrap_err().to_string();
    assert!(e.starts_with("g.toml:1: invalid setting `bind`"), "{e}");
    let two = format!(
        "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n[[users]]\nname = \"b c\"\npassword_hash = \"{HASH}\"\n"
    );
    let e = load_text(&two).unwrap_err().to_string();
    assert!(
        e.starts_with("g.toml:6: invalid setting `users[1].name`"),
        "{e}"
    );
    let e = load_text("[argon2]\nmemory_kib = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("g.toml:1: invalid setting `argon2`"), "{e}");
    assert_eq!(field_line("x = 1", "trusted_proxies[0]"), None);
    assert_eq!(
        field_line("a=1\ntrusted_proxies = [\"x\"]", "trusted_proxies[0]"),
        Some(2)
    );
}

/// A setting is found however it is written: a dotted key, an inline
/// table, one element of an array spread over lines, an inline array of
/// tables.
#[test]
fn validation_errors_name_the_line_of_dotted_inline_and_spread_settings() {
    for (text, field, line) in [
        (
            "metrics = true
session.idle_secs = 0
",
            "session.idle_secs",
            2,
        ),
        (
            "metrics = true

session = { max_per_user = 3, idle_secs = 0 }
",
            "session.idle_secs",
            3,
        ),
        (
            "[session]
max_per_user = 3

[regulation]
window_secs = 0
",
            "regulation.window_secs",
            5,
        ),
        (
            "trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"nope\",\n]\n",
            "trusted_proxies[1]",
            3,
        ),
    ] {
        let e = load_text(text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("g.toml:{line}: invalid setting `{field}`")),
            "{text:?}: {e}"
        );
    }
    let users = format!(
        "users = [\n  {{ name = \"a\", password_hash = \"{HASH}\" }},\n  \
         {{ name = \"b c\", password_hash = \"{HASH}\" }},\n]\n"
    );
    let e = load_text(&users).unwrap_err().to_string();
    assert!(
        e.starts_with("g.toml:3: invalid setting `users[1].name`"),
        "{e}"
    );
    assert_eq!(table_line(&users, "users", 1), Some(3));
    let rules =
        "metrics = true\n\n[[rules]]\npolicy = \"deny\"\n\n[[rules]]\npolicy = \"bypass\"\n";
    assert_eq!(table_line(rules, "rules", 0), Some(3));
    assert_eq!(table_line(rules, "rules", 1), Some(6));
    assert_eq!(table_line(rules, "rules", 2), None);
}

/// Parse errors name the line and column toml points at.
#[test]
fn parse_errors_name_line_and_column() {
    for (text, at) in [
        (
            "bind = \"127.0.0.1:1\"\n[session]\nidle_secs = \"soon\"\n",
            "g.toml:3:13:",
        ),
        ("metrics = true\nmetrics = false\n", "g.toml:2:1:"),
        ("[session]\nidle_secs = = 3\n", "g.toml:2:13:"),
        ("metrics = true\n[session\n", "g.toml:2:9:"),
        ("no_such_setting = 1\n", "g.toml:1:1:"),
    ] {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.starts_with(at), "{text:?}: {e}");
    }
}

#[test]
fn empty_file_gives_defaults() {
    let c = load_text("").unwrap();
    assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.cookie.name, "gatehouse_session");
    assert_eq!(c.session.max_per_user, 32);
    assert_eq!(c.db_path(), PathBuf::from("d/gatehouse.redb"));
    assert!(c.policy().is_empty());
}

#[test]
fn type_error_names_line_and_field() {
    let e = load_text("bind = \"127.0.0.1:1\"\n[session]\nidle_secs = \"soon\"\n").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("g.toml:3:"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn unknown_field_is_an_error() {
    let e = load_text("\n\nbindd = \"x\"\n").unwrap_err().to_string();
    assert!(e.starts_with("g.toml:3:1"), "{e}");
    assert!(e.contains("bindd"), "{e}");
}

#[test]
fn bad_values_name_the_field() {
    let e = load_text("bind = \"nope\"").unwrap_err().to_string();
    assert!(e.contains("`bind`"), "{e}");
    let e = load_text("[session]\nidle_secs = 0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("session.idle_secs"), "{e}");
    let e = load_text("trusted_proxies = [\"10.0.0.0/33\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("trusted_proxies[0]"), "{e}");
    let e = load_text("[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("users[0].password_hash"), "{e}");
    for bad in ["0", "1025"] {
        let e = load_text(&format!(
            "[second_factor]\npasskey_ceremonies_per_client = {bad}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("second_factor.passkey_ceremonies_per_client") && e.contains("1 to 1024"),
            "{e}"
        );
    }
    let c = load_text("[second_factor]\npasskey_ceremonies_per_client = 4").unwrap();
    assert_eq!(c.second_factor.passkey_ceremonies_per_client, 4);
}

#[test]
fn users_parse_and_duplicates_fail() {
    let one = format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\nadmin = true\n");
    let c = load_text(&one).unwrap();
    let alice = c.policy().user("alice").unwrap();
    assert!(alice.admin);
    assert!(!format!("{alice:?}").contains("argon2"));
    let two = format!("{one}{one}");
    assert!(
        load_text(&two)
            .unwrap_err()
            .to_string()
            .contains("duplicate")
    );
}

#[test]
fn ip_nets_match() {
    let n = IpNet::parse("10.1.0.0/16").unwrap();
    assert!(n.contains("10.1.2.3".parse().unwrap()));
    assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!n.contains("10.2.0.1".parse().unwrap()));
    let one = IpNet::parse("::1").unwrap();
    assert!(one.contains("::1".parse().unwrap()));
    assert!(
        IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(IpNet::parse("x").is_none());
}

/// An IPv4-mapped block names IPv4 clients, which arrive as IPv4 whichever
/// socket family carried them: it matches them, in `trusted_proxies` and in
/// a rule's `networks` alike.
#[test]
fn ipv4_mapped_blocks_match_ipv4_clients() {
    let n = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
    assert_eq!(n, IpNet::parse("10.0.0.0/8").unwrap());
    assert!(n.contains("10.1.2.3".parse().unwrap()));
    assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    let one = IpNet::parse("::ffff:192.0.2.7").unwrap();
    assert!(one.contains("192.0.2.7".parse().unwrap()));
    assert!(!one.contains("192.0.2.8".parse().unwrap()));
    // Plain IPv6 blocks stay IPv6 only.
    assert!(
        !IpNet::parse("::/0")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap())
    );

    let c = load_text("trusted_proxies = [\"::ffff:10.0.0.0/104\"]\n").unwrap();
    assert!(c.is_trusted_proxy("10.9.8.7".parse().unwrap()));
    let rules = "[[rules]]\nnetworks = [\"::ffff:10.0.0.0/104\"]\npolicy = \"deny\"\n";
    let c = load_text(rules).unwrap();
    let req = crate::access::Request {
        host: "app.example.com",
        path: "/",
        method: "GET",
        ip: Some("10.1.2.3".parse().unwrap()),
    };
    let (d, _) = c
        .policy()
        .rules()
        .explain(&req, &crate::access::Subject::ANONYMOUS);
    assert_eq!(d.rule, Some(0), "{d:?}");

    // A mapped block wider than the mapped range cannot be meant: refused,
    // naming the field and what to write.
    let e = load_text("trusted_proxies = [\"::ffff:10.0.0.0/64\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:1: invalid setting `trusted_proxies[0]`") && e.contains("10.0.0.0/8"),
        "{e}"
    );
    let e = load_text("[[rules]]\nnetworks = [\"::ffff:0:0/80\"]\npolicy = \"deny\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rules[0].networks") && e.contains("/96"), "{e}");
}

#[test]
fn append_user_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.toml");
    std::fs::write(&p, "metrics = true").unwrap();
    let u = UserEntry {
        name: "admin".into(),
        password_hash: HASH.into(),
        admin: true,
        ..UserEntry::default()
    };
    append_user(&p, &u).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let f = parse_file(&p, &text).unwrap();
    assert!(f.metrics);
    assert_eq!(f.users, vec![u]);
}

#[test]
fn users_hashed_at_another_cost_are_named() {
    // HASH is m=19456,t=2,p=1: the default cost.
    let one = format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n");
    assert!(load_text(&one).unwrap().users_with_other_cost().is_empty());
    let cheap = format!("[argon2]\nmemory_kib = 64\niterations = 1\n{one}");
    assert_eq!(
        load_text(&cheap).unwrap().users_with_other_cost(),
        ["alice"]
    );
}

#[test]
fn cookie_name_prefix_and_secure_default() {
    let c = load_text("").unwrap();
    assert!(!c.cookie.secure);
    assert_eq!(c.cookie.name, "gatehouse_session");
    let c = load_text("public_origin = \"https://auth.example.com\"").unwrap();
    assert!(c.cookie.secure);
    assert_eq!(c.cookie.name, "__Host-gatehouse_session");
    let c = load_text("public_origin = \"https://a.example.com\"\ncookie_domain = \"example.com\"")
        .unwrap();
    assert_eq!(c.cookie.name, "gatehouse_session");
    let c = load_text("public_origin = \"https://a.example.com\"\nsecure_cookies = false").unwrap();
    assert!(!c.cookie.secure);
    assert_eq!(c.cookie.name, "gatehouse_session");
    let e = load_text("cookie_name = \"__Host-x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cookie_name"), "{e}");
    let e = load_text("secure_cookies = true\ncookie_name = \"__Host-x\"\ncookie_domain = \"a.b\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cookie_name"), "{e}");
    assert!(load_text("secure_cookies = true\ncookie_name = \"__Secure-x\"").is_ok());
}

/// A `cookie_domain` browsers drop makes every sign-in loop back to the
/// sign-in page without an error anywhere: refused at start, naming the
/// field and what to set instead.
#[test]
fn a_cookie_domain_browsers_drop_is_refused() {
    let with = |origin: &str, domain: &str| {
        load_text(&format!(
            "public_origin = \"{origin}\"\ncookie_domain = \"{domain}\"\n"
        ))
    };
    // One label: `localhost` (the attempt that looped), or a top-level domain.
    let e = with("http://auth.localhost:8080", "localhost")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:2: invalid setting `cookie_domain`: \"localhost\" is a single label"),
        "{e}"
    );
    assert!(e.contains("gh.localhost"), "{e}");
    let e = with("https://auth.example.com", "com")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("single label") && e.contains("set it to \"example.com\""),
        "{e}"
    );
    let e = load_text("cookie_domain = \"localhost\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`cookie_domain`") && e.contains("single label"),
        "{e}"
    );
    // A public suffix of two labels or more: anyone may register a name
    // under it, so browsers drop a cookie for it as for a single label.
    let e = with("https://auth.example.co.uk", "co.uk")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:2: invalid setting `cookie_domain`: \"co.uk\" is a public suffix")
            && e.contains("set it to \"example.co.uk\" (the parent of auth.example.co.uk)"),
        "{e}"
    );
    for (origin, domain) in [
        ("https://auth.example.com.au", "com.au"),
        ("https://auth.example.com.au", ".COM.au"),
        ("https://me.github.io", "github.io"),
        ("https://auth.example.com", "co.uk"),
    ] {
        let e = with(origin, domain).unwrap_err().to_string();
        assert!(
            e.contains("`cookie_domain`") && e.contains("is a public suffix"),
            "{origin} {domain}: {e}"
        );
    }
    // The parent of `me.github.io` is no better: it is not suggested.
    let e = with("https://me.github.io", "github.io")
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains("set it to") && e.contains("a domain of your own"),
        "{e}"
    );
    let e = load_text("cookie_domain = \"github.io\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a public suffix"), "{e}");
    // Not a parent of the public origin's host.
    let e = with("https://auth.example.com", "example.org")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:2: invalid setting `cookie_domain`")
            && e.contains("does not cover public_origin's host \"auth.example.com\"")
            && e.contains("set it to \"example.com\""),
        "{e}"
    );
    let e = with("https://notexample.com", "example.com")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not cover"), "{e}");
    let e = with("http://127.0.0.1:8080", "example.com")
        .unwrap_err()
        .to_string();
    assert!(e.contains("an IP address"), "{e}");
    // Not a domain name at all.
    for bad in ["a..b", "-a.b", "a_b.c", "", "0.0.1", "127.0.0.1"] {
        let e = with("https://auth.example.com", bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`cookie_domain`"), "{bad}: {e}");
    }
    // What works: a parent of the host (any case, a leading dot ignored),
    // the host itself, three-label local names, and no public origin.
    for (origin, domain) in [
        ("https://auth.example.com", "example.com"),
        ("https://auth.example.com", "Example.COM"),
        ("https://auth.example.com", ".example.com"),
        ("https://auth.example.com", "auth.example.com"),
        ("http://auth.gh.localhost:8080", "gh.localhost"),
        ("https://auth.example.co.uk", "example.co.uk"),
        ("https://auth.example.com.au", "example.com.au"),
        ("https://me.github.io", "me.github.io"),
    ] {
        assert!(with(origin, domain).is_ok(), "{origin} {domain}");
    }
    assert!(load_text("cookie_domain = \"example.com\"").is_ok());
}

/// A reload swaps users and rules; every other setting that changed is
/// named by its file key, and nothing else is.
#[test]
fn restart_changes_name_each_changed_setting() {
    let user = format!("[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n");
    let old = load_text(&format!(
        "metrics = true\n[session]\nidle_secs = 60\n{user}"
    ))
    .unwrap();
    let same = load_text(
        "metrics = true\n[session]\nidle_secs = 60\n[[rules]]\npolicy = \"deny\"\n\
         [access]\ndefault_policy = \"deny\"\n",
    )
    .unwrap();
    assert_eq!(old.restart_changes(&same), Vec::<String>::new());
    let new = load_text(&format!(
        "metrics = false\ntrusted_proxies = [\"10.0.0.1\"]\n[session]\nidle_secs = 90\n\
         [access]\nforwarded_headers = \"x-original\"\n{user}"
    ))
    .unwrap();
    assert_eq!(
        old.restart_changes(&new),
        [
            "access.forwarded_headers",
            "metrics",
            "session.idle_secs",
            "trusted_proxies"
        ]
    );
}

#[test]
fn hsts_only_with_an_https_public_origin() {
    assert_eq!(load_text("").unwrap().hsts, None);
    assert_eq!(
        load_text("public_origin = \"http://auth.example.com\"")
            .unwrap()
            .hsts,
        None
    );
    let https = "public_origin = \"https://auth.example.com\"\n";
    assert_eq!(
        load_text(https).unwrap().hsts.as_deref(),
        Some("max-age=31536000")
    );
    let c = load_text(&format!(
        "{https}[hsts]\nmax_age_secs = 600\ninclude_subdomains = true\n"
    ))
    .unwrap();
    assert_eq!(c.hsts.as_deref(), Some("max-age=600; includeSubDomains"));
    let off = load_text(&format!("{https}[hsts]\nenabled = false\n")).unwrap();
    assert_eq!(off.hsts, None);
    let e = load_text("[hsts]\nmax_age_secs = 999999999999\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:2: invalid setting `hsts.max_age_secs`"),
        "{e}"
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Keys of every section, so that generated files reach validation.
    const KEYS: &[(&str, &str)] = &[
        ("", "bind"),
        ("", "public_origin"),
        ("", "cookie_name"),
        ("", "cookie_domain"),
        ("", "secure_cookies"),
        ("", "trusted_proxies"),
        ("", "allowed_redirect_domains"),
        ("", "idle_timeout_secs"),
        ("", "shutdown_grace_secs"),
        ("session", "idle_secs"),
        ("session", "absolute_secs"),
        ("session", "remember_me_secs"),
        ("session", "max_per_user"),
        ("session", "touch_interval_secs"),
        ("regulation", "max_failures"),
        ("regulation", "window_secs"),
        ("regulation", "ban_secs"),
        ("regulation", "max_tracked"),
        ("limits", "login_body_bytes"),
        ("limits", "body_bytes"),
        ("limits", "header_bytes"),
        ("limits", "max_connections"),
        ("limits", "hash_workers"),
        ("limits", "hash_queue"),
        ("limits", "max_connections_per_ip"),
        ("hsts", "enabled"),
        ("hsts", "max_age_secs"),
        ("hsts", "include_subdomains"),
        ("argon2", "memory_kib"),
        ("argon2", "iterations"),
        ("argon2", "parallelism"),
        ("second_factor", "passkey_ceremonies_per_client"),
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            (0u64..100_000).prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<bool>().prop_map(|v| v.to_string()),
            ".{0,20}".prop_map(|v| format!("{v:?}")),
            Just("\"127.0.0.1:0\"".to_string()),
            Just("\"https://auth.example.com\"".to_string()),
            Just("[\"10.0.0.0/8\", \"::1\"]".to_string()),
            Just("1e999".to_string()),
            Just("[".to_string()),
        ]
    }

    /// A file of real keys with random values, in random sections.
    fn file() -> impl Strategy<Value = String> {
        proptest::collection::vec((0..KEYS.len(), value()), 0..12).prop_map(|kvs| {
            let mut top = String::new();
            let mut sections: HashMap<&str, String> = HashMap::new();
            for (i, v) in kvs {
                let (sec, key) = KEYS[i];
                let line = format!("{key} = {v}\n");
                if sec.is_empty() {
                    top.push_str(&line);
                } else {
                    sections.entry(sec).or_default().push_str(&line);
                }
            }
            for (sec, body) in sections {
                top.push_str(&format!("[{sec}]\n{body}"));
            }
            top
        })
    }

    fn check(text: &str) {
        match load_text(text) {
            Ok(c) => {
                // A valid config never overflows where it is used.
                let s = &c.session;
                for ms in [s.idle_ms, s.absolute_ms, s.remember_me_ms] {
                    assert!(ms.checked_add(u64::MAX / 2).is_some());
                }
                assert!(c.limits.max_connections <= MAX_COUNT);
                let per_ip = c.limits.max_connections_per_ip;
                assert!(per_ip > 0 && per_ip <= MAX_COUNT);
                assert!(u32::try_from(c.limits.header_bytes).is_ok());
            }
            Err(ConfigError::Parse { line, .. }) => {
                // Parse errors name a line of the file.
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line}"
                );
            }
            Err(ConfigError::Invalid { field, line, .. }) => {
                assert!(!field.is_empty());
                // A setting written as `key = value` in the file is located.
                let key = field.rsplit('.').next().unwrap().split('[').next().unwrap();
                if let Some(l) = line {
                    assert!(text.lines().nth(l - 1).is_some(), "line {l}");
                } else {
                    assert!(
                        !text
                            .lines()
                            .any(|l| l.trim_start().starts_with(&format!("{key} ="))),
                        "{field} not located in {text:?}"
                    );
                }
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    proptest! {
        /// Arbitrary text: an error naming a line, never a panic.
        #[test]
        fn random_text_never_panics(text in "(?s).{0,300}") {
            check(&text);
        }

        /// Real keys with random values reach validation: a valid config,
        /// or an error naming the line or the field.
        #[test]
        fn random_settings_are_valid_or_named(text in file()) {
            check(&text);
        }
    }

    #[test]
    fn huge_values_are_refused() {
        for (text, field) in [
            (
                "[session]\nidle_secs = 18446744073709551615",
                "session.idle_secs",
            ),
            (
                "[limits]\nmax_connections = 18446744073709551615",
                "limits.max_connections",
            ),
            ("[limits]\nheader_bytes = 4294967396", "limits.header_bytes"),
            ("[limits]\nhash_workers = 100000", "limits.hash_workers"),
            (
                "[limits]\nmax_connections_per_ip = 1000001",
                "limits.max_connections_per_ip",
            ),
            (
                "[limits]\nmax_connections_per_ip = 0",
                "limits.max_connections_per_ip",
            ),
        ] {
            let e = load_text(text).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn errors_inside_multibyte_text_name_a_line() {
        let e = load_text("# é\ncookie_name = \"ü\" x").unwrap_err();
        assert!(e.to_string().starts_with("g.toml:2:"), "{e}");
    }
}

#[test]
fn rules_groups_and_identity_fields_load_and_errors_name_the_rule_line() {
    let text = format!(
        "[access]\ndefault_policy = \"deny\"\n\n\
         [[rules]]\ndomains = [\"code.example.com\"]\npolicy = \"one_factor\"\n\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\ngroups = [\"dev\", \"ops\"]\n\
         email = \"alice@example.com\"\ndisplay_name = \"Alice Liddell\"\nadmin = true\n"
    );
    let c = load_text(&text).unwrap();
    let p = c.policy();
    assert_eq!(p.rules().len(), 1);
    assert_eq!(p.rules().default_policy(), crate::access::Policy::Deny);
    let alice = p.user("alice").unwrap();
    assert_eq!(
        alice.all_groups().collect::<Vec<_>>(),
        ["admin", "dev", "ops"]
    );
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));

    // A bad rule names its index, its field and its line.
    let bad = "[[rules]]\npolicy = \"bypass\"\n\n[[rules]]\ndomains = [\"a.example\"]\npaths = [\"(\"]\npolicy = \"deny\"\n";
    let e = load_text(bad).unwrap_err().to_string();
    assert!(e.contains("rules[1].paths") && e.contains(":6"), "{e}");
    // two_factor rules load: second factors exist.
    let c = load_text("[[rules]]\npolicy = \"two_factor\"\n").unwrap();
    assert_eq!(
        c.policy()
            .rules()
            .decide(
                &crate::access::Request {
                    host: "a",
                    path: "/",
                    method: "GET",
                    ip: None
                },
                &crate::access::Subject::ANONYMOUS
            )
            .policy,
        crate::access::Policy::TwoFactor
    );
    // A group that would break the comma-separated header.
    let e = load_text(&format!(
        "[[users]]\nname = \"bob\"\npassword_hash = \"{HASH}\"\ngroups = [\"a,b\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("users[0].groups[0]"), "{e}");
}

#[test]
fn token_settings_default_and_errors_name_the_field() {
    let c = load_text("").unwrap();
    assert_eq!(
        (
            c.tokens.max_days,
            c.tokens.max_per_user,
            c.tokens.basic_auth_passwords
        ),
        (365, 50, false)
    );
    assert_eq!(c.tokens.days(None), 90);
    let c = load_text("[tokens]\nmax_days = 30\nbasic_auth_passwords = true\n").unwrap();
    assert_eq!(c.tokens.days(None), 30, "the default is capped by max_days");
    assert!(c.tokens.basic_auth_passwords);
    for (text, field, line) in [
        ("[tokens]\nmax_days = 0\n", "tokens.max_days", 2),
        ("[tokens]\n\nmax_days = 99999\n", "tokens.max_days", 3),
        ("[tokens]\nmax_per_user = 0\n", "tokens.max_per_user", 2),
    ] {
        let e = load_text(text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("g.toml:{line}: invalid setting `{field}`")),
            "{e}"
        );
    }
}

#[test]
fn tls_settings_need_both_files_and_errors_name_the_line() {
    let c = load_text("").unwrap();
    assert!(c.tls.is_none() && !c.https());
    let c = load_text(
        "[tls]\ncert = \"c.pem\"\nkey = \"/etc/k.pem\"\nhttp_redirect_bind = \"[::]:80\"\n",
    )
    .unwrap();
    assert_eq!(
        c.tls.as_ref().unwrap().http_redirect_bind,
        Some("[::]:80".parse().unwrap())
    );
    // A relative path is read from the data dir.
    assert_eq!(
        c.tls.as_ref().unwrap().certificate,
        CertSource::Files {
            cert: "d/c.pem".into(),
            key: "/etc/k.pem".into(),
        }
    );
    // Over its own TLS the cookie is `Secure` (and `__Host-`), and HSTS is sent.
    assert!(c.https() && c.cookie.secure && c.hsts.is_some());
    assert_eq!(c.cookie.name, "__Host-gatehouse_session");
    for (text, start) in [
        (
            "metrics = true\n[tls]\ncert = \"c.pem\"\n",
            "g.toml:3: invalid setting `tls.cert`: needs `key`",
        ),
        (
            "[tls]\n\nkey = \"k.pem\"\n",
            "g.toml:3: invalid setting `tls.key`: needs `cert`",
        ),
        (
            "[tls]\ncert = \"\"\nkey = \"k.pem\"\n",
            "g.toml:2: invalid setting `tls.cert`: must name a file",
        ),
        (
            "public_origin = \"http://a.example\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n",
            "g.toml:1: invalid setting `public_origin`",
        ),
        (
            "[tls]\ncertificate = \"c\"\n",
            "g.toml:2:1: unknown field `certificate`",
        ),
        (
            "[tls]\nhttp_redirect_bind = \"0.0.0.0:80\"\n",
            "g.toml:2: invalid setting `tls.http_redirect_bind`: redirects to https",
        ),
        (
            "[tls]\ncert = \"c\"\nkey = \"k\"\nhttp_redirect_bind = \"80\"\n",
            "g.toml:4: invalid setting `tls.http_redirect_bind`",
        ),
        (
            "bind = \"0.0.0.0:443\"\n[tls]\ncert = \"c\"\nkey = \"k\"\nhttp_redirect_bind = \"0.0.0.0:443\"\n",
            "g.toml:5: invalid setting `tls.http_redirect_bind`: 0.0.0.0:443 is `bind`",
        ),
    ] {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.starts_with(start), "{e}");
    }
}

#[test]
fn acme_settings_default_to_lets_encrypt_and_errors_name_the_field() {
    let c =
        load_text("[tls]\nacme_domains = [\"Auth.Example.com.\", \"app.example.com\"]\n").unwrap();
    let CertSource::Acme(a) = &c.tls.as_ref().unwrap().certificate else {
        panic!("not ACME");
    };
    assert_eq!(a.domains, ["auth.example.com", "app.example.com"]);
    assert_eq!(a.directory, LETS_ENCRYPT);
    assert_eq!(a.challenge, AcmeChallenge::TlsAlpn01);
    assert!(a.contact.is_none() && a.ca_file.is_none());
    let c = load_text(
        "[tls]\nacme_domains = [\"a.example\"]\nacme_directory = \"https://ca.test/dir\"\n\
         acme_contact = \"mailto:ops@example.com\"\nacme_ca_file = \"ca.pem\"\n\
         acme_challenge = \"http-01\"\nhttp_redirect_bind = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    let CertSource::Acme(a) = &c.tls.as_ref().unwrap().certificate else {
        panic!("not ACME");
    };
    assert_eq!(a.ca_file.as_deref(), Some(Path::new("d/ca.pem")));
    assert_eq!(a.challenge, AcmeChallenge::Http01);
    for (text, start) in [
        (
            "[tls]\nacme_directory = \"https://ca.test/dir\"\n",
            "g.toml:2: invalid setting `tls.acme_directory`: is an ACME setting",
        ),
        (
            "[tls]\ncert = \"c\"\nkey = \"k\"\nacme_domains = [\"a.example\"]\n",
            "g.toml:4: invalid setting `tls.acme_domains`: the certificate comes from",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\", \"*.example.com\"]\n",
            "g.toml:2: invalid setting `tls.acme_domains[1]`: \"*.example.com\": a wildcard",
        ),
        (
            "[tls]\nacme_domains = [\n  \"localhost\",\n]\n",
            "g.toml:3: invalid setting `tls.acme_domains[0]`",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\", \"A.example\"]\n",
            "g.toml:2: invalid setting `tls.acme_domains[1]`: \"A.example\" is listed twice",
        ),
        (
            "[tls]\nacme_domains = [\"10.0.0.1\"]\n",
            "g.toml:2: invalid setting `tls.acme_domains[0]`",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\"]\nacme_directory = \"http://ca.test/dir\"\n",
            "g.toml:3: invalid setting `tls.acme_directory`",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\"]\nacme_contact = \"ops@example.com\"\n",
            "g.toml:3: invalid setting `tls.acme_contact`: \"ops@example.com\": expected \"mailto:",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\"]\nacme_challenge = \"http-01\"\n",
            "g.toml:3: invalid setting `tls.acme_challenge`: \"http-01\" is answered on the plain-HTTP listener",
        ),
        (
            "[tls]\nacme_domains = [\"a.example\"]\nacme_challenge = \"dns-01\"\n",
            "g.toml:3:",
        ),
    ] {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.starts_with(start), "{e}");
    }
}
