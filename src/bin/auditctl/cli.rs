//! The command line of `auditctl`: every command, option and its help text.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gatehouse::store::{BackendConfig, EventFilter, EventKind, Outcome};

use crate::timespec::{parse_span, parse_time_now};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  nothing found (query, tail and sessions matched nothing) or verification failed
  2  usage error or failure (bad option, bad time or cursor, no database, locked file, I/O)

The database is opened read-only: auditctl never blocks or slows a running server.";

/// Query, follow, export, back up and verify the gatehouse audit trail.
#[derive(Parser, Debug)]
#[command(name = "auditctl", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    /// Directory holding gatehouse.redb.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database itself (instead of --data-dir): a file path, or
    /// `redb:PATH`; or the audit trail in PostgreSQL,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, for query, tail,
    /// export, verify, stats and prune.
    #[arg(long, global = true, value_name = "FILE|URL")]
    pub db: Option<PathBuf>,
    /// With `--db postgres://…`: the Redis of the same deployment, where
    /// `sessions` and `tokens` read the live state.
    #[arg(
        long,
        env = "GATEHOUSE_REDIS_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// With `--redis-url`: the deployment's key prefix (`[storage] prefix`).
    #[arg(long, global = true, default_value = gatehouse::store::distributed::DEFAULT_PREFIX)]
    pub prefix: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the audit trail is.
pub enum Database {
    /// A redb file.
    Redb(BackendConfig),
    /// The audit trail of the distributed backend in PostgreSQL (its URL).
    Postgres(String),
}

impl Cli {
    /// The database `--db` names when it is a PostgreSQL URL.
    fn postgres_url(&self) -> Option<String> {
        let db = self.db.as_ref()?.to_string_lossy().into_owned();
        (db.starts_with("postgres://") || db.starts_with("postgresql://")).then_some(db)
    }

    /// The audit trail to read: PostgreSQL when `--db` is its URL, else the
    /// redb file of [`Cli::backend_config`].
    pub fn database(&self) -> anyhow::Result<Database> {
        match self.postgres_url() {
            Some(url) => Ok(Database::Postgres(url)),
            None => self.backend_config().map(Database::Redb),
        }
    }

