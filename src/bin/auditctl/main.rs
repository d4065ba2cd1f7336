//! `auditctl`: the operator's tool for the gatehouse audit trail. It opens the
//! database read-only beside a running server (never blocking it) to query,
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
mod tail;
mod timespec;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use gatehouse::store::{OpenError, Store, StoreOptions};

use cli::{Cli, Command};

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
            "auditctl reads beside a running server; this file is held by a process \
             that excludes readers (another tool, or a server of an older version)",
        ),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
        None => anyhow::Error::new(e),
    }
}

/// Opens the database read-only.
pub fn open_read_only(path: &Path) -> anyhow::Result<Store> {
    Store::open_read_only(
        path,
        &StoreOptions {
            cache_bytes: CACHE_BYTES,
        },
    )
    .map_err(explain_open)
}

/// Opens the database for writing: only possible when no server runs.
pub fn open_writable(path: &Path) -> Result<Store, OpenError> {
    if !path.exists() {
        return Err(OpenError::Missing(path.to_path_buf()));
    }
    Store::open(
        path,
        &StoreOptions {
            cache_bytes: CACHE_BYTES,
        },
    )
}

fn run(cli: &Cli) -> anyhow::Result<Status> {
    let path = cli.db_path();
    match &cli.command {
        Command::Query(a) => query::run(&open_read_only(&path)?, a),
        Command::Tail(a) => tail::run(&open_read_only(&path)?, a),
        Command::Sessions(a) => inspect::sessions(&open_read_only(&path)?, a),
        Command::Export(a) => export::run(&open_read_only(&path)?, a),
        Command::Backup(a) => backup::run(&path, a),
        Command::Verify => inspect::verify(&open_read_only(&path)?),
        Command::Stats(a) => inspect::stats(&open_read_only(&path)?, a),
        Command::Prune(a) => prune::run(&path, &cli.data_dir(), a),
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
