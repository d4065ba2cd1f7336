//! `auditctl`: the operator's tool for the gatehouse audit trail. It reads
//! the store ([`Backend`]) read-only when no process holds it, and through
//! the running server's admin socket when one does (`source.rs`), to query,
//! follow, export, back up, verify and count; see `docs/auditctl.md`.
//!
//! Exit codes: 0 success, 1 nothing found or verification failed, 2 usage
//! error or failure.

mod backup;
mod cli;
mod export;
mod inspect;
mod prune;
mod query;
mod render;
mod source;
mod tail;
mod timespec;

use std::future::Future;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::Parser;
use gatehouse::store::{Backend, BackendConfig, BackendTask, OpenError};

use cli::{Cli, Command, Database};

/// How a command that ran to the end turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Did what was asked and found something.
    Ok,
    /// Ran fine but nothing matched (exit 1).
    NothingFound,
    /// Verification found a problem (exit 1).
    Failed,
}

/// Redb page cache for the tool: small, since it reads each page about once.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Adds the hint an operator needs to an open failure.
pub fn explain_open(e: OpenError) -> anyhow::Error {
    let hint = match &e {
        OpenError::Missing(_) => Some(
            "pass --data-dir DIR or --db FILE (or set GATEHOUSE_DATA_DIR); \
             the server creates the file when it first starts",
        ),
        OpenError::Locked(_) => Some(
            "auditctl reads through a running server's admin socket; this file is held \
             by a process that excludes readers and answers on no socket",
        ),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
        None => anyhow::Error::new(e),
    }
}

/// Runs one of the store's operations to completion. The store's interface
/// is async; the tool drives it on one thread, with the blocking pool for
/// the scans the store runs there, and signals for `tail --follow`.
pub fn wait<F: Future>(f: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("starting the tool's runtime")
        })
        .block_on(f)
}

/// Opens the store read-only, or reaches the server that holds it.
pub fn open_read_only(config: &BackendConfig) -> anyhow::Result<source::Source> {
    source::Source::open(config)
}

/// Opens the store for writing: only possible when no server runs. The task
/// must be shut down before the store is closed.
pub fn open_writable(config: &BackendConfig) -> Result<(Backend, BackendTask), OpenError> {
    let path = config.location();
    if !path.exists() {
        return Err(OpenError::Missing(path.display().to_string()));
    }
    Backend::open(config)
}

/// Makes every write durable and closes a store opened by [`open_writable`].
pub fn close_writable(backend: Backend, task: BackendTask) -> anyhow::Result<()> {
    wait(task.shutdown()).map_err(anyhow::Error::msg)?;
    backend.close()?;
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<Status> {
    let config = match cli.database()? {
        Database::Redb(config) => config.with_cache_bytes(CACHE_BYTES),
        Database::Postgres(url) => return run_postgres(cli, &url),
    };
    match &cli.command {
        Command::Query(a) => query::run(&open_read_only(&config)?, a),
        Command::Tail(a) => tail::run(Some(&config), open_read_only(&config)?, a),
        Command::Sessions(a) => inspect::sessions(&open_read_only(&config)?, a),
        Command::Tokens(a) => inspect::tokens(&open_read_only(&config)?, a),
        Command::Export(a) => export::run(&open_read_only(&config)?, a),
        Command::Backup(a) => backup::run(&config, a),
        Command::Verify => inspect::verify(&open_read_only(&config)?),
        Command::Stats(a) => inspect::stats(&open_read_only(&config)?, a),
        Command::Prune(a) => prune::run(&config, &cli.data_dir(), a),
    }
}

/// The live state of the deployment whose audit trail is at `url`: its
/// Redis (`--redis-url`, `--prefix`), reached as one more node would.
fn live_state(cli: &Cli, url: &str, what: &str) -> anyhow::Result<source::Source> {
    let Some(redis) = &cli.redis_url else {
        return Err(source::not_in_postgres(what));
    };
    let config = gatehouse::store::distributed::DistributedConfig::new(redis.as_str(), url)
        .with_prefix(cli.prefix.as_str());
    let d = wait(gatehouse::store::distributed::Distributed::connect(&config))?;
    Ok(source::Source::Local(
        gatehouse::store::Backend::Distributed(d),
    ))
}

/// The commands on the audit trail in PostgreSQL: the same output as on a
/// file for what it holds; sessions, tokens and backups are explained.
fn run_postgres(cli: &Cli, url: &str) -> anyhow::Result<Status> {
    match &cli.command {
        Command::Query(a) => query::run(&source::Source::postgres(url)?, a),
        Command::Tail(a) => tail::run(None, source::Source::postgres(url)?, a),
        Command::Export(a) => export::run(&source::Source::postgres(url)?, a),
        Command::Verify => inspect::verify(&source::Source::postgres(url)?),
        Command::Stats(a) => inspect::stats(&source::Source::postgres(url)?, a),
        Command::Prune(a) => prune::run_postgres(url, &cli.data_dir(), a),
        Command::Sessions(a) => inspect::sessions(&live_state(cli, url, "sessions")?, a),
        Command::Tokens(a) => inspect::tokens(&live_state(cli, url, "access tokens")?, a),
        Command::Backup(_) => anyhow::bail!(
            "the audit trail in PostgreSQL is backed up with PostgreSQL's own tools: \
             `pg_dump --format=custom --table=events --table=chain --table=gatehouse_schema \
             DBNAME > audit.dump` (see docs/auditctl.md); `auditctl verify --db URL` checks \
             a restored copy"
        ),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::NothingFound | Status::Failed) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditctl: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
