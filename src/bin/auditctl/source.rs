//! Where `auditctl` reads: the database file itself when no process holds
//! it for writing, else the running server through its admin socket
//! (`gatehouse::admin_wire`), since a server holds its file for itself.
//! Every command asks its [`Source`] the same questions either way, so what
//! it prints, and how it exits, does not depend on where the answers came
//! from.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gatehouse::admin_wire::{ErrorKind, Frame, FrameStream, WireError, filter_query};
use gatehouse::store::postgres::PgAudit;
use gatehouse::store::{
    AccessTokenInfo, AuditCounts, AuditStore, Backend, BackendConfig, CheckReport, EventFilter,
    EventId, EventPage, OpenError, Session, SessionStore, StoreCheck, StoreStats, TokenStore,
    now_ms,
};

use crate::{explain_open, wait};

/// The store read directly, the server that holds it, or the audit trail
/// in PostgreSQL.
pub enum Source {
    Local(Backend),
    Remote(Remote),
    /// Only the audit trail: sessions, tokens and bans are not in it.
    Postgres(Box<PgAudit>),
}

/// A running server, reached through the admin socket beside its database.
pub struct Remote {
    /// The database the server holds (as the operator named it).
    db: PathBuf,
    /// The directory of the socket.
    dir: PathBuf,
}

/// How an open attempt ended.
pub enum Opened {
    Source(Source),
    /// A process holds the file and no server answers on the socket yet.
    Held(anyhow::Error),
}

impl Source {
    /// Opens the file read-only, or, when a process holds it, reaches the
    /// server through its socket.
    pub fn open(config: &BackendConfig) -> anyhow::Result<Source> {
        match Self::try_open(config)? {
            Opened::Source(s) => Ok(s),
            Opened::Held(e) => Err(e),
        }
    }

    /// [`Source::open`], telling a file held without a server answering
    /// (a server starting or stopping, or another tool) from other failures.
    pub fn try_open(config: &BackendConfig) -> anyhow::Result<Opened> {
        match Backend::open_read_only(config) {
            Ok(b) => Ok(Opened::Source(Source::Local(b))),
            Err(OpenError::Locked(_)) => {
                let remote = Remote::beside(config.location());
                Ok(if remote.socket().exists() {
                    Opened::Source(Source::Remote(remote))
                } else {
                    Opened::Held(remote.nobody_answers("there is no admin socket"))
                })
            }
            Err(e) => Err(explain_open(e)),
        }
    }

    /// The audit trail in PostgreSQL at `url`.
    pub fn postgres(url: &str) -> anyhow::Result<Source> {
        Ok(Source::Postgres(Box::new(wait(PgAudit::connect(url))?)))
    }

    /// The database, as the operator named it (never a password).
    pub fn name(&self) -> String {
        match self {
            // auditctl opens only file backends itself.
            Source::Local(b) => b.file().unwrap_or(Path::new("")).display().to_string(),
            Source::Remote(r) => r.db.display().to_string(),
            Source::Postgres(pg) => pg.name().to_string(),
        }
    }

    /// Whether this holds the audit trail only (no sessions, tokens or
    /// bans), so that commands leave those out.
    pub fn audit_only(&self) -> bool {
        matches!(self, Source::Postgres(_))
    }

    /// One page of a query; a bad cursor is explained.
    pub fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<EventPage> {
        match self {
            Source::Local(b) => {
                wait(b.query_events(filter, limit, cursor)).map_err(crate::query::explain)
            }
            Source::Remote(r) => r.query_events(filter, limit, cursor),
            Source::Postgres(pg) => {
                wait(pg.query_events(filter, limit, cursor)).map_err(crate::query::explain)
            }
        }
    }

    pub fn stats(&self) -> anyhow::Result<StoreStats> {
        match self {
            Source::Local(b) => Ok(wait(b.stats())?),
            Source::Remote(r) => r.one("/stream/stats", String::new(), |f| match f {
                Frame::Stats { stats } => Some(stats),
                _ => None,
            }),
            Source::Postgres(pg) => Ok(wait(pg.stats())?),
        }
    }

    pub fn audit_counts(&self, top: usize) -> anyhow::Result<AuditCounts> {
        match self {
            Source::Local(b) => Ok(wait(b.audit_counts(top))?),
            Source::Remote(r) => r.one("/stream/counts", format!("top={top}"), |f| match f {
                Frame::Counts { counts } => Some(counts),
                _ => None,
            }),
            Source::Postgres(pg) => Ok(wait(pg.audit_counts(top))?),
        }
    }

    pub fn check(&self) -> anyhow::Result<CheckReport> {
        match self {
            Source::Local(b) => Ok(wait(b.check())?),
            Source::Remote(r) => r.one("/stream/check", String::new(), |f| match f {
                Frame::Check { report } => Some(report),
                _ => None,
            }),
            Source::Postgres(pg) => Ok(wait(pg.check())?.into_report()),
        }
    }

