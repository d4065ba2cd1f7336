//! The group-commit writer: one OS thread owns every write transaction.
//!
//! Callers send [`Op`]s through a bounded queue. The thread takes what is
//! waiting (up to `max_batch`), applies it in one transaction, commits once
//! durably, and only then acknowledges each caller. A full queue makes callers
//! wait (backpressure) or, for fire-and-forget writes, fails fast with
//! [`WriteError::Busy`]; it never grows. Shutdown closes the queue, drains and
//! commits what was accepted, and ends the thread.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::commit_log::IDLE_CHECKPOINT;
use super::ops::{Op, OpOutput};
use crate::domain::*;
use crate::store::credentials::HeldCheck;
use crate::store::error::WriteError;
use crate::store::reports::SweepReport;

/// Queue and batch bounds.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Operations that may wait in the queue.
    pub queue_capacity: usize,
    /// Most operations committed together.
    pub max_batch: usize,
    /// Longest wait for more operations before a commit, used only while
    /// fewer are waiting than the previous commit carried and each 50 us poll
    /// brings more: callers that were just acknowledged are usually about to
    /// send their next write, and one commit (two fsyncs) for all of them
    /// beats two commits. A lone writer (previous batch of one) and a steady
    /// trickle of writes never wait more than one poll.
    pub linger: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 4096,
            max_batch: 1024,
            linger: Duration::from_millis(1),
        }
    }
}

/// A fixed-bucket histogram with atomic counters (Prometheus style: each
/// bucket counts observations at or below its bound; the last is +Inf).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets (the last bucket is +Inf).
    pub bounds: &'static [u64],
    pub counts: Vec<AtomicU64>,
    pub sum: AtomicU64,
    pub count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: u64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

/// Counters the writer keeps, read by metrics.
#[derive(Debug)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub ops: AtomicU64,
    /// Fire-and-forget writes refused because the queue was full.
    pub dropped: AtomicU64,
    /// Operations per commit.
    pub batch_size: Histogram,
    /// Microseconds from begin to durable commit.
    pub commit_micros: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commits: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            batch_size: Histogram::new(&[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]),
            commit_micros: Histogram::new(&[
                500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000,
            ]),
        }
    }
}

type Reply = oneshot::Sender<Result<OpOutput, WriteError>>;

enum Msg {
    Op(Op, Option<Reply>),
    Shutdown,
}

/// Submits writes. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
    capacity: usize,
    /// Sessions with a touch waiting in the queue. A session checked many
    /// times before its touch commits queues one touch, not one per check.
    /// Bounded by the queue: an entry exists only while its op is queued.
    pending_touches: PendingTouches,
}

type PendingTouches = Arc<Mutex<HashSet<TokenHash>>>;

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

