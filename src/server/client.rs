//! Who is asking: the client's address, the peer's or, when the peer is a
//! trusted proxy, the nearest untrusted one in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::Config;
use crate::domain::canonical_ip;
use crate::server::state::AppState;

/// Most `X-Forwarded-For` entries looked at.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client's address: the peer, or when the peer is a trusted proxy the
/// nearest untrusted address in `X-Forwarded-For`.
pub fn client_ip(config: &Config, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = canonical_ip(peer?);
    if !config.is_trusted_proxy(peer) {
        return Some(peer);
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return Some(peer);
        };
        hops.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let Some(ip) = parse_hop(hop) else {
            // A garbled entry: trust nothing to its left.
            return Some(client);
        };
        client = canonical_ip(ip);
        if !config.is_trusted_proxy(client) {
            return Some(client);
        }
    }
    Some(client)
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client IP as an extractor.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(client_ip(&state.config, peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{config, headers, ip};
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_ignored_from_untrusted_peer() {
        let c = config(&[], None);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_ip(&c, ip("9.9.9.9"), &h), ip("9.9.9.9"));
    }

    #[test]
    fn forwarded_for_from_trusted_peer_takes_nearest_untrusted() {
        let c = config(&["10.0.0.0/8", "127.0.0.1"], None);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5")]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("1.2.3.4"));
        // Several headers are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("1.2.3.4"));
        // A garbled hop stops the walk.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, junk")]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(&c, ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Mapped addresses count as IPv4.
        assert_eq!(
            client_ip(
                &c,
                ip("::ffff:127.0.0.1"),
                &headers(&[("x-forwarded-for", "[2001:db8::1]:443")])
            ),
            ip("2001:db8::1")
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// X-Forwarded-For: the peer when it is not trusted; through a
            /// trusted peer, the peer or an address from the header, never
            /// a panic.
            #[test]
            fn forwarded_for_picks_peer_or_listed_hop(
                values in proptest::collection::vec("[0-9a-fA-F.:, \\[\\]a-z]{0,60}", 0..4),
                peer_trusted in any::<bool>(),
                hops in proptest::collection::vec(any::<u32>(), 0..20),
            ) {
                let c = config(&["10.0.0.0/8", "127.0.0.1"], None);
                let peer: IpAddr = if peer_trusted { "127.0.0.1" } else { "9.9.9.9" }.parse().unwrap();
                let mut h = HeaderMap::new();
                let listed: Vec<String> = hops.iter().map(|n| std::net::Ipv4Addr::from(*n).to_string()).collect();
                h.append("x-forwarded-for", HeaderValue::from_str(&listed.join(", ")).unwrap());
                for v in &values {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.append("x-forwarded-for", v);
                    }
                }
                let got = client_ip(&c, Some(peer), &h).unwrap();
                if peer_trusted {
                    // The answer is the peer or one of the listed hops.
                    let listed = h
                        .get_all("x-forwarded-for")
                        .iter()
                        .flat_map(|v| v.to_str().unwrap().split(','))
                        .filter_map(|hop| parse_hop(hop.trim()))
                        .any(|ip| canonical_ip(ip) == got);
                    prop_assert!(got == peer || listed, "{got}");
                } else {
                    prop_assert_eq!(got, peer);
                }
            }

        }
    }
}