    /// Live sessions of `user`, or of everyone up to `limit`.
    pub fn sessions(&self, user: Option<&str>, limit: usize) -> anyhow::Result<Vec<Session>> {
        match self {
            Source::Postgres(_) => Err(not_in_postgres("sessions")),
            Source::Local(b) => {
                let now = now_ms();
                Ok(match user {
                    Some(u) => wait(b.sessions_of(u, now))?,
                    None => wait(b.all_sessions(now, limit))?,
                })
            }
            Source::Remote(r) => {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                if let Some(u) = user {
                    q.append_pair("user", u);
                }
                q.append_pair("limit", &limit.to_string());
                let mut out = Vec::new();
                r.each("/stream/sessions", q.finish(), |f| match f {
                    Frame::Sessions { sessions } => {
                        out.extend(sessions);
                        Ok(())
                    }
                    f => Err(unexpected(&f)),
                })?;
                Ok(out)
            }
        }
    }

    pub fn tokens_of(&self, user: &str) -> anyhow::Result<Vec<AccessTokenInfo>> {
        match self {
            Source::Postgres(_) => Err(not_in_postgres("access tokens")),
            Source::Local(b) => Ok(wait(b.tokens_of(user, now_ms()))?),
            Source::Remote(r) => {
                let q = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("user", user)
                    .finish();
                r.one("/stream/tokens", q, |f| match f {
                    Frame::Tokens { tokens } => Some(tokens),
                    _ => None,
                })
            }
        }
    }
}

/// What PostgreSQL cannot answer: it holds only the audit trail.
pub fn not_in_postgres(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "PostgreSQL holds only the audit trail; {what} live in Redis with the distributed \
         backend: give its URL with --redis-url (or GATEHOUSE_REDIS_URL) and the \
         deployment's --prefix"
    )
}

fn unexpected(f: &Frame) -> anyhow::Error {
    anyhow::anyhow!("the server sent an unexpected answer ({f:?})")
}

impl Remote {
    /// The server whose admin socket lies beside `db`.
    pub fn beside(db: &Path) -> Remote {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Remote {
            db: db.to_path_buf(),
            dir: dir.to_path_buf(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(gatehouse::admin_wire::SOCKET_FILE)
    }

    fn nobody_answers(&self, why: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "database {} is locked by another process, and no gatehouse server answers on {} \
             ({why})\n  hint: auditctl reads through a running server's admin socket; a process \
             that is not a server (another tool writing to the file) must finish first",
            self.db.display(),
            self.socket().display()
        )
    }

    /// What went wrong on the socket, in the operator's terms.
    pub fn explain(&self, e: WireError) -> anyhow::Error {
        match e {
            WireError::NoAnswer => anyhow::anyhow!(
                "a server holds {} but its admin socket {} did not answer within {}s\n  hint: the \
                 server may be stuck or overloaded; see its log, or stop it to read the file \
                 directly",
                self.db.display(),
                self.socket().display(),
                gatehouse::admin_wire::ANSWER_TIMEOUT.as_secs()
            ),
            WireError::Connect { reason, .. } => self.nobody_answers(&reason),
            WireError::Refused { status: 404, .. } => anyhow::anyhow!(
                "the server holding {} does not answer auditctl through its admin socket (a \
                 server of an older version?)\n  hint: stop it to read the file directly, or \
                 upgrade it",
                self.db.display()
            ),
            e => anyhow::Error::new(e),
        }
    }

    /// Opens a stream; `Ok(None)` when no server listens any more (or it
    /// closed the connection unanswered as it stopped).
    pub async fn open(&self, route: &str, query: &str) -> anyhow::Result<Option<FrameStream>> {
        FrameStream::open(&self.dir, &format!("{route}?{query}"))
            .await
            .map_err(|e| self.explain(e))
    }

    async fn open_now(&self, route: &str, query: &str) -> anyhow::Result<FrameStream> {
        match self.open(route, query).await? {
            Some(s) => Ok(s),
            None => Err(self.nobody_answers("the socket refused or closed the connection")),
        }
    }

    /// Runs `on` on every frame of a stream up to its end.
    fn each(
        &self,
        route: &str,
        query: String,
        mut on: impl FnMut(Frame) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        wait(async {
            let mut s = self.open_now(route, &query).await?;
            loop {
                match s.next().await.map_err(|e| self.explain(e))? {
                    Frame::End => return Ok(()),
                    f => on(f)?,
                }
            }
        })
    }

    /// The one answer of a stream, picked by `pick`.
    fn one<T>(
        &self,
        route: &str,
        query: String,
        pick: impl Fn(Frame) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut got = None;
        self.each(route, query, |f| {
            let dbg = format!("{f:?}");
            match pick(f) {
                Some(v) if got.is_none() => {
                    got = Some(v);
                    Ok(())
                }
                _ => Err(anyhow::anyhow!(
                    "the server sent an unexpected answer ({dbg:.200})"
                )),
            }
        })?;
        got.ok_or_else(|| anyhow::anyhow!("the server's answer was empty"))
    }

    fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<EventPage> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        filter_query(filter, &mut q);
        q.append_pair("limit", &limit.to_string());
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        let mut page = EventPage {
            events: Vec::new(),
            next_cursor: None,
        };
        let r = self.each("/stream/query", q.finish(), |f| match f {
            Frame::Events { events, .. } => {
                page.events.extend(events);
                Ok(())
            }
            Frame::Page { next_cursor } => {
                page.next_cursor = next_cursor;
                Ok(())
            }
            f => Err(unexpected(&f)),
        });
        match r {
            Ok(()) => Ok(page),
            Err(e) => match e.downcast::<WireError>() {
                Ok(WireError::Failed {
                    kind: ErrorKind::Cursor,
                    message,
                }) => Err(crate::query::explain_cursor(&message)),
                Ok(other) => Err(self.explain(other)),
                Err(e) => Err(e),
            },
        }
    }