/// The writer thread, owned by whoever started it; [`WriterTask::shutdown`]
/// drains and stops it.
pub struct WriterTask {
    tx: mpsc::Sender<Msg>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread on a writable store.
    pub fn spawn(store: Store, config: WriterConfig) -> (Writer, WriterTask) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let pending_touches = PendingTouches::default();
        let thread_pending = pending_touches.clone();
        let batching = Batching {
            max: config.max_batch.max(1),
            linger: config.linger,
        };
        let thread = std::thread::Builder::new()
            .name("gatehouse-writer".into())
            .spawn(move || run(store, rx, batching, &thread_stats, &thread_pending))
            .expect("spawning the writer thread");
        (
            Writer {
                tx: tx.clone(),
                stats,
                capacity: config.queue_capacity.max(1),
                pending_touches,
            },
            WriterTask { tx, thread },
        )
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Operations waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// Submits an operation and waits until it is durably committed. Waits for
    /// queue space when the queue is full.
    pub async fn submit(&self, op: Op) -> Result<OpOutput, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Op(op, Some(reply)))
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await.map_err(|_| WriteError::Closed)?
    }

    /// Queues an operation without waiting for its commit; fails at once with
    /// [`WriteError::Busy`] when the queue is full.
    pub fn submit_nowait(&self, op: Op) -> Result<(), WriteError> {
        self.tx.try_send(Msg::Op(op, None)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                WriteError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => WriteError::Closed,
        })
    }

    /// Appends an audit event and waits for it to be durable.
    pub async fn append(&self, ev: NewEvent) -> Result<EventId, WriteError> {
        match self.submit(Op::Append(ev)).await? {
            OpOutput::Appended(id) => Ok(id),
            other => unreachable_output("append", other),
        }
    }

    /// Creates a session (durably) and returns its token.
    pub async fn create_session(&self, new: NewSession) -> Result<CreatedSession, WriteError> {
        match self.submit(Op::CreateSession(new)).await? {
            OpOutput::Created(c) => Ok(c),
            other => unreachable_output("create_session", other),
        }
    }

    /// Creates a session and appends `event` for it in one durable commit
    /// (see [`Op::CreateSessionAudited`]). With a `check`, fails with
    /// [`WriteError::CredentialsChanged`] when the user's credentials changed
    /// since it was taken.
    pub async fn create_session_audited(
        &self,
        new: NewSession,
        event: NewEvent,
        check: Option<Box<HeldCheck>>,
    ) -> Result<CreatedSession, WriteError> {
        match self
            .submit(Op::CreateSessionAudited {
                new: Box::new(new),
                event,
                check,
            })
            .await?
        {
            OpOutput::Created(c) => Ok(c),
            OpOutput::CredentialsChanged => Err(WriteError::CredentialsChanged),
            other => unreachable_output("create_session_audited", other),
        }
    }

    /// Slides a session's idle deadline, fire and forget: a dropped touch only
    /// means the deadline moves at the next one.
    pub fn touch(&self, hash: TokenHash, now_ms: u64) -> Result<(), WriteError> {
        let mut pending = self
            .pending_touches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !pending.insert(hash) {
            // One is already queued; it moves the deadline to about now.
            return Ok(());
        }
        let sent = self.submit_nowait(Op::Touch { hash, now_ms });
        if sent.is_err() {
            pending.remove(&hash);
        }
        sent
    }

    /// Records a use of an access token, fire and forget, coalesced like
    /// [`Writer::touch`] (token hashes never equal session hashes: they are
    /// domain separated): at most one touch of a token waits in the queue.
    pub fn touch_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), WriteError> {
        let mut pending = self
            .pending_touches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !pending.insert(hash) {
            return Ok(());
        }
        let sent = self.submit_nowait(Op::TouchToken { hash, now_ms, ip });
        if sent.is_err() {
            pending.remove(&hash);
        }
        sent
    }

    /// Removes up to `limit` expired sessions and bans in one commit.
    pub async fn sweep(&self, now_ms: u64, limit: usize) -> Result<SweepReport, WriteError> {
        match self.submit(Op::Sweep { now_ms, limit }).await? {
            OpOutput::Swept(r) => Ok(r),
            other => unreachable_output("sweep", other),
        }
    }
}

pub(super) fn unreachable_output<T>(op: &str, out: OpOutput) -> Result<T, WriteError> {
    // Each op maps to one output variant; anything else is a bug in `ops`.
    tracing::error!(op, ?out, "writer returned an output of another operation");
    Err(WriteError::Failed(Arc::new(
        crate::store::StoreError::Storage("internal error: mismatched writer output".into()),
    )))
}

impl WriterTask {
    /// Stops accepting writes, commits everything already queued, and waits
    /// for the thread to end.
    pub async fn shutdown(self) -> Result<(), String> {
        // If the thread already ended, the send fails and join reports why.
        let _ = self.tx.send(Msg::Shutdown).await;
        drop(self.tx);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| format!("joining the writer: {e}"))?
            .map_err(|_| "the writer thread panicked".to_string())
    }

    /// Blocking variant of [`WriterTask::shutdown`] for non-async callers.
    pub fn shutdown_blocking(self) -> Result<(), String> {
        let _ = self.tx.blocking_send(Msg::Shutdown);
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| "the writer thread panicked".to_string())
    }
}

/// How often a writer whose file could not be reopened tries again while no
/// write arrives (reads fail until it succeeds).
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// Waits for the next message. While the store needs reopening, polls instead
/// of blocking and retries the reopen every [`REOPEN_RETRY`], so that reads
/// work again once the file can be opened even if no write comes.
fn next_msg(
    store: &Store,
    rx: &mut mpsc::Receiver<Msg>,
    needs_reopen: &mut bool,
    idle: &tokio::runtime::Runtime,
) -> Option<Msg> {
    // Bounded only by the queue's life: each turn sleeps, so this never spins;
    // a write arriving meanwhile waits at most one short turn.
    let mut last_try = Instant::now();
    while *needs_reopen {
        match rx.try_recv() {
            Ok(m) => return Some(m),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(20));
                if last_try.elapsed() >= REOPEN_RETRY {
                    last_try = Instant::now();
                    try_reopen(store, needs_reopen);
                }
            }
        }
    }
    if store.log_is_dirty() {
        // Idle with appends only in the commit log: checkpoint them into
        // the database while nothing waits.
        match idle.block_on(async { tokio::time::timeout(IDLE_CHECKPOINT, rx.recv()).await }) {
            Ok(m) => return m,
            Err(_) => checkpoint(store, true),
        }
    }
    rx.blocking_recv()
}

