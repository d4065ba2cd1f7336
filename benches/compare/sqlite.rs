//! The SQLite competitor, written the way a careful Rust server would use it:
//! WAL, `synchronous=FULL` (durability equal to gatehouse's) or `NORMAL`,
//! prepared cached statements, `BEGIN IMMEDIATE` write transactions, a
//! `WITHOUT ROWID` sessions table keyed by token hash with indexes on user and
//! expiry, an audit table with indexes on (user, ts) and (kind, ts), keyset
//! pagination over the (user, ts) index, and a single writer thread that
//! batches whatever is queued into one transaction, lingering like
//! gatehouse's writer (the same group commit), or commits each operation alone.
//!
//! Session and audit operations do the same work as gatehouse's: creating a
//! session enforces the per-user cap and records a `session.created` event,
//! revoking records a `logout` event, sweeping records a `session.expired`
//! event per removed session. gatehouse additionally keeps a SHA-256 hash chain
//! over the audit trail (an 8-byte link and one hash per event); SQLite does not.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse::store::{EventId, NewSession};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::data::GenEvent;

/// `PRAGMA synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Full,
    Normal,
}

impl Sync {
    pub fn name(self) -> &'static str {
        match self {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    user TEXT,
    ip TEXT,
    user_agent TEXT,
    session TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user_ts ON audit(user, ts);
CREATE INDEX IF NOT EXISTS audit_kind_ts ON audit(kind, ts);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    public_id BLOB NOT NULL,
    user TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    idle_ttl_ms INTEGER,
    absolute_deadline_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    remember_me INTEGER NOT NULL,
    ip TEXT,
    user_agent TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user, created_ms);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(deadline_ms);
";

/// Keyset page, newest first, over the (user, ts) index (rowid breaks ties).
pub const KEYSET_SQL: &str = "SELECT id, ts, kind, user, ip, user_agent, session, details FROM audit \
     WHERE user = ?1 AND (ts, id) < (?2, ?3) ORDER BY ts DESC, id DESC LIMIT ?4";
/// The same page asked as `id < ?` ordered by id.
pub const KEYSET_BY_ID_SQL: &str = "SELECT id, ts, kind, user, ip, user_agent, session, details FROM audit \
     WHERE user = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3";
/// The same page by OFFSET.
pub const OFFSET_SQL: &str = "SELECT id, ts, kind, user, ip, user_agent, session, details FROM audit \
     WHERE user = ?1 ORDER BY ts DESC, id DESC LIMIT ?2 OFFSET ?3";

/// An audit row to insert.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at_us: u64,
    pub kind: &'static str,
    pub user: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session: Option<String>,
    pub details: String,
}

impl From<&GenEvent> for AuditRow {
    fn from(e: &GenEvent) -> Self {
        AuditRow {
            at_us: e.at_us,
            kind: e.kind.as_str(),
            user: Some(e.user.clone()),
            ip: Some(e.ip.to_string()),
            user_agent: Some(e.user_agent.to_string()),
            session: e.session.clone(),
            details: e.details_json(),
        }
    }
}

/// An audit row as read back. Every column is read, as a server would; the
/// benchmark itself only compares ids.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct SqlEvent {
    pub id: i64,
    pub ts: i64,
    pub kind: String,
    pub user: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session: Option<String>,
    pub details: String,
}

