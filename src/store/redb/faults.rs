//! Storage faults injected in-process: a redb storage backend around the
//! plain file backend that fails writes, syncs and resizes once a countdown
//! runs out, or on demand, until it is healed. Full disks, failing devices
//! and the reopen that follows them are tested with it, without root,
//! tmpfs or a real device. Tests and the `test-util` feature only.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, DatabaseError, StorageBackend};

/// The switch shared by a test and every backend opened with it (the first
/// open and each reopen).
#[derive(Debug)]
pub struct Faults {
    /// Mutating calls (write, sync, resize) that still succeed; negative:
    /// no fault is armed.
    left: AtomicI64,
    /// Calls failed so far.
    injected: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            left: AtomicI64::new(-1),
            injected: AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// A switch with no fault armed.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// Lets `n` more mutating calls succeed, then fails every one after.
    pub fn fail_after(&self, n: u64) {
        self.left
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// Fails every mutating call from now on.
    pub fn fail_now(&self) {
        self.fail_after(0);
    }

    /// Stops failing (the disk has room again).
    pub fn heal(&self) {
        self.left.store(-1, Ordering::SeqCst);
    }

    /// How many calls have been failed.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Counts one mutating call: `Err` once the countdown has run out.
    fn tick(&self) -> io::Result<()> {
        let armed = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 0).then(|| n - 1)
            });
        match armed {
            // Not armed (negative) or still counting down.
            Ok(_) => Ok(()),
            Err(n) if n < 0 => Ok(()),
            Err(_) => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected fault: no space left on device",
                ))
            }
        }
    }
}

/// redb's file backend with [`Faults`] in front of every mutating call
/// (reached through `Store::open_with_faults`: no redb type leaves the backend).
/// Reads, lengths and locks pass through untouched.
#[derive(Debug)]
pub(super) struct CountdownBackend {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl CountdownBackend {
    /// Opens (creating if needed) the file at `path` for reading and writing.
    pub(super) fn open(path: &Path, faults: Arc<Faults>) -> Result<Self, DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(CountdownBackend {
            inner: FileBackend::new(file),
            faults,
        })
    }
}

impl StorageBackend for CountdownBackend {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.faults.tick()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.faults.tick()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.faults.tick()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_countdown_lets_exactly_n_calls_through() {
        let f = Faults::new();
        assert!(f.tick().is_ok() && f.tick().is_ok());
        f.fail_after(2);
        assert!(f.tick().is_ok() && f.tick().is_ok());
        let e = f.tick().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(f.tick().is_err());
        assert_eq!(f.injected(), 2);
        f.heal();
        assert!(f.tick().is_ok());
    }
}