/// Makes the commit log's appends durable in the database (see
/// `Store::checkpoint`). A failure is logged: the log still holds them,
/// and the next checkpoint or open tries again.
fn checkpoint(store: &Store, force: bool) {
    if let Err(e) = store.checkpoint(force) {
        tracing::error!(error = %e, "checkpointing the commit log failed");
    }
}

fn try_reopen(store: &Store, needs_reopen: &mut bool) {
    match store.reopen() {
        Ok(()) => *needs_reopen = false,
        Err(e) => tracing::error!(error = %e, "reopening the database failed; retrying"),
    }
}

/// How the writer forms batches (from `WriterConfig`).
#[derive(Debug, Clone, Copy)]
struct Batching {
    max: usize,
    linger: Duration,
}

/// Polling interval while lingering: short against a commit's fsyncs.
const LINGER_POLL: Duration = Duration::from_micros(50);

fn run(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    batching: Batching,
    stats: &WriterStats,
    pending_touches: &Mutex<HashSet<TokenHash>>,
) {
    let max_batch = batching.max;
    let mut ops: Vec<Op> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(max_batch);
    let mut last_batch = 0usize;
    let mut stopping = false;
    // Set after an I/O error: redb fails every later operation on that handle
    // (reads too) until the file is closed and opened again.
    let mut needs_reopen = false;
    // Only for waiting on the queue with a timeout (the idle checkpoint).
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the writer thread's timer");
    loop {
        if !stopping {
            match next_msg(&store, &mut rx, &mut needs_reopen, &idle) {
                Some(Msg::Op(op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Some(Msg::Shutdown) | None => {
                    stopping = true;
                    rx.close();
                }
            }
        }
        let target = last_batch.min(max_batch);
        let linger_until = (target > 1 && !stopping).then(|| Instant::now() + batching.linger);
        // Lingering goes on only while each poll brings more operations:
        // callers that resubmit at once keep arriving, a steady trickle does not.
        let mut before_poll: Option<usize> = None;
        loop {
            match rx.try_recv() {
                Ok(Msg::Op(op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                    if ops.len() >= max_batch {
                        break;
                    }
                }
                Ok(Msg::Shutdown) => {
                    stopping = true;
                    rx.close();
                }
                Err(mpsc::error::TryRecvError::Empty)
                    if !stopping
                        && ops.len() < target
                        && before_poll.is_none_or(|n| ops.len() > n)
                        && linger_until.is_some_and(|t| Instant::now() < t) =>
                {
                    before_poll = Some(ops.len());
                    std::thread::sleep(LINGER_POLL);
                }
                Err(_) => break,
            }
        }
        if ops.is_empty() {
            if stopping {
                break;
            }
            continue;
        }
        if needs_reopen {
            // Still closed: one more try before this batch (it fails fast if
            // the file cannot be opened yet).
            try_reopen(&store, &mut needs_reopen);
        }
        {
            // Dequeued touches are no longer pending: a check from now on may
            // queue a new one.
            let mut pending = pending_touches.lock().unwrap_or_else(|p| p.into_inner());
            for op in &ops {
                if let Op::Touch { hash, .. } | Op::TouchToken { hash, .. } = op {
                    pending.remove(hash);
                }
            }
        }
        let n = ops.len();
        last_batch = n;
        let start = Instant::now();
        let results = store.apply_batch(std::mem::take(&mut ops));
        if results.iter().any(|r| r.as_ref().is_err_and(|e| e.is_io())) {
            // Reopen now rather than at the next write: until then every
            // session check would fail too.
            needs_reopen = true;
            try_reopen(&store, &mut needs_reopen);
        }
        let micros = start.elapsed().as_micros() as u64;
        stats.commit_micros.observe(micros);
        stats.batch_size.observe(n as u64);
        stats.ops.fetch_add(n as u64, Relaxed);
        if results.iter().all(|r| r.is_ok()) {
            stats.commits.fetch_add(1, Relaxed);
        } else {
            stats.failed_commits.fetch_add(1, Relaxed);
        }
        for (res, reply) in results.into_iter().zip(replies.drain(..)) {
            if let Err(e) = &res {
                tracing::error!(error = %e, "audit/session write failed");
            }
            if let Some(reply) = reply {
                let _ = reply.send(res.map_err(WriteError::Failed));
            }
        }
        // After the acknowledgements: a due checkpoint delays the next
        // batch, never this one.
        checkpoint(&store, stopping);
    }
    checkpoint(&store, true);
    tracing::debug!("writer stopped");
}
