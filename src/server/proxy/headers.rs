//! The headers of a proxied request and response: what goes upstream and
//! what comes back.
//!
//! Upstream, in this order: hop-by-hop headers removed (RFC 9110, 7.6.1:
//! `Connection` and every header it names, `Keep-Alive`, `TE`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-Connection`,
//! `Proxy-Authorization`); every client copy of the identity headers
//! removed, however spelled (`Remote-User`, `remote_user`, ...), and
//! gatehouse's values set; gatehouse's cookies removed from `Cookie` (the
//! header dropped when nothing is left); `Authorization` removed when it was
//! gatehouse's credential; `X-Forwarded-For`, `-Proto` and `-Host` set (a
//! trusted proxy's are extended or kept, anyone else's replaced).
//!
//! Back: hop-by-hop headers removed, and any `Set-Cookie` of one of
//! gatehouse's cookie names dropped, so that an app cannot plant a session
//! on the shared host.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::Config;
use crate::server::forward_auth::answers::Identity;

/// The identity headers, lower case with `-`: a client header is one of
/// them when its name, with `_` read as `-`, is.
const IDENTITY: [&str; 4] = [
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the hop-by-hop headers of RFC 9110 (7.6.1), and those the
/// `Connection` header names.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(n);
    }
}

/// Whether `name` is an identity header in any spelling.
fn is_identity(name: &HeaderName) -> bool {
    let n = name.as_str();
    IDENTITY.iter().any(|i| {
        i.len() == n.len()
            && i.bytes()
                .zip(n.bytes())
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Sets the identity headers from `id`, after removing every client copy.
pub fn set_identity(h: &mut HeaderMap, id: &Identity) {
    let forged: Vec<HeaderName> = h.keys().filter(|k| is_identity(k)).cloned().collect();
    for n in forged {
        h.remove(n);
    }
    let empty = HeaderValue::from_static("");
    for (name, v) in [
        ("remote-user", &id.user),
        ("remote-groups", &id.groups),
        ("remote-email", &id.email),
        ("remote-name", &id.name),
    ] {
        h.insert(
            HeaderName::from_static(name),
            v.clone().unwrap_or_else(|| empty.clone()),
        );
    }
}

/// gatehouse's cookie names: the session, the pending sign-in and the
/// passkey ceremony.
pub fn own_cookies(config: &Config) -> [String; 3] {
    let n = &config.cookie.name;
    [n.clone(), format!("{n}_pending"), format!("{n}_webauthn")]
}

/// Removes gatehouse's cookies from `Cookie`, joining what is left into one
/// header (HTTP/2 clients may send several) or removing it.
pub fn strip_cookies(h: &mut HeaderMap, own: &[String; 3]) {
    if !h.contains_key(header::COOKIE) {
        return;
    }
    let mut kept = String::new();
    for v in h.get_all(header::COOKIE) {
        // A value that is not text cannot be parsed into pairs to keep:
        // it is dropped whole rather than passed on unread.
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let p = pair.trim_matches([' ', '\t']);
            if p.is_empty() {
                continue;
            }
            let name = p
                .split_once('=')
                .map_or(p, |(k, _)| k)
                .trim_matches([' ', '\t']);
            if own.iter().any(|o| o == name) {
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(p);
        }
    }
    h.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept)
        && !kept.is_empty()
    {
        h.insert(header::COOKIE, v);
    }
}

/// Drops every `Set-Cookie` of a response that sets one of gatehouse's
/// cookies.
pub fn strip_set_cookies(h: &mut HeaderMap, own: &[String; 3]) {
    if !h.contains_key(header::SET_COOKIE) {
        return;
    }
    let all: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
    h.remove(header::SET_COOKIE);
    for v in all {
        let name = v
            .to_str()
            .ok()
            .and_then(|s| s.split_once('='))
            .map(|(k, _)| k.trim());
        if name.is_some_and(|n| own.iter().any(|o| o == n)) {
            continue;
        }
        h.append(header::SET_COOKIE, v);
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. From a trusted proxy its
/// `X-Forwarded-For` is extended with its address and its `-Proto` and
/// `-Host` are kept; from anyone else all three are replaced.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let peer_s = peer.to_string();
    let chain = if trusted {
        let earlier: Vec<&str> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if earlier.is_empty() {
            peer_s
        } else {
            format!("{}, {peer_s}", earlier.join(", "))
        }
    } else {
        peer_s
    };
    h.remove(&X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&chain) {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !trusted || !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !trusted || !h.contains_key(&X_FORWARDED_HOST) {
        h.remove(&X_FORWARDED_HOST);
        if let Some(v) = host {
            h.insert(X_FORWARDED_HOST, v);
        }
    }
    if !trusted {
        h.remove(header::FORWARDED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forged_identity_in_any_spelling_is_replaced() {
        let mut h = map(&[
            ("remote-user", "mallory"),
            ("remote_user", "mallory"),
            ("Remote_Groups", "admin"),
            ("remote-email", "m@x"),
            ("remote_name", "M"),
            ("remote-userx", "kept"),
        ]);
        let id = Identity {
            user: Some(HeaderValue::from_static("alice")),
            ..Identity::default()
        };
        set_identity(&mut h, &id);
        assert_eq!(
            h.get_all("remote-user").iter().collect::<Vec<_>>(),
            ["alice"]
        );
        assert!(h.get("remote_user").is_none());
        assert!(h.get("remote_groups").is_none());
        assert_eq!(h["remote-groups"], "");
        assert_eq!(h["remote-email"], "");
        assert!(h.get("remote_name").is_none());
        assert_eq!(h["remote-userx"], "kept");
    }

    #[test]
    fn own_cookies_are_removed_and_the_rest_joined() {
        let own = [
            "gh".to_string(),
            "gh_pending".to_string(),
            "gh_webauthn".to_string(),
        ];
        let mut h = map(&[("cookie", "a=1; gh=secret"), ("cookie", "gh_pending=p;b=2")]);
        strip_cookies(&mut h, &own);
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        let mut h = map(&[("cookie", "gh=secret; gh_webauthn=x"), ("cookie", " gh =y")]);
        strip_cookies(&mut h, &own);
        assert!(h.get("cookie").is_none());
        let mut h = map(&[
            ("set-cookie", "gh=planted; Path=/"),
            ("set-cookie", "app=1"),
        ]);
        strip_set_cookies(&mut h, &own);
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            ["app=1"]
        );
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn forwarded_headers_are_ours_unless_trusted() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarded(
            &mut h,
            ip,
            false,
            "http",
            Some(HeaderValue::from_static("app")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app");
        assert!(h.get("forwarded").is_none());
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut h,
            ip,
            true,
            "http",
            Some(HeaderValue::from_static("app")),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