/// A session as read back (every column, as a server would).
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct SqlSession {
    pub public_id: Vec<u8>,
    pub user: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub idle_ttl_ms: Option<i64>,
    pub absolute_deadline_ms: i64,
    pub remember_me: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One SQLite connection with the schema, and the id counter of the writer.
pub struct Sql {
    pub conn: Connection,
    last_id: u64,
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SqlEvent> {
    Ok(SqlEvent {
        id: r.get(0)?,
        ts: r.get(1)?,
        kind: r.get(2)?,
        user: r.get(3)?,
        ip: r.get(4)?,
        user_agent: r.get(5)?,
        session: r.get(6)?,
        details: r.get(7)?,
    })
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS random source");
    b
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Sql {
    /// Opens (creating) a database with WAL, the given sync level, a 64 MiB
    /// page cache (the redb cache the bench gives gatehouse) and the schema.
    pub fn open(path: &Path, sync: Sync) -> Sql {
        let conn = Connection::open(path).expect("open sqlite");
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode.to_lowercase(), "wal");
        conn.pragma_update(None, "synchronous", sync.name())
            .expect("synchronous");
        conn.pragma_update(None, "cache_size", -65_536)
            .expect("cache_size");
        conn.pragma_update(None, "temp_store", "MEMORY")
            .expect("temp_store");
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .expect("busy_timeout");
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(SCHEMA).expect("schema");
        let last_id: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM audit", [], |r| r.get(0))
            .expect("max id");
        Sql {
            conn,
            last_id: last_id as u64,
        }
    }

    pub fn begin(&self) {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .expect("begin immediate");
    }

    pub fn commit(&self) {
        self.conn.execute_batch("COMMIT").expect("commit");
    }

    /// Inserts one audit row (inside the caller's transaction) with an id
    /// assigned exactly as gatehouse assigns it.
    pub fn append(&mut self, row: &AuditRow) -> rusqlite::Result<u64> {
        let mut id = EventId::from_micros(row.at_us).0;
        if id <= self.last_id {
            id = self.last_id + 1;
        }
        let mut st = self.conn.prepare_cached(
            "INSERT INTO audit (id, ts, kind, user, ip, user_agent, session, details) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        st.execute(params![
            id as i64,
            EventId(id).micros() as i64,
            row.kind,
            row.user,
            row.ip,
            row.user_agent,
            row.session,
            row.details,
        ])?;
        self.last_id = id;
        Ok(id)
    }

    /// Appends generated events in one transaction (one durable commit).
    pub fn fill(&mut self, events: &[GenEvent]) {
        self.begin();
        for e in events {
            self.append(&AuditRow::from(e)).expect("insert");
        }
        self.commit();
    }

    fn session_event(
        &mut self,
        kind: &'static str,
        user: &str,
        public_id: &[u8],
        (ip, ua): (Option<String>, Option<String>),
        details: &str,
        now_ms: u64,
    ) -> rusqlite::Result<u64> {
        self.append(&AuditRow {
            at_us: now_ms * 1000,
            kind,
            user: Some(user.to_string()),
            ip,
            user_agent: ua,
            session: Some(B64.encode(public_id)),
            details: details.to_string(),
        })
    }

    fn delete_session(&self, hash: &[u8]) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
            .execute([hash])?;
        Ok(())
    }

    /// Creates a session (inside the caller's transaction): drops the user's
    /// expired sessions, evicts the oldest beyond the cap, inserts the row and
    /// records `session.created`. Returns the token.
    pub fn create_session(&mut self, new: &NewSession) -> rusqlite::Result<[u8; 32]> {
        let now = new.now_ms;
        let cap = new.max_per_user.max(1);
        let existing: Vec<(Vec<u8>, Vec<u8>, i64)> = {
            let mut st = self.conn.prepare_cached(
                "SELECT token_hash, public_id, deadline_ms FROM sessions \
                 WHERE user = ?1 ORDER BY created_ms",
            )?;
            st.query_map([&new.user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut remaining = existing.len();
        let mut live = Vec::new();
        for (hash, pid, deadline) in existing {
            if deadline as u64 <= now {
                self.delete_session(&hash)?;
                self.session_event("session.expired", &new.user, &pid, (None, None), "{}", now)?;
                remaining -= 1;
            } else {
                live.push((hash, pid));
            }
        }
        for (hash, pid) in live {
            if remaining < cap {
                break;
            }
            self.delete_session(&hash)?;
            let details = format!(r#"{{"cap":"{cap}","reason":"session cap"}}"#);
            self.session_event(
                "session.evicted",
                &new.user,
                &pid,
                (None, None),
                &details,
                now,
            )?;
            remaining -= 1;
        }
        let token: [u8; 32] = random();
        let hash = sha256(&token);
        let pid: [u8; 16] = random();
        let idle = (!new.remember_me).then_some(new.idle_ttl_ms);
        let absolute = now.saturating_add(new.absolute_ttl_ms);
        let deadline = idle.map_or(absolute, |i| (now + i).min(absolute));
        let ip = new.ip.map(|i| i.to_string());
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (token_hash, public_id, user, created_ms, last_seen_ms, \
                 idle_ttl_ms, absolute_deadline_ms, deadline_ms, remember_me, ip, user_agent) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                &hash[..],
                &pid[..],
                new.user,
                now as i64,
                idle.map(|i| i as i64),
                absolute as i64,
                deadline as i64,
                new.remember_me,
                ip,
                new.user_agent,
            ])?;
        let details = format!(r#"{{"remember_me":"{}"}}"#, new.remember_me);
        self.session_event(
            "session.created",
            &new.user,
            &pid,
            (ip, new.user_agent.clone()),
            &details,
            now,
        )?;
        Ok(token)
    }

    /// Revokes the session with this token hash (inside the caller's
    /// transaction) and records `logout`.
    pub fn revoke(&mut self, hash: &[u8; 32], now_ms: u64) -> rusqlite::Result<bool> {
        let gone: Option<(String, Vec<u8>)> = self
            .conn
            .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1 RETURNING user, public_id")?
            .query_row([&hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match gone {
            Some((user, pid)) => {
                self.session_event(
                    "logout",
                    &user,
                    &pid,
                    (None, None),
                    r#"{"reason":"logout"}"#,
                    now_ms,
                )?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes up to `limit` expired sessions (inside the caller's
    /// transaction), recording `session.expired` for each. Returns how many
    /// and whether more are due.
    pub fn sweep(&mut self, now_ms: u64, limit: usize) -> rusqlite::Result<(usize, bool)> {
        let due: Vec<(Vec<u8>, String, Vec<u8>)> = {
            let mut st = self.conn.prepare_cached(
                "SELECT token_hash, user, public_id FROM sessions \
                 WHERE deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
            )?;
            st.query_map(params![now_ms as i64, (limit + 1) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let more = due.len() > limit;
        let mut n = 0;
        for (hash, user, pid) in due.into_iter().take(limit) {
            self.delete_session(&hash)?;
            self.session_event(
                "session.expired",
                &user,
                &pid,
                (None, None),
                r#"{"reason":"idle"}"#,
                now_ms,
            )?;
            n += 1;
        }
        Ok((n, more))
    }

    /// The live session holding this token, if any (hashes the token first,
    /// as gatehouse does).
    pub fn session(&self, token: &[u8; 32], now_ms: u64) -> rusqlite::Result<Option<SqlSession>> {
        let hash = sha256(token);
        let mut st = self.conn.prepare_cached(
            "SELECT public_id, user, created_ms, last_seen_ms, idle_ttl_ms, \
             absolute_deadline_ms, remember_me, ip, user_agent, deadline_ms \
             FROM sessions WHERE token_hash = ?1",
        )?;
        let row = st
            .query_row([&hash[..]], |r| {
                let deadline: i64 = r.get(9)?;
                Ok((
                    deadline,
                    SqlSession {
                        public_id: r.get(0)?,
                        user: r.get(1)?,
                        created_ms: r.get(2)?,
                        last_seen_ms: r.get(3)?,
                        idle_ttl_ms: r.get(4)?,
                        absolute_deadline_ms: r.get(5)?,
                        remember_me: r.get(6)?,
                        ip: r.get(7)?,
                        user_agent: r.get(8)?,
                    },
                ))
            })
            .optional()?;
        Ok(row.and_then(|(d, s)| (d as u64 > now_ms).then_some(s)))
    }

    /// One keyset page of a user's events, newest first, below `(ts, id)`.
    pub fn page(
        &self,
        user: &str,
        below: Option<(i64, i64)>,
        limit: usize,
    ) -> rusqlite::Result<Vec<SqlEvent>> {
        let (ts, id) = below.unwrap_or((i64::MAX, i64::MAX));
        let mut st = self.conn.prepare_cached(KEYSET_SQL)?;
        st.query_map(params![user, ts, id, limit as i64], event_row)?
            .collect()
    }

    /// The same page asked as `id < ?` ordered by id.
    pub fn page_by_id(
        &self,
        user: &str,
        below: Option<i64>,
        limit: usize,
    ) -> rusqlite::Result<Vec<SqlEvent>> {
        let mut st = self.conn.prepare_cached(KEYSET_BY_ID_SQL)?;
        st.query_map(
            params![user, below.unwrap_or(i64::MAX), limit as i64],
            event_row,
        )?
        .collect()
    }

    /// A page by OFFSET.
    pub fn page_offset(
        &self,
        user: &str,
        offset: usize,
        limit: usize,
    ) -> rusqlite::Result<Vec<SqlEvent>> {
        let mut st = self.conn.prepare_cached(OFFSET_SQL)?;
        st.query_map(params![user, limit as i64, offset as i64], event_row)?
            .collect()
    }

    /// SQLite's plan for a query, one line per step.
    pub fn plan(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> String {
        let mut st = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows: Vec<String> = st
            .query_map(args, |r| r.get::<_, String>(3))
            .expect("explain rows")
            .collect::<Result<_, _>>()
            .expect("explain rows");
        rows.join("; ")
    }

    /// Merges the WAL into the main file so the file size is the data's.
    pub fn checkpoint(&self) {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
    }
}

/// A write for the SQLite writer thread.
#[derive(Debug)]
pub enum SqlOp {
    Append(AuditRow),
    Create(NewSession),
    Revoke([u8; 32], u64),
    Sweep(u64, usize),
}

/// What a write returned.
#[allow(dead_code)]
#[derive(Debug)]
pub enum SqlOut {
    Appended(u64),
    Created([u8; 32]),
    Revoked(bool),
    Swept(usize, bool),
}

type Req = (SqlOp, oneshot::Sender<SqlOut>);

/// Handle on the SQLite writer thread: the same shape as gatehouse's writer (a
/// bounded queue drained into one transaction per batch).
#[derive(Clone)]
pub struct SqlWriter {
    tx: mpsc::Sender<Req>,
}

impl SqlWriter {
    /// Starts the thread. `max_batch` 1 commits every operation alone.
    pub fn spawn(sql: Sql, max_batch: usize) -> (SqlWriter, std::thread::JoinHandle<Sql>) {
        let (tx, rx) = mpsc::channel::<Req>(4096);
        let h = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(sql, rx, max_batch))
            .expect("spawn sqlite writer");
        (SqlWriter { tx }, h)
    }

    pub async fn submit(&self, op: SqlOp) -> SqlOut {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((op, reply))
            .await
            .expect("sqlite writer alive");
        rx.await.expect("sqlite writer replied")
    }
}

fn apply(sql: &mut Sql, op: SqlOp) -> SqlOut {
    match op {
        SqlOp::Append(row) => SqlOut::Appended(sql.append(&row).expect("append")),
        SqlOp::Create(new) => SqlOut::Created(sql.create_session(&new).expect("create")),
        SqlOp::Revoke(hash, now) => SqlOut::Revoked(sql.revoke(&hash, now).expect("revoke")),
        SqlOp::Sweep(now, limit) => {
            let (n, more) = sql.sweep(now, limit).expect("sweep");
            SqlOut::Swept(n, more)
        }
    }
}

/// The batching policy of gatehouse's writer (`WriterConfig::linger`), so
/// that both stores batch alike: while fewer operations wait than the last
/// commit carried and each poll brings more, wait up to 1 ms for the callers
/// it just acknowledged.
const LINGER: Duration = Duration::from_millis(1);
const LINGER_POLL: Duration = Duration::from_micros(50);

fn run(mut sql: Sql, mut rx: mpsc::Receiver<Req>, max_batch: usize) -> Sql {
    let mut batch: Vec<Req> = Vec::with_capacity(max_batch);
    let mut last_batch = 0usize;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        let target = last_batch.min(max_batch);
        let until = Instant::now() + LINGER;
        let mut before_poll: Option<usize> = None;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(mpsc::error::TryRecvError::Empty)
                    if target > 1
                        && batch.len() < target
                        && before_poll.is_none_or(|n| batch.len() > n)
                        && Instant::now() < until =>
                {
                    before_poll = Some(batch.len());
                    std::thread::sleep(LINGER_POLL);
                }
                Err(_) => break,
            }
        }
        last_batch = batch.len();
        sql.begin();
        let mut outs = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (op, reply) in batch.drain(..) {
            outs.push(apply(&mut sql, op));
            replies.push(reply);
        }
        sql.commit();
        for (out, reply) in outs.into_iter().zip(replies) {
            let _ = reply.send(out);
        }
    }
    sql
}