    /// The data directory: the directory of `--db` when given (a file),
    /// else `--data-dir`, else `GATEHOUSE_DATA_DIR` (when not empty), else
    /// `./data`.
    pub fn data_dir(&self) -> PathBuf {
        let dir = self.data_dir.as_ref().filter(|d| !d.as_os_str().is_empty());
        let file = self.db.as_ref().filter(|_| self.postgres_url().is_none());
        match (file, dir) {
            (Some(db), _) => BackendConfig::parse(&db.to_string_lossy())
                .map(|c| c.location().to_path_buf())
                .unwrap_or_else(|_| db.clone())
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".")),
            (None, Some(d)) => d.clone(),
            (None, None) => PathBuf::from("./data"),
        }
    }

    /// The store to open: the `--db` spec, else the data directory's file.
    pub fn backend_config(&self) -> anyhow::Result<BackendConfig> {
        match &self.db {
            Some(db) => BackendConfig::parse(&db.to_string_lossy())
                .map_err(|e| anyhow::anyhow!("--db: {e}")),
            None => Ok(BackendConfig::in_data_dir(&self.data_dir())),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Audit events matching filters, newest first, one page at a time.
    ///
    /// Reads the user or kind index and stops when the page is full, so any
    /// page costs the same. When more results exist, the command for the next
    /// page (with --cursor) is printed on stderr.
    Query(QueryArgs),
    /// The last events; with --follow, new events as they are committed.
    Tail(TailArgs),
    /// Active sessions: user, id, created, last seen, IP and user agent.
    Sessions(SessionsArgs),
    /// A user's live access tokens: id, name, prefix, created, expires,
    /// last used and scope (never the token itself: only its hash is stored).
    Tokens(TokensArgs),
    /// Events as JSON Lines to a file (zstd-compressed when it ends in .zst),
    /// oldest first.
    ///
    /// Streams page by page (memory stays flat), writes a temporary file and
    /// renames it at the end. `zstdcat FILE | jq` reads a compressed export.
    Export(ExportArgs),
    /// A consistent snapshot of the whole database as one file, taken while
    /// the server keeps running.
    ///
    /// Copies every table from one read snapshot into a new file beside DEST,
    /// checks it (indexes and hash chain), then renames it into place. To
    /// restore: stop the server, copy the snapshot to <data-dir>/gatehouse.redb,
    /// start the server.
    Backup(BackupArgs),
    /// Checks every index and the audit hash chain; exits 1 naming the first
    /// bad event when anything is wrong.
    Verify,
    /// Counts per kind and per user, time span, file size and schema version.
    Stats(StatsArgs),
    /// Archives and removes events older than a span (only when no server runs;
    /// a running server does this itself with `audit_retention_days`).
    Prune(PruneArgs),
}

/// Which events: every given filter must match.
#[derive(Args, Debug, Clone)]
pub struct Filters {
    /// Only events of this user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only events of this kind (repeat for several), e.g. login.failure.
    #[arg(long = "kind", value_name = "K", value_parser = parse_kind)]
    pub kinds: Vec<EventKind>,
    /// Events at or after T: RFC 3339, a local date (2026-11-26) or a span ago (15m, 2h, 7d).
    #[arg(long, value_name = "T", value_parser = parse_time_now)]
    pub since: Option<u64>,
    /// Events before T (same forms as --since).
    #[arg(long, value_name = "T", value_parser = parse_time_now)]
    pub until: Option<u64>,
    /// Only events from this client IP address.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,
    /// Only successes or only failures (login events).
    #[arg(long, value_name = "success|failure")]
    pub outcome: Option<Outcome>,
}

impl Filters {
    pub fn to_filter(&self) -> EventFilter {
        EventFilter {
            user: self.user.clone(),
            kinds: self.kinds.clone(),
            since_us: self.since,
            until_us: self.until,
            outcome: self.outcome,
            ip: self.ip,
        }
    }
}

fn parse_kind(s: &str) -> Result<EventKind, String> {
    s.parse().map_err(|_| {
        let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown event kind {s:?}; known kinds: {}", all.join(", "))
    })
}

fn parse_older_than(s: &str) -> Result<Duration, String> {
    let d = parse_span(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the span must be longer than zero".into());
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Events per page (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Continue after a previous page (printed on stderr by that page).
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// JSON Lines (one event per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// How many of the last events to show first (0-10000).
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=10000))]
    pub lines: u16,
    /// Keep printing new events as they are committed, until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SessionsArgs {
    /// Only this user's sessions.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Most sessions listed.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    /// Whose tokens.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// File to write (.zst: zstd-compressed). Replaced only when complete.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the snapshot (a new redb file).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// How many of the busiest users to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove events older than this span (e.g. 90d).
    #[arg(long, value_name = "SPAN", value_parser = parse_older_than)]
    pub older_than: Duration,
    /// Delete without writing the archive first.
    #[arg(long)]
    pub no_archive: bool,
    /// Archive directory (default: <data-dir>/archive).
    #[arg(long, value_name = "DIR")]
    pub archive_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn db_path(cli: &Cli) -> PathBuf {
        cli.backend_config().unwrap().location().to_path_buf()
    }

    #[test]
    fn db_overrides_data_dir() {
        let cli = Cli::try_parse_from([
            "auditctl",
            "--data-dir",
            "/x",
            "--db",
            "/y/g.redb",
            "verify",
        ])
        .unwrap();
        assert_eq!(db_path(&cli), PathBuf::from("/y/g.redb"));
        assert_eq!(cli.data_dir(), PathBuf::from("/y"));
        let cli = Cli::try_parse_from(["auditctl", "verify", "--data-dir", "/x"]).unwrap();
        assert_eq!(db_path(&cli), PathBuf::from("/x/gatehouse.redb"));
    }
}
