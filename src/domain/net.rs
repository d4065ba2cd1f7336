//! IP blocks (`trusted_proxies`, the `networks` of access rules) and the one
//! canonical form of a client address.

use std::net::{IpAddr, Ipv4Addr};

/// An IP block from `trusted_proxies` or a rule's `networks`.
///
/// Client addresses are compared in their canonical form ([`canonical_ip`]:
/// an IPv4-mapped IPv6 address is its IPv4 address), so an IPv4-mapped
/// block (`::ffff:10.0.0.0/104`) is held as the IPv4 block it names
/// (`10.0.0.0/8`) and matches the same clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// An address or CIDR block; `None` when it is not one (see
    /// [`IpNet::parse_explained`] for why).
    pub fn parse(s: &str) -> Option<IpNet> {
        IpNet::parse_explained(s).ok()
    }

    /// An address or CIDR block, or why `s` is not one that can match.
    pub fn parse_explained(s: &str) -> Result<IpNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let not = || format!("{s:?} is not an IP address or CIDR block");
        let addr: IpAddr = a.trim().parse().map_err(|_| not())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(not)?,
            None => max,
        };
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            // Clients arrive as IPv4 whichever socket family carried them.
            if prefix < 96 {
                return Err(format!(
                    "{s:?}: an IPv4-mapped block needs a prefix of /96 or longer; \
                     write the IPv4 block instead (for example \"{}/8\")",
                    Ipv4Addr::from(u32::from(v4) & 0xff00_0000)
                ));
            }
            return Ok(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as plain IPv4, so that one
/// client has one key whichever socket family it arrived on.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
