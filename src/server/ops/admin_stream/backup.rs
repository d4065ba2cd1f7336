//! `/stream/backup`: a checked snapshot of the running server's store, beside
//! the database, then its bytes.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::framed::stream;
use crate::admin_wire::{CHUNK_BYTES, ErrorKind, Frame};
use crate::server::ops::admin_stream::{Prog, Shared};

/// Removes the server's copy of a snapshot once it is sent, or abandoned.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the server writes a snapshot before sending it: beside the
/// database (owner-only, like it), under a name no other file takes.
fn snapshot_path(db: &Path) -> PathBuf {
    db.with_file_name(format!("{SNAPSHOT_PREFIX}{}.redb", std::process::id()))
}

const SNAPSHOT_PREFIX: &str = ".admin-snapshot.";

/// Removes the snapshots a server that died during a backup left beside
/// `db`. Called at start, once this server holds the database: no other
/// server runs on it, so every such file is abandoned (only a server makes
/// them, and only it reads them). Returns how many were removed.
pub fn remove_abandoned_snapshots(db: &Path) -> usize {
    let Some(dir) = db.parent() else { return 0 };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SNAPSHOT_PREFIX)
            && name.ends_with(".redb")
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(file = %e.path().display(), "removed a snapshot an interrupted backup left");
            removed += 1;
        }
    }
    removed
}

pub(super) async fn backup(State(s): Shared, p: Prog) -> Response {
    let Ok(one) = s.backup.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "a backup is already running; try again when it ends\n",
        )
            .into_response();
    };
    let store = s.store.clone();
    stream(&s.slots, p, move |sink| async move {
        let Some(db) = store.file() else {
            return sink
                .fail(
                    ErrorKind::Store,
                    "this store keeps no database file; back it up with its own tools",
                )
                .await;
        };
        let path = snapshot_path(db);
        // Left by an abandoned backup: none runs now (this one holds the
        // permit, which a backup's blocking work keeps until it ends).
        let _ = std::fs::remove_file(&path);
        let guard = RemoveOnDrop(path.clone());
        let work = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let _one = one;
                store.backup_to(&path)
            })
        };
        let report = match sink.alive_while(work).await? {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return sink.fail(ErrorKind::Store, e).await,
            Err(e) => return sink.fail(ErrorKind::Store, e).await,
        };
        sink.send(Frame::Snapshot {
            bytes: report.bytes,
            rows: report.rows,
            check: report.check,
        })
        .await?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => return sink.fail(ErrorKind::Store, e).await,
        };
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut sent = 0u64;
        loop {
            use tokio::io::AsyncReadExt;
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => return sink.fail(ErrorKind::Store, e).await,
            };
            if n == 0 {
                break;
            }
            sent += n as u64;
            let data = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
            sink.send(Frame::Chunk { data }).await?;
        }
        drop(guard);
        if sent != report.bytes {
            return sink
                .fail(
                    ErrorKind::Store,
                    format!(
                        "the snapshot changed size while sent ({sent} of {} bytes)",
                        report.bytes
                    ),
                )
                .await;
        }
        sink.send(Frame::End).await
    })
}
