//! The one spelling of a request that the rules see. A proxy reports the
//! request target as the client wrote it, and the app behind it routes a
//! decoded, resolved form of it: `/%61dmin`, `/./admin`, `/x/../admin`,
//! `//admin` and `/admin;x` all reach `/admin` in common frameworks. Rules
//! are matched against the resolved form, so a rule author writes one
//! spelling and every other spelling of the same resource meets the same
//! rule.
//!
//! [`path`] and [`host`] borrow their input when it is already in normal
//! form (the common case on the hot path) and allocate only otherwise.
//!
//! Invariants, each pinned by a test below:
//! - the result is ASCII, has no `%` other than a `%XX` with upper-case hex
//!   of a byte that is not unreserved, and no byte below 0x21 or above 0x7e;
//! - normalising a normal path gives the same path (idempotence);
//! - two targets that a decoding, dot-resolving, slash-merging,
//!   parameter-stripping router sends to one path get one normal form.

use std::borrow::Cow;

/// Longest request target or host read; a longer one is refused, not cut.
pub const MAX_TARGET: usize = 8192;

/// Why a request target or host cannot be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request target is empty or does not start with '/'")]
    NotAPath,
    #[error("the request target is too long")]
    TooLong,
    #[error("the path holds an encoded '/' or a '\\'")]
    Separator,
    #[error("the path holds a '%' that is not followed by two hex digits")]
    BadEscape,
    #[error("the host is empty or malformed")]
    BadHost,
}

/// RFC 3986 unreserved characters: the ones a percent-encoding may always
/// be replaced by.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes kept as they are in a normal path segment: visible ASCII other
/// than `%` (always an escape), `;` (starts parameters), `\` (refused),
/// `/` (the separator), `?` and `#` (end the path).
fn plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b';' | b'\\' | b'/' | b'?' | b'#')
}

/// Bytes kept as they are in the query: visible ASCII other than `#`.
fn plain_query(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'#'
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// A target in absolute form (`http://host/p`) without its scheme and
/// authority; other targets as they are.
fn strip_absolute(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            let end = rest
                .iter()
                .position(|b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            return &rest[end..];
        }
    }
    target
}

