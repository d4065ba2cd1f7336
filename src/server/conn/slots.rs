//! Connection slots: the global cap (`limits.max_connections`, a
//! semaphore), the per-client cap (`limits.max_connections_per_ip`, per
//! client network) and the count of open connections. A connection holds
//! its [`ConnSlot`] for as long as its task lives, upgraded streams
//! included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

use crate::server::activity::Activity;
use crate::store::client_network;

/// Counts a connection open for as long as it lives, and holds its slots
/// (the global one, and its client's when the client is counted).
pub(crate) struct ConnSlot {
    /// Where the connection is counted open.
    activity: Arc<Activity>,
    /// The global slot.
    _permit: OwnedSemaphorePermit,
    /// The client's slot; `None` for a trusted proxy, which is not counted.
    _per_ip: Option<PerIpSlot>,
}

impl ConnSlot {
    pub(crate) fn new(
        activity: Arc<Activity>,
        permit: OwnedSemaphorePermit,
        per_ip: Option<PerIpSlot>,
    ) -> Self {
        activity.connection_opened();
        ConnSlot {
            activity,
            _permit: permit,
            _per_ip: per_ip,
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.activity.connection_closed();
    }
}

/// Open connections per client network (an IPv4 address, an IPv6 /64: see
/// [`client_network`]), for `limits.max_connections_per_ip`.
///
/// Bounded: an entry exists only while its count is above zero (the last
/// [`PerIpSlot`] removes it), and every counted connection also holds one
/// of the `max_connections` global slots, so there are never more entries
/// than that.
pub(crate) struct PerIp {
    /// Connections allowed per client network (at least 1, validated).
    cap: usize,
    /// Open connections per client network; no entry is ever at zero.
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerIp {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when its network
    /// already has `cap` open.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let key = client_network(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.cap {
            // `cap` is at least 1 (validated), so a refused network already has
            // connections open and no entry is left at zero.
            return None;
        }
        *n += 1;
        Some(PerIpSlot {
            map: self.clone(),
            key,
        })
    }

    /// Client networks with open connections.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One counted connection of a client network; uncounts it when dropped.
pub(crate) struct PerIpSlot {
    /// The counts it is part of.
    map: Arc<PerIp>,
    /// Its client network.
    key: IpAddr,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut counts = self.map.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_counts_are_capped_and_cleaned() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.enter(a).unwrap();
        let s2 = p.enter(a).unwrap();
        assert!(p.enter(a).is_none(), "a third from one address");
        // IPv4-mapped is the same client.
        assert!(p.enter("::ffff:192.0.2.1".parse().unwrap()).is_none());
        let s3 = p.enter(b).unwrap();
        assert_eq!(p.tracked(), 2);
        drop(s1);
        let s4 = p.enter(a).unwrap();
        drop((s2, s3, s4));
        assert_eq!(p.tracked(), 0, "entries at zero are removed");
        // A refused attempt leaves nothing behind either.
        let p = PerIp::new(1);
        let held = p.enter(a).unwrap();
        assert!(p.enter(a).is_none());
        drop(held);
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn per_ip_counts_an_ipv6_client_per_64() {
        let p = PerIp::new(2);
        let _x = p.enter("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _y = p.enter("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(p.enter("2001:db8:1:2::abcd".parse().unwrap()).is_none());
        let _z = p.enter("2001:db8:1:3::1".parse().unwrap()).unwrap();
        assert_eq!(p.tracked(), 2);
    }
}
