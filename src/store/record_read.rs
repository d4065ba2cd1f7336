//! Reading a stored event record straight into an [`Event`]: the bytes of
//! [`EventRecord`](super::chain::EventRecord) (postcard) decoded by hand,
//! without serde's generic path, on the audit queries' hot loop.
//!
//! It reads exactly what `postcard::from_bytes::<EventRecord>` reads and
//! refuses exactly what it refuses (trailing bytes are ignored by both):
//! the tests below hold the two to that, on valid records and on damaged
//! ones. The layout, field by field: `kind` one byte; `link` 8 bytes; `ip`
//! an option byte (0 or 1), then a variant index (varint, 0 for v4, 1 for
//! v6) and 4 or 16 bytes; `user_agent` and `session` an option byte, then a
//! string; `details` a varint count of string pairs. A string is a varint
//! byte length and that many bytes of UTF-8. Varints are LEB128, at most 5
//! bytes for a variant index and 10 for a length, with no bits past the
//! type's width.
//!
//! A query decodes in two steps: [`head`] gives the kind and address, which
//! the filters look at, and [`finish`] the rest, only for events the page
//! keeps; the user agents of a page are shared ([`Agents`]). So a record
//! damaged past its head fails a query only when its event is kept; the
//! store's check (`verify`) reads every record whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::domain::{CompactString, Event, EventId, EventKind};

/// The fields of a record a filter checks, and where the rest starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub kind: EventKind,
    pub ip: Option<IpAddr>,
    /// Offset of `user_agent` in the record.
    rest: usize,
}

/// Why a record does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    End,
    Varint,
    Option,
    Variant,
    Utf8,
}

impl Bad {
    fn say(self, id: u64) -> String {
        let what = match self {
            Bad::End => "ends early",
            Bad::Varint => "has a bad varint",
            Bad::Option => "has a bad option tag",
            Bad::Variant => "has a bad address family",
            Bad::Utf8 => "has a string that is not UTF-8",
        };
        format!("event {id}: record {what}")
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Bad> {
        let b = *self.bytes.get(self.at).ok_or(Bad::End)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).ok_or(Bad::End)?;
        let s = self.bytes.get(self.at..end).ok_or(Bad::End)?;
        self.at = end;
        Ok(s)
    }

    /// A LEB128 varint of a `bits`-wide integer, as postcard reads it.
    fn varint(&mut self, bits: u32) -> Result<u64, Bad> {
        let max_bytes = bits.div_ceil(7);
        let last_max = (1u8 << (bits % 7)) - 1;
        let mut out = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && b > last_max {
                    return Err(Bad::Varint);
                }
                return Ok(out);
            }
        }
        Err(Bad::Varint)
    }

    fn len(&mut self) -> Result<usize, Bad> {
        // postcard reads a length as a u64 varint on 64-bit targets.
        usize::try_from(self.varint(usize::BITS)?).map_err(|_| Bad::End)
    }

    fn present(&mut self) -> Result<bool, Bad> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Bad::Option),
        }
    }

    fn str(&mut self) -> Result<CompactString, Bad> {
        let n = self.len()?;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(CompactString::from)
            .map_err(|_| Bad::Utf8)
    }

    /// An optional string shared through `agents`.
    fn opt_agent(&mut self, agents: &mut Agents) -> Result<Option<Arc<str>>, Bad> {
        if !self.present()? {
            return Ok(None);
        }
        let n = self.len()?;
        let b = self.take(n)?;
        agents.get(b).map(Some)
    }

    fn opt_str(&mut self) -> Result<Option<CompactString>, Bad> {
        if self.present()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The kind and address of event `id`'s record.
pub(crate) fn head(id: u64, bytes: &[u8]) -> Result<Head, String> {
    let mut r = Reader { bytes, at: 0 };
    let read = |r: &mut Reader<'_>| -> Result<(u8, Option<IpAddr>), Bad> {
        let code = r.byte()?;
        r.take(8)?;
        let ip = if r.present()? {
            Some(match r.varint(32)? {
                0 => {
                    let o: [u8; 4] = r.take(4)?.try_into().map_err(|_| Bad::End)?;
                    IpAddr::V4(Ipv4Addr::from(o))
                }
                1 => {
                    let o: [u8; 16] = r.take(16)?.try_into().map_err(|_| Bad::End)?;
                    IpAddr::V6(Ipv6Addr::from(o))
                }
                _ => return Err(Bad::Variant),
            })
        } else {
            None
        };
        Ok((code, ip))
    };
    let (code, ip) = read(&mut r).map_err(|b| b.say(id))?;
    let kind = EventKind::from_code(code)
        .ok_or_else(|| format!("event {id}: unknown kind code {code}"))?;
    Ok(Head {
        kind,
        ip,
        rest: r.at,
    })
}

/// User agents recently read, most recent first: the events of one client
/// name the same agent, and hold one shared copy of it. Bounded.
#[derive(Debug, Default)]
pub(crate) struct Agents {
    recent: Vec<Arc<str>>,
}

impl Agents {
    const KEEP: usize = 4;

    /// The agent whose bytes are `b`: a recent one when it matches (its
    /// bytes were checked when it was read), else a new one, checked.
    fn get(&mut self, b: &[u8]) -> Result<Arc<str>, Bad> {
        if let Some(i) = self.recent.iter().position(|a| a.as_bytes() == b) {
            let a = self.recent[i].clone();
            self.recent[..=i].rotate_right(1);
            return Ok(a);
        }
        let a: Arc<str> = Arc::from(std::str::from_utf8(b).map_err(|_| Bad::Utf8)?);
        if self.recent.len() == Self::KEEP {
            self.recent.pop();
        }
        self.recent.insert(0, a.clone());
        Ok(a)
    }
}

type Rest = (
    Option<Arc<str>>,
    Option<CompactString>,
    Vec<(CompactString, CompactString)>,
);

fn rest(r: &mut Reader<'_>, agents: &mut Agents) -> Result<Rest, Bad> {
    let user_agent = r.opt_agent(agents)?;
    let session = r.opt_str()?;
    let n = r.len()?;
    // Each pair takes at least two bytes: a damaged count cannot make a
    // large allocation.
    let mut details = Vec::with_capacity(n.min(r.bytes.len().saturating_sub(r.at) / 2));
    for _ in 0..n {
        let k = r.str()?;
        let v = r.str()?;
        details.push((k, v));
    }
    Ok((user_agent, session, details))
}

/// The event stored as `id`, `user` (empty for none) and `bytes`, whose
/// [`head`] is `h`; its user agent shared through `agents`.
#[inline]
pub(crate) fn finish(
    id: u64,
    user: &str,
    bytes: &[u8],
    h: Head,
    agents: &mut Agents,
) -> Result<Event, String> {
    let (user_agent, session, details) =
        rest(&mut Reader { bytes, at: h.rest }, agents).map_err(|b| b.say(id))?;
    Ok(Event {
        id: EventId(id),
        time_us: EventId(id).micros(),
        kind: h.kind,
        user: (!user.is_empty()).then(|| CompactString::from(user)),
        ip: h.ip,
        user_agent,
        session,
        details,
    })
}

/// The event stored as `id`, `user` (empty for none) and `bytes`.
pub(crate) fn event(id: u64, user: &str, bytes: &[u8]) -> Result<Event, String> {
    finish(id, user, bytes, head(id, bytes)?, &mut Agents::default())
}

#[cfg(test)]
#[path = "record_read_tests.rs"]
mod tests;
