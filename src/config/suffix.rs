//! Public suffixes (`co.uk`, `github.io`): names under which anyone may
//! register a domain, so browsers refuse a cookie for one of them
//! (RFC 6265 §5.3 step 5), as they do for a single label.
//!
//! The rules are the Public Suffix List, both its ICANN and its private
//! section (browsers use both), embedded at build time so that gatehouse
//! reads no system file: `public_suffix_list.dat` beside this file, the
//! list of 2026-08-19 (upstream commit e8c9a2b2b285) with its comments
//! removed, under the MPL 2.0 as its header says. The `publicsuffix` crate
//! parses and matches it (wildcards and exceptions such as `*.ck` and
//! `!www.ck`, and names in punycode). To refresh it:
//!
//! ```sh
//! curl -fsS https://publicsuffix.org/list/public_suffix_list.dat |
//!   awk 'NR <= 3 || /===(BEGIN|END) (ICANN|PRIVATE) DOMAINS===/ || (!/^\/\// && NF)' \
//!   > src/config/public_suffix_list.dat
//! ```
//!
//! and update the date above. The list is parsed only when a config sets
//! `cookie_domain`, and dropped after the check, so it costs no memory
//! while the server runs.

use publicsuffix::{List, Psl};

const RULES: &str = include_str!("public_suffix_list.dat");

/// The parsed list, for the checks of one config load.
pub(super) struct PublicSuffixes(List);

impl PublicSuffixes {
    pub(super) fn load() -> Self {
        Self(
            RULES
                .parse()
                .expect("the embedded public suffix list parses (tested)"),
        )
    }

    /// Whether `name` (lower case, no trailing dot) is itself a public
    /// suffix: a rule of the list matches all of it. A name under no rule
    /// (`gh.localhost`) or a registrable one (`example.co.uk`) is not.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.0
            .suffix(name.as_bytes())
            .is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::PublicSuffixes;

    #[test]
    fn public_suffixes_of_both_sections_are_known() {
        let list = PublicSuffixes::load();
        for suffix in [
            // ICANN: top-level, second-level, and under a wildcard rule.
            "com",
            "uk",
            "co.uk",
            "com.au",
            "gov.uk",
            "anything.ck",
            // Private: hosting services that give each customer a name.
            "github.io",
            "pages.dev",
            "herokuapp.com",
            // Punycode: `公司.cn` and `рф` as a cookie carries them.
            "xn--55qx5d.cn",
            "xn--p1ai",
        ] {
            assert!(list.contains(suffix), "{suffix}");
        }
        for name in [
            "example.com",
            "example.co.uk",
            "shop.example.com.au",
            "me.github.io",
            "gh.localhost",
            "auth.gh.localhost",
            // The exception to `*.ck`.
            "www.ck",
            "example.xn--p1ai",
            // Under no rule: only the implicit `*`, which is not a listed one.
            "localhost",
            "example.internal",
        ] {
            assert!(!list.contains(name), "{name}");
        }
    }
}
