//! The harness: a stand-in server (`Store::open` and `Writer::spawn` in this
//! process, and the admin socket's stream routes) writing the database while
//! the `auditctl` binary reads it through the socket, and helpers to run the
//! binary and read what it prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{
    EventKind, NewEvent, Op, Store, StoreOptions, Writer, WriterConfig, WriterTask,
};

/// Upper bound of every wait in these tests.
pub(super) const WAIT: Duration = Duration::from_secs(30);
pub(super) const DAY_US: u64 = 86_400_000_000;

/// The stand-in server: owns the file for writing, like `gatehouse serve`,
/// and answers `auditctl` on its admin socket.
pub(super) struct Live {
    socket: Option<crate::standin::AdminSocket>,
    dir: tempfile::TempDir,
    pub(super) rt: tokio::runtime::Runtime,
    store: Store,
    pub(super) writer: Writer,
    task: Option<WriterTask>,
    stop: Arc<AtomicBool>,
    pub(super) written: Arc<AtomicU64>,
    load: Option<tokio::task::JoinHandle<()>>,
}

impl Live {
    pub(super) fn start() -> Live {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    /// The stand-in on an existing data dir (a restart).
    pub(super) fn start_in(dir: tempfile::TempDir) -> Live {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store =
            Store::open(dir.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
        let (writer, task) = {
            let _g = rt.enter();
            Writer::spawn(store.clone(), WriterConfig::default())
        };
        let socket = crate::standin::AdminSocket::serve(rt.handle(), &store, &writer, dir.path());
        Live {
            socket: Some(socket),
            dir,
            rt,
            store,
            writer,
            task: Some(task),
            stop: Arc::new(AtomicBool::new(false)),
            written: Arc::new(AtomicU64::new(0)),
            load: None,
        }
    }

    pub(super) fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Appends events through the writer, in order, and waits until all are
    /// durable: the queue is FIFO, so when the last is acknowledged all are.
    pub(super) fn append(&self, mut events: Vec<NewEvent>) {
        let Some(last) = events.pop() else { return };
        let w = self.writer.clone();
        self.rt.block_on(async move {
            for ev in events {
                let mut op = Op::Append(ev);
                // Queued without waiting for each commit; a full queue waits.
                while let Err(e) = w.submit_nowait(op.clone()) {
                    assert!(matches!(e, gatehouse::store::WriteError::Busy), "{e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    op = op.clone();
                }
            }
            w.append(last).await.unwrap();
        });
    }

    /// Starts a background load: one event for `user` about every millisecond
    /// until the test ends (bounded to 200,000 events).
    pub(super) fn start_load(&mut self, user: &'static str) {
        let (w, stop, written) = (self.writer.clone(), self.stop.clone(), self.written.clone());
        self.load = Some(self.rt.spawn(async move {
            for i in 0..200_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ev = NewEvent::now(EventKind::LoginSuccess)
                    .user(user)
                    .detail("n", i.to_string());
                if w.append(ev).await.is_err() {
                    break;
                }
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    pub(super) fn wait_for_load(&self, at_least: u64) {
        let start = Instant::now();
        while self.written.load(Ordering::Relaxed) < at_least {
            assert!(start.elapsed() < WAIT, "background load did not progress");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `auditctl --data-dir <dir> ARGS` and waits for it.
    pub(super) fn auditctl(&self, args: &[&str]) -> Output {
        auditctl_in(self.data_dir(), args)
    }

    /// Stops the load and the writer and closes the file, like a server
    /// stopping; returns the data directory, which lives on.
    pub(super) fn shutdown(mut self) -> tempfile::TempDir {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(load) = self.load.take() {
            self.rt.block_on(load).unwrap();
        }
        let task = self.task.take().unwrap();
        if let Some(socket) = self.socket.take() {
            self.rt.block_on(socket.stop());
        }
        let Live {
            dir,
            rt,
            store,
            writer,
            ..
        } = self;
        rt.block_on(async move {
            drop(writer);
            task.shutdown().await.unwrap();
        });
        store.close().unwrap();
        dir
    }
}

pub(super) fn cmd(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditctl"));
    c.arg("--data-dir")
        .arg(data_dir)
        .env("TZ", "UTC")
        .env_remove("GATEHOUSE_DATA_DIR")
        .stdin(Stdio::null());
    c
}

pub(super) fn auditctl_in(data_dir: &Path, args: &[&str]) -> Output {
    cmd(data_dir).args(args).output().unwrap()
}

pub(super) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(super) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(super) fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The cursor in a "more results: ... --cursor C" line on stderr.
pub(super) fn next_cursor(o: &Output) -> Option<String> {
    let err = stderr(o);
    let line = err.lines().find(|l| l.starts_with("more results:"))?;
    Some(line.rsplit(' ').next()?.trim_matches('\'').to_string())
}

/// 2026-01-01T00:00:00Z in microseconds.
pub(super) const JAN_1: u64 = 1_767_225_600_000_000;

/// 250 events of alice (failures from 192.0.2.1, every third a success from
/// 192.0.2.2) and 100 of bob, one second apart from 2026-01-01.
pub(super) fn seed(live: &Live) {
    let mut evs = Vec::new();
    for i in 0..250u64 {
        let (kind, ip) = if i % 3 == 0 {
            (EventKind::LoginSuccess, "192.0.2.2")
        } else {
            (EventKind::LoginFailure, "192.0.2.1")
        };
        evs.push(
            NewEvent::at(kind, JAN_1 + i * 1_000_000)
                .user("alice")
                .ip(Some(ip.parse().unwrap()))
                .detail("i", i.to_string()),
        );
    }
    for i in 0..100u64 {
        evs.push(NewEvent::at(EventKind::LoginFailure, JAN_1 + i * 1_000_000 + 500).user("bob"));
    }
    // Ids follow append order: append in time order so each id keeps its time.
    evs.sort_by_key(|e| e.at_us);
    live.append(evs);
}

pub(super) fn read_zst_lines(path: &Path) -> Vec<serde_json::Value> {
    let dec = zstd::stream::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    BufReader::new(dec)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// A closed copy of a seeded database, for damaging.
pub(super) fn seeded_copy() -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let live = Live::start();
    seed(&live);
    let copy_dir = tempfile::tempdir().unwrap();
    let o = live.auditctl(&[
        "backup",
        copy_dir.path().join("gatehouse.redb").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    live.shutdown();
    let db = copy_dir.path().join("gatehouse.redb");
    let store = Store::open_read_only(&db, &StoreOptions::default()).unwrap();
    let mut ids: Vec<u64> = store
        .query_events(&Default::default(), 1_000, None)
        .unwrap()
        .events
        .iter()
        .map(|e| e.id.0)
        .collect();
    ids.reverse();
    drop(store);
    (copy_dir, db, ids)
}
