//! The outbox: audit events on their way from Redis to PostgreSQL.
//!
//! With the distributed backend, every state change is one Lua script that
//! writes the state and adds the change's audit events to one Redis stream,
//! `<prefix>:outbox`, in the same atomic step: "a change is stored together
//! with its audit event" holds there. [`Chainer`] then moves the entries
//! into the chained table in PostgreSQL ([`crate::store::postgres`]).
//!
//! What this module owns:
//! - the entry's format ([`wire`]): one field `e`, the event as JSON, its
//!   time the time of the change (never the time it is chained);
//! - [`Outbox`]: adding an entry under the bound (past it, `Full`: the
//!   change must answer 503 rather than grow Redis without limit), the
//!   depth, reading the oldest entries and acknowledging them;
//! - [`Chainer`]: one leader at a time among the nodes (a PostgreSQL
//!   advisory lock on a connection of its own, released when that
//!   connection ends, so any node takes over from a dead one), moving
//!   batches: read the oldest entries, chain them in one transaction that
//!   skips entries already chained, then delete them from the stream. A
//!   crash between the commit and the delete re-reads them, and the chain
//!   skips them: no duplicate, no gap.
//!
//! The scripts that change state (`crate::store::redis`: bans, sessions,
//! tokens) add their entries themselves, under the same bound;
//! [`Outbox::push`] adds one from outside a script.

mod chainer;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

pub use chainer::{BACKOFF, ChainError, Chainer, IDLE, LEAD_RETRY, Leader};
pub use wire::OutboxEvent;

use crate::store::redis::connection::Conn;

use crate::domain::NewEvent;

/// Entries the outbox holds at most by default.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// Adds one entry when the stream holds fewer than `ARGV[1]`: the bound is
/// checked and the entry added in one atomic step, as the state scripts
/// will do it. Answers the new entry's id, or the error `FULL`.
const PUSH: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('FULL the outbox is full')
end
return redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
";

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox holds its maximum: the change is refused (503).
    #[error("the audit outbox is full ({0} entries): PostgreSQL is not taking events")]
    Full(u64),
    /// Redis did not answer, or answered with an error.
    #[error("redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for OutboxError {
    fn from(e: redis::RedisError) -> Self {
        OutboxError::Redis(e.to_string())
    }
}

/// One entry read from the outbox: its stream id (the source the chain
/// records) and its event, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub event: Result<NewEvent, String>,
}

/// A stream entry's id, `<ms>-<seq>`, ordered as Redis orders them: the
/// outbox is read oldest first, so every entry up to an id has left the
/// outbox once the oldest left is past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// Reads `<ms>-<seq>`; `None` for anything else.
    pub fn parse(id: &str) -> Option<StreamId> {
        let (ms, seq) = id.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// The outbox stream of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    /// Reconnects by itself; a command meanwhile fails.
    conn: Conn,
    /// `<prefix>:outbox`.
    key: String,
    /// Where unreadable entries are moved: `<prefix>:outbox:unreadable`.
    unreadable_key: String,
    /// [`DEFAULT_MAX_ENTRIES`] unless configured.
    max_entries: u64,
    push: redis::Script,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("key", &self.key)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl Outbox {
    /// The outbox of the deployment `prefix` on the Redis at `url`.
    pub async fn connect(url: &str, prefix: &str, max_entries: u64) -> Result<Outbox, OutboxError> {
        let target = crate::store::redis::target::Target::from_url(url, None).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "the URL", e))
        })?;
        Self::connect_target(target, Default::default(), prefix, max_entries).await
    }

    /// [`Outbox::connect`] through `target`, each entry acknowledged once
    /// `replicas` have it.
    pub async fn connect_target(
        target: crate::store::redis::target::Target,
        replicas: crate::store::redis::connection::Replicas,
        prefix: &str,
        max_entries: u64,
    ) -> Result<Outbox, OutboxError> {
        let conn = Conn::open(target, replicas).await?;
        Ok(Outbox {
            conn,
            key: format!("{prefix}:outbox"),
            unreadable_key: format!("{prefix}:outbox:unreadable"),
            max_entries,
            push: redis::Script::new(PUSH),
        })
    }

    /// Adds `event`; its id in the stream. `Full` past the bound.
    pub async fn push(&self, event: &NewEvent) -> Result<String, OutboxError> {
        let json = wire::encode(event);
        let mut conn = self.conn.clone();
        let r: Result<String, redis::RedisError> = self
            .push
            .key(&self.key)
            .arg(self.max_entries)
            .arg(json)
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok(id) => Ok(id),
            Err(e) if e.code() == Some("FULL") => Err(OutboxError::Full(self.max_entries)),
            Err(e) => Err(e.into()),
        }
    }

    /// Entries waiting to be chained.
    pub async fn depth(&self) -> Result<u64, OutboxError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?)
    }

    /// The oldest `n` entries, oldest first.
    pub async fn oldest(&self, n: usize) -> Result<Vec<Entry>, OutboxError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(n)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|s| Entry {
                event: match s.map.get("e") {
                    Some(redis::Value::BulkString(b)) => wire::decode(b),
                    _ => Err("the entry has no field `e`".into()),
                },
                id: s.id,
            })
            .collect())
    }

    /// Entries set aside as unreadable ([`Outbox::set_aside`]).
    pub async fn set_aside_count(&self) -> Result<u64, OutboxError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN")
            .arg(&self.unreadable_key)
            .query_async(&mut conn)
            .await?)
    }

    /// The stream id of the oldest entry waiting, if any.
    pub async fn oldest_id(&self) -> Result<Option<StreamId>, OutboxError> {
        self.end_id("XRANGE", "-", "+").await
    }

    /// The stream id of the newest entry waiting, if any.
    pub async fn newest_id(&self) -> Result<Option<StreamId>, OutboxError> {
        self.end_id("XREVRANGE", "+", "-").await
    }

    async fn end_id(
        &self,
        cmd: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<StreamId>, OutboxError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd(cmd)
            .arg(&self.key)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        match reply.ids.first() {
            None => Ok(None),
            Some(s) => StreamId::parse(&s.id)
                .map(Some)
                .ok_or_else(|| OutboxError::Redis(format!("an unreadable stream id {:?}", s.id))),
        }
    }

    /// Removes chained entries from the stream.
    pub async fn ack(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: u64 = redis::cmd("XDEL")
            .arg(&self.key)
            .arg(ids)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves an unreadable entry aside (kept for an operator, out of the
    /// chain's way): copied to `<prefix>:outbox:unreadable`, then removed.
    pub async fn set_aside(&self, id: &str, why: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("XADD")
            .arg(&self.unreadable_key)
            .arg("*")
            .arg("source")
            .arg(id)
            .arg("why")
            .arg(why)
            .query_async(&mut conn)
            .await?;
        self.ack(&[id.to_string()]).await
    }
}
