//! `auditctl backup DEST`: a consistent, checked snapshot, then a
//! `backup.created` audit event. With no server, the tool copies the file
//! itself ([`Backend::backup_to`]) and records the event; while a server
//! holds the file, the server takes the snapshot and checks it, the tool
//! receives it through the admin socket, checks it again, renames it into
//! place, and asks the server to record the event.

use std::path::Path;

use gatehouse::store::{
    AuditStore, Backend, BackendConfig, BackupReport, EventKind, NewEvent, OpenError,
};

use crate::cli::BackupArgs;
use crate::render::human_bytes;
use crate::source::Source;
use crate::{Status, close_writable, open_read_only, open_writable, wait};

fn print_report(r: &BackupReport) {
    let c = &r.check;
    println!("backup written: {}", r.path.display());
    println!("  size        {}", human_bytes(r.bytes));
    println!(
        "  events      {} (appended {}, pruned {})",
        c.events, c.events_appended, c.events_pruned
    );
    println!("  sessions    {}", c.sessions);
    println!("  bans        {}", c.bans);
    println!("  rows        {} (all tables)", r.rows);
    println!("  chain head  {}", c.chain_head);
    println!("  check       ok (indexes and hash chain verified on the new file)");
}

fn backup_event(r: &BackupReport) -> NewEvent {
    NewEvent::now(EventKind::BackupCreated)
        .detail("path", r.path.display().to_string())
        .detail("bytes", r.bytes.to_string())
        .detail("events", r.check.events.to_string())
        .detail("chain_head", r.check.chain_head.clone())
        .detail("by", "auditctl")
}

/// Records `backup.created` if the database can be opened for writing.
fn record(config: &BackendConfig, r: &BackupReport) {
    match open_writable(config) {
        Ok((backend, task)) => {
            match wait(backend.append(backup_event(r))) {
                Ok(_) => println!("recorded a backup.created event in the audit trail"),
                Err(e) => println!("note: could not record the backup.created event: {e}"),
            }
            let _ = close_writable(backend, task);
        }
        Err(OpenError::Locked(_)) => record_through_server(config.location(), r),
        Err(e) => println!("note: could not record the backup.created event: {e}"),
    }
}

/// While a server runs it is the only writer: ask it, over its admin socket
/// beside the database, to record the event.
fn record_through_server(db: &Path, r: &BackupReport) {
    let dir = db.parent().unwrap_or(Path::new("."));
    let q = serde_urlencoded::to_string([
        ("path", r.path.display().to_string()),
        ("bytes", r.bytes.to_string()),
        ("events", r.check.events.to_string()),
        ("chain_head", r.check.chain_head.clone()),
    ])
    .unwrap_or_default();
    match gatehouse::server::ops::admin::request(dir, "POST", &format!("/events/backup?{q}")) {
        Ok(Some(reply)) if reply.status == 200 => {
            println!("recorded a backup.created event through the running server")
        }
        Ok(Some(reply)) => println!(
            "note: the server did not record the backup.created event ({}: {}); the snapshot is complete",
            reply.status,
            reply.body.trim()
        ),
        Ok(None) | Err(_) => println!(
            "note: a server holds the database but its admin socket did not answer, so auditctl \
             did not record a backup.created event; the snapshot is complete"
        ),
    }
}

/// What a restore needs besides the snapshot: said after every backup,
/// since the snapshot alone does not bring the authenticator apps back.
fn print_reminder(db: &Path) {
    let dir = db.parent().unwrap_or(Path::new("."));
    println!(
        "to restore, keep three things together: this snapshot, {} (the key that \
         seals TOTP secrets, not in the snapshot: copy it once, it does not change) \
         and the config file ({} unless --config names another: the users and \
         their password hashes)",
        dir.join("secrets.key").display(),
        dir.join("gatehouse.toml").display()
    );
}

pub fn run(config: &BackendConfig, a: &BackupArgs) -> anyhow::Result<Status> {
    match open_read_only(config)? {
        Source::Local(backend) => {
            let report = backend.backup_to(&a.dest)?;
            // Release the read handle before trying to open the file for writing.
            drop::<Backend>(backend);
            print_report(&report);
            print_reminder(config.location());
            record(config, &report);
        }
        Source::Remote(server) => {
            let report = server.backup(&a.dest)?;
            print_report(&report);
            print_reminder(config.location());
            record_through_server(config.location(), &report);
        }
        Source::Postgres(_) => anyhow::bail!("auditctl backs up redb files only"),
    }
    Ok(Status::Ok)
}