/// The normal form of a request target (path and query, as a proxy reports
/// it, in bytes): the path with percent-encoded unreserved characters
/// decoded, every other escape in upper-case hex, bytes outside visible
/// ASCII encoded, `;` parameters stripped from each segment, dot segments
/// (encoded ones too) resolved and empty segments dropped, a trailing `/`
/// kept; then `?` and the query, with only bytes outside visible ASCII
/// encoded. A fragment is dropped. A target in absolute form is read from
/// its path on.
///
/// Refused: a target without a path, an encoded `/` or any `\` in the path
/// (frameworks split on them differently), a `%` without two hex digits.
pub fn path(target: &[u8]) -> Result<Cow<'_, str>, Refusal> {
    if target.len() > MAX_TARGET {
        return Err(Refusal::TooLong);
    }
    let stripped = strip_absolute(target);
    let absolute = stripped.len() != target.len();
    let target = match stripped.iter().position(|&b| b == b'#') {
        Some(i) => &stripped[..i],
        None => stripped,
    };
    if absolute && target.first() != Some(&b'/') {
        // An absolute-form target with no path after its authority: the
        // path is `/`.
        let mut rooted = Vec::with_capacity(target.len() + 1);
        rooted.push(b'/');
        rooted.extend_from_slice(target);
        return path(&rooted).map(|p| Cow::Owned(p.into_owned()));
    }
    if target.first() != Some(&b'/') {
        return Err(Refusal::NotAPath);
    }
    let (raw_path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    if is_normal(raw_path) && query.is_none_or(|q| q.iter().all(|&b| plain_query(b))) {
        // Every byte checked is visible ASCII.
        return Ok(Cow::Borrowed(
            std::str::from_utf8(target).map_err(|_| Refusal::NotAPath)?,
        ));
    }
    let mut segments: Vec<String> = Vec::new();
    let raw: Vec<&[u8]> = raw_path[1..].split(|&b| b == b'/').collect();
    let mut trailing = false;
    for (i, seg) in raw.iter().enumerate() {
        let seg = match seg.iter().position(|&b| b == b';') {
            Some(p) => &seg[..p],
            None => seg,
        };
        let seg = decode_segment(seg)?;
        let last = i + 1 == raw.len();
        match seg.as_str() {
            "" => trailing = last,
            "." => trailing = last,
            ".." => {
                segments.pop();
                trailing = last;
            }
            _ => {
                segments.push(seg);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(target.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        for &b in q {
            if plain_query(b) {
                out.push(b as char);
            } else {
                push_escaped(&mut out, b);
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` (starting with `/`) is already in normal form: only plain
/// bytes, and no empty, `.` or `..` segment but a final empty one.
fn is_normal(path: &[u8]) -> bool {
    let segments = path[1..].split(|&b| b == b'/');
    let n = path[1..].split(|&b| b == b'/').count();
    segments.enumerate().all(|(i, s)| {
        let last = i + 1 == n;
        (!s.is_empty() || last) && s != b"." && s != b".." && s.iter().all(|&b| plain(b))
    })
}

/// One segment (parameters already stripped) decoded: unreserved escapes
/// become their character, other escapes upper-case, other bytes outside
/// the plain set escaped.
fn decode_segment(seg: &[u8]) -> Result<String, Refusal> {
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                seg.get(i + 1).copied().and_then(hex),
                seg.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Refusal::BadEscape);
            };
            let d = (h << 4) | l;
            if d == b'/' || d == b'\\' {
                return Err(Refusal::Separator);
            }
            if unreserved(d) {
                out.push(d as char);
            } else {
                push_escaped(&mut out, d);
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(Refusal::Separator);
        }
        if plain(b) {
            out.push(b as char);
        } else {
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

/// The normal form of a host as a proxy reports it: without its port (and
/// the brackets of an IPv6 literal), without one trailing dot, lower case.
/// Refused: empty, or holding anything but letters, digits, `-`, `.`, `_`,
/// and `:` inside brackets.
pub fn host(raw: &[u8]) -> Result<Cow<'_, str>, Refusal> {
    if raw.len() > 255 + 8 {
        return Err(Refusal::BadHost);
    }
    let name = if let Some(rest) = raw.strip_prefix(b"[") {
        let end = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(Refusal::BadHost)?;
        let port = &rest[end + 1..];
        if !(port.is_empty() || port.first() == Some(&b':') && digits(&port[1..])) {
            return Err(Refusal::BadHost);
        }
        let inner = &rest[..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return Err(Refusal::BadHost);
        }
        inner
    } else {
        let name = match raw.iter().rposition(|&b| b == b':') {
            Some(i) if digits(&raw[i + 1..]) => &raw[..i],
            Some(_) => return Err(Refusal::BadHost),
            None => raw,
        };
        let name = name.strip_suffix(b".").unwrap_or(name);
        let ok = name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        let dots =
            name.starts_with(b".") || name.ends_with(b".") || name.windows(2).any(|w| w == b"..");
        if name.is_empty() || !ok || dots {
            return Err(Refusal::BadHost);
        }
        name
    };
    // Every byte kept is ASCII.
    let s = std::str::from_utf8(name).map_err(|_| Refusal::BadHost)?;
    Ok(if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    })
}

/// The normal host and path (with query) of an http(s) URL: what the rules
/// see of a request for it. For the rule checker and for a sign-in's `rd`,
/// which must meet the rules as the proxied request will.
pub fn url(u: &url::Url) -> Result<(String, String), Refusal> {
    let h = host(u.host_str().unwrap_or_default().as_bytes())?.into_owned();
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    Ok((h, path(target.as_bytes())?.into_owned()))
}

/// Another spelling of the normal path `normal` (as [`path`] returns it)
/// that a decoding, dot-resolving, slash-merging, parameter-stripping
/// router sends to the same place: each byte of `choices` rewrites one
/// segment (percent-encoding a character, adding `.`, `x/..`, an empty or
/// an encoded dot segment, or a `;` parameter). For the fuzz target and the
/// property tests that check that every spelling gets one decision.
#[cfg(any(test, feature = "test-util"))]
pub fn respell(normal: &str, choices: &[u8]) -> String {
    let (p, query) = match normal.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (normal, None),
    };
    let segments: Vec<&str> = p[1..].split('/').collect();
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        let c = choices.get(i).copied().unwrap_or(0);
        let mut seg = seg.to_string();
        match c % 8 {
            0 => {
                // Encode the first unreserved character outside an
                // escape, in either case.
                let b = seg.as_bytes();
                let mut i = 0;
                let mut found = None;
                while i < b.len() {
                    if b[i] == b'%' {
                        i += 3;
                    } else if unreserved(b[i]) {
                        found = Some(i);
                        break;
                    } else {
                        i += 1;
                    }
                }
                if let Some(at) = found {
                    let b = seg.as_bytes()[at];
                    let enc = if c & 0x80 == 0 {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    };
                    seg.replace_range(at..=at, &enc);
                }
            }
            1 => out.push_str("/."),
            2 => out.push_str("/zz/.."),
            3 => out.push('/'),
            4 if !seg.is_empty() => seg.push_str(";p=1"),
            5 => out.push_str("/%2e"),
            6 => out.push_str("/x/%2E%2e"),
            7 => out.push_str("/y;v/..;w"),
            _ => {}
        }
        out.push('/');
        out.push_str(&seg);
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn digits(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 5 && s.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Rules with path patterns of several shapes, for the decision test.
    fn rules() -> crate::access::Rules {
        let specs: Vec<crate::access::RuleSpec> = [
            "^/admin(/|$|\\?)",
            "^/api/health$",
            "/x/",
            "\\.php$",
            "^/[A-Z]",
        ]
        .iter()
        .map(|p| crate::access::RuleSpec {
            domains: Some(vec!["code.example.com".into()]),
            paths: Some(vec![(*p).into()]),
            policy: crate::access::Policy::Deny,
            ..Default::default()
        })
        .collect();
        crate::access::Rules::compile(&specs, crate::access::Policy::Bypass, true).unwrap()
    }

    fn p(s: &str) -> Result<String, Refusal> {
        path(s.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn every_spelling_of_admin_is_one() {
        for s in [
            "/admin",
            "/%61dmin",
            "/%61%64%6D%69%6e",
            "/./admin",
            "/x/../admin",
            "/x/%2e%2e/admin",
            "/x/%2E./admin",
            "//admin",
            "///admin",
            "/admin;x",
            "/admin;jsessionid=1",
            "/%2e/admin",
            "/../admin",
            "/x/..;/admin",
            "http://evil.example/admin",
            "/admin#frag",
        ] {
            assert_eq!(p(s).as_deref(), Ok("/admin"), "{s}");
        }
        assert_eq!(p("/admin/").as_deref(), Ok("/admin/"));
        assert_eq!(p("/admin//").as_deref(), Ok("/admin/"));
        assert_eq!(p("/admin/.").as_deref(), Ok("/admin/"));
        assert_eq!(p("/admin/users/..").as_deref(), Ok("/admin/"));
        assert_eq!(p("/").as_deref(), Ok("/"));
        assert_eq!(p("/..").as_deref(), Ok("/"));
        assert_eq!(p("http://h").as_deref(), Ok("/"));
        assert_eq!(p("http://h?x").as_deref(), Ok("/?x"));
    }

    #[test]
    fn queries_and_odd_bytes() {
        assert_eq!(p("/a?b=%2f&c=/../d").as_deref(), Ok("/a?b=%2f&c=/../d"));
        assert_eq!(
            path(b"/admin/users?\xff").as_deref(),
            Ok("/admin/users?%FF")
        );
        assert_eq!(path(b"/admin\xff").as_deref(), Ok("/admin%FF"));
        assert_eq!(p("/a%20b%7e").as_deref(), Ok("/a%20b~"));
        assert_eq!(p("/a%3bb;c").as_deref(), Ok("/a%3Bb"));
        assert_eq!(p("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
    }

    #[test]
    fn refused() {
        for (s, why) in [
            ("/%2fadmin", Refusal::Separator),
            ("/%2Fadmin", Refusal::Separator),
            ("/%5cadmin", Refusal::Separator),
            ("/\\admin", Refusal::Separator),
            ("/%zzadmin", Refusal::BadEscape),
            ("/admin%", Refusal::BadEscape),
            ("/admin%4", Refusal::BadEscape),
            ("admin", Refusal::NotAPath),
            ("*", Refusal::NotAPath),
            ("", Refusal::NotAPath),
        ] {
            assert_eq!(p(s), Err(why), "{s}");
        }
        assert_eq!(path(&vec![b'/'; MAX_TARGET + 1]), Err(Refusal::TooLong));
    }

    /// Found by the `rules` fuzz target: a respelling must not encode a
    /// hex digit of an escape that is already there.
    #[test]
    fn respelling_keeps_escapes_whole() {
        let normal = path(b"/e/%0F/%19%00").unwrap();
        for c in 0..=255u8 {
            let other = respell(&normal, &[c, c, c]);
            assert_eq!(path(other.as_bytes()).as_deref(), Ok(&*normal), "{other}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for s in ["/", "/admin", "/admin/", "/a/b?c=d&e=%2F", "/a.b/c-d_e~f"] {
            assert!(
                matches!(path(s.as_bytes()), Ok(Cow::Borrowed(b)) if b == s),
                "{s}"
            );
        }
    }

    #[test]
    fn hosts() {
        for (raw, want) in [
            ("code.example.com", "code.example.com"),
            ("Code.Example.COM", "code.example.com"),
            ("code.example.com.", "code.example.com"),
            ("code.example.com.:8443", "code.example.com"),
            ("code.example.com:8443", "code.example.com"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(host(raw.as_bytes()).as_deref(), Ok(want), "{raw}");
        }
        for bad in [
            "", ".", "a..b", ".a", "a:b", "a b", "a@b", "a/b", "[::1", "[]", "[::1]x", "a:", "a..",
            "a:123456",
        ] {
            assert_eq!(host(bad.as_bytes()), Err(Refusal::BadHost), "{bad:?}");
        }
        assert_eq!(host(b"caf\xc3\xa9.example"), Err(Refusal::BadHost));
        assert!(matches!(host(b"a.example"), Ok(Cow::Borrowed(_))));
    }

    /// How a framework routes a target: the path percent-decoded, `;`
    /// parameters stripped, dot segments resolved, empty segments merged.
    /// The model the normal form is checked against.
    fn routed(target: &[u8]) -> Option<Vec<Vec<u8>>> {
        let target = strip_absolute(target);
        let end = target
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(target.len());
        let mut out: Vec<Vec<u8>> = Vec::new();
        for seg in target[..end].split(|&b| b == b'/') {
            let seg = seg.split(|&b| b == b';').next().unwrap_or_default();
            let mut d = Vec::new();
            let mut i = 0;
            while i < seg.len() {
                if seg[i] == b'%' {
                    let v =
                        u8::from_str_radix(std::str::from_utf8(seg.get(i + 1..i + 3)?).ok()?, 16)
                            .ok()?;
                    d.push(v);
                    i += 3;
                } else {
                    d.push(seg[i]);
                    i += 1;
                }
            }
            match &d[..] {
                b"" | b"." => {}
                b".." => {
                    out.pop();
                }
                _ => out.push(d),
            }
        }
        Some(out)
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("admin".to_string()),
            Just("%61dmin".to_string()),
            Just("%2e".to_string()),
            Just("%2E%2e".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("".to_string()),
            Just("a;b".to_string()),
            Just("%2f".to_string()),
            Just("%".to_string()),
            Just("%c3%a9".to_string()),
            Just("%20".to_string()),
            "[a-z%.;~]{0,6}",
        ]
    }

    proptest! {
        /// Every spelling of a path, on every spelling of its host, meets
        /// the same rule: the property the `rules` fuzz target checks.
        #[test]
        fn every_spelling_one_decision(
            t in "(/[a-zA-Z0-9._~-]{0,8}){1,5}(\\?[a-z=&]{0,8})?",
            choices in prop::collection::vec(any::<u8>(), 0..6),
            host_case in any::<bool>(),
        ) {
            let Ok(normal) = path(t.as_bytes()) else { return Ok(()) };
            let other = respell(&normal, &choices);
            let renormal = path(other.as_bytes());
            prop_assert_eq!(renormal.as_deref(), Ok(&*normal), "{} -> {}", t, other);
            let h = if host_case { "Code.Example.COM.:8443" } else { "code.example.com" };
            let rules = rules();
            let decide = |p: &str, h: &str| {
                let req = crate::access::Request { host: h, path: p, method: "GET", ip: None };
                rules.decide(&req, &crate::access::Subject::ANONYMOUS)
            };
            let h = host(h.as_bytes()).unwrap();
            let renormal = renormal.unwrap();
            prop_assert_eq!(decide(&normal, "code.example.com"), decide(&renormal, &h));
        }

        /// Two targets a router sends to the same path get the same normal
        /// path, and a refused target is one a router could read in more
        /// than one way (an encoded separator) or not at all.
        #[test]
        fn one_route_one_normal_form(a in prop::collection::vec(segment(), 0..6), b in prop::collection::vec(segment(), 0..6)) {
            let (ta, tb) = (format!("/{}", a.join("/")), format!("/{}", b.join("/")));
            let (na, nb) = (path(ta.as_bytes()), path(tb.as_bytes()));
            if let (Ok(na), Ok(nb)) = (&na, &nb) {
                let (ra, rb) = (routed(ta.as_bytes()), routed(tb.as_bytes()));
                let strip = |s: &str| s.trim_end_matches('/').to_string();
                if ra.is_some() && ra == rb {
                    prop_assert_eq!(strip(na), strip(nb), "{} {}", ta, tb);
                }
                // The normal form routes where the original does.
                prop_assert_eq!(routed(na.as_bytes()), ra);
            }
            for (t, n) in [(&ta, &na), (&tb, &nb)] {
                if let Err(e) = n {
                    prop_assert!(matches!(e, Refusal::Separator | Refusal::BadEscape), "{} {:?}", t, e);
                }
            }
        }

        /// Normal form is ASCII, visible, escapes in upper-case hex, and
        /// normalising it again changes nothing.
        #[test]
        fn normal_form_is_stable(t in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut t = t;
            t.insert(0, b'/');
            if let Ok(n) = path(&t) {
                prop_assert!(n.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", n);
                let again = path(n.as_bytes());
                prop_assert_eq!(again.as_deref(), Ok(&*n));
            }
        }

        #[test]
        fn hosts_never_panic_and_are_lower_case(h in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(n) = host(&h) {
                prop_assert!(!n.is_empty());
                prop_assert!(!n.bytes().any(|b| b.is_ascii_uppercase()));
                prop_assert!(!n.ends_with('.'));
            }
        }
    }
}
