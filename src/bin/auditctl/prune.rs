//! `auditctl prune --older-than SPAN`: retention by hand, for when no server
//! runs (a running server prunes by itself when `audit_retention_days` is
//! set). Archives first unless `--no-archive`.

use std::path::{Path, PathBuf};

use gatehouse::retention::{RetentionReport, cutoff, run_retention};
use gatehouse::store::postgres::PgAudit;
use gatehouse::store::{BackendConfig, OpenError, now_us};
use jiff::tz::TimeZone;

use crate::cli::PruneArgs;
use crate::render::local_time;
use crate::{Status, close_writable, explain_open, open_writable, wait};

pub fn run(config: &BackendConfig, data_dir: &Path, a: &PruneArgs) -> anyhow::Result<Status> {
    let (backend, task) = match open_writable(config) {
        Ok(s) => s,
        Err(OpenError::Locked(p)) => anyhow::bail!(
            "database {} is in use (is the server running?); a running server prunes by \
             itself when audit_retention_days is set, or stop it to prune by hand",
            p
        ),
        Err(e) => return Err(explain_open(e)),
    };
    let archive = archive_dir(data_dir, a);
    let now = now_us();
    let report = wait(run_retention(
        &backend,
        archive.as_deref(),
        a.older_than,
        now,
    ));
    close_writable(backend, task)?;
    print(&report?, now, a);
    Ok(Status::Ok)
}

/// Retention on the audit trail in PostgreSQL: the same steps, each under
/// the chain's row lock, so it may run beside the nodes (their chainer
/// waits for a step, never the other way round).
pub fn run_postgres(url: &str, data_dir: &Path, a: &PruneArgs) -> anyhow::Result<Status> {
    let pg = wait(PgAudit::connect(url))?;
    let archive = archive_dir(data_dir, a);
    let now = now_us();
    let report = wait(run_retention(&pg, archive.as_deref(), a.older_than, now))?;
    print(&report, now, a);
    Ok(Status::Ok)
}

/// Where archives go: `--archive-dir`, else `DATA_DIR/archive`; none with
/// `--no-archive`.
fn archive_dir(data_dir: &Path, a: &PruneArgs) -> Option<PathBuf> {
    (!a.no_archive).then(|| {
        a.archive_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("archive"))
    })
}

fn print(report: &RetentionReport, now: u64, a: &PruneArgs) {
    let before = local_time(&TimeZone::system(), cutoff(now, a.older_than).micros());
    println!("pruned {} events older than {before}", report.pruned);
    if report.archived > 0 {
        println!("archived {} events to:", report.archived);
        for f in &report.archive_files {
            println!("  {}", f.display());
        }
    }
}