    /// Streams the events above `after` up to `end` that match `filter`,
    /// oldest first, to `on` with the newest id examined.
    pub fn export(
        &self,
        filter: &EventFilter,
        after: EventId,
        end: EventId,
        mut on: impl FnMut(&[gatehouse::store::Event], Option<EventId>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        filter_query(filter, &mut q);
        q.append_pair("after", &after.0.to_string());
        q.append_pair("end", &end.0.to_string());
        self.each("/stream/export", q.finish(), |f| match f {
            Frame::Events { events, through } => on(&events, through),
            f => Err(unexpected(&f)),
        })
    }

    /// Takes a snapshot through the server into `dest`: written beside it,
    /// fsynced, checked here against the server's own check of the same
    /// snapshot, then renamed into place.
    pub fn backup(&self, dest: &Path) -> anyhow::Result<gatehouse::store::BackupReport> {
        if dest.is_dir() {
            anyhow::bail!(
                "cannot write the backup at {}: the destination is a directory; name the file to write",
                dest.display()
            );
        }
        let same =
            matches!((dest.canonicalize(), self.db.canonicalize()), (Ok(x), Ok(y)) if x == y);
        if same {
            anyhow::bail!(
                "cannot write the backup at {}: the destination is the live database itself",
                dest.display()
            );
        }
        let mut name = dest
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "gatehouse-backup".into());
        name.push(format!(".{}.redb.tmp", std::process::id()));
        let tmp = dest.with_file_name(name);
        let r = self.backup_via(dest, &tmp);
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    fn backup_via(
        &self,
        dest: &Path,
        tmp: &Path,
    ) -> anyhow::Result<gatehouse::store::BackupReport> {
        use base64::Engine;
        use std::io::Write;
        let _ = std::fs::remove_file(tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Owner-only from the start: the copy holds the whole audit trail.
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts
            .open(tmp)
            .with_context(|| format!("cannot write the backup at {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        let mut head: Option<(u64, u64, CheckReport)> = None;
        let mut written = 0u64;
        self.each("/stream/backup", String::new(), |f| match f {
            Frame::Snapshot { bytes, rows, check } if head.is_none() => {
                head = Some((bytes, rows, check));
                Ok(())
            }
            Frame::Chunk { data } if head.is_some() => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .context("the server sent a malformed snapshot chunk")?;
                written += raw.len() as u64;
                out.write_all(&raw)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                Ok(())
            }
            f => Err(unexpected(&f)),
        })?;
        let Some((bytes, rows, served)) = head else {
            anyhow::bail!("the server sent no snapshot");
        };
        if written != bytes {
            anyhow::bail!("the snapshot arrived incomplete ({written} of {bytes} bytes)");
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        // Checked here too: what arrived is what the server checked.
        let check = {
            let copy = Backend::open_read_only(&BackendConfig::redb(tmp))
                .map_err(|e| anyhow::anyhow!("the snapshot does not open: {e}"))?;
            let c = wait(copy.check())?;
            copy.close()?;
            c
        };
        if !check.is_ok() {
            anyhow::bail!(
                "the backup did not pass its check ({} problems, first: {}); nothing was written to the destination",
                check.problem_count,
                check.problems.first().map(String::as_str).unwrap_or("")
            );
        }
        if check.chain_head != served.chain_head || check.events != served.events {
            anyhow::bail!(
                "the snapshot that arrived differs from the one the server checked; nothing was written to the destination"
            );
        }
        std::fs::rename(tmp, dest)
            .with_context(|| format!("cannot move the backup to {}", dest.display()))?;
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(gatehouse::store::BackupReport {
            path: dest.to_path_buf(),
            bytes,
            rows,
            check,
        })
    }
}
