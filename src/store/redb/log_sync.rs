//! The commit log's sync thread: it runs `fdatasync` on the log file while
//! the writer thread applies the same batch to the database, so that the
//! wait for the disk and the database's CPU work overlap instead of adding
//! up (`commit_log.rs` says when a record counts as written).
//!
//! At most one sync is in flight: [`Syncer::start`] refuses a second one
//! until [`Syncer::wait`] took the first one's result, so both channels
//! hold at most one message.

use std::fs::File;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// A thread that syncs one file on request.
pub(super) struct Syncer {
    /// `None` once dropping: closing it ends the thread.
    requests: Option<SyncSender<()>>,
    results: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl Syncer {
    /// Starts the thread, which syncs `file` (a handle of the log's file)
    /// each time it is asked to.
    pub fn spawn(file: File) -> io::Result<Syncer> {
        let (requests, rx) = sync_channel::<()>(1);
        let (tx, results) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("gatehouse-log-sync".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if tx.send(file.sync_data()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Syncer {
            requests: Some(requests),
            results,
            thread: Some(thread),
            in_flight: false,
        })
    }

    /// Asks for a sync of everything written to the file so far; its result
    /// comes from [`Syncer::wait`].
    pub fn start(&mut self) -> io::Result<()> {
        if self.in_flight {
            return Err(io::Error::other("a commit log sync is already running"));
        }
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(())
            .map_err(|_| gone())?;
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the sync [`Syncer::start`] asked for and returns its
    /// result; `Ok` at once when none runs.
    pub fn wait(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        self.results.recv().map_err(|_| gone())?
    }
}

fn gone() -> io::Error {
    io::Error::other("the commit log's sync thread has ended")
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // A sync in flight finishes first: its result is simply not read.
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn syncs_on_request_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let mut s = Syncer::spawn(f.try_clone().unwrap()).unwrap();
        assert!(s.wait().is_ok(), "nothing in flight");
        f.write_all(b"x").unwrap();
        s.start().unwrap();
        assert!(
            s.start().is_err(),
            "a second sync before the first's result"
        );
        s.wait().unwrap();
        s.start().unwrap();
        drop(s);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
