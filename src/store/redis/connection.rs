//! The connection to the deployment's Redis, for the state and the outbox
//! alike: one multiplexed connection, replaced when it fails.
//!
//! Invariants:
//! - A command never waits on a dead connection without end: the
//!   connection answers within its response timeout, and one that failed
//!   (dropped, refused, timed out, or a master demoted to a replica that
//!   answers `READONLY`) is replaced by the next command.
//! - At most one connection attempt is in flight; after one failed, the
//!   commands of the next [`RETRY_AFTER`] fail at once with its error
//!   rather than each trying again, so a node without Redis answers 503
//!   quickly and does not flood the network with connects.
//! - With [`Replicas`] asked for, a script (every change is one) is
//!   answered only once that many replicas have it: `WAITAOF` where the
//!   server has it (Redis 7.2+, Valkey; the replicas have then written it
//!   to their append-only file), `WAIT` before. Fewer in time is an error,
//!   so the node answers 503 rather than acknowledge a change a failover
//!   could lose.
//! - Every attempt asks the [`Target`] where the server is: behind
//!   Sentinels, a reconnect reaches the master of now. The address reached
//!   is published ([`Conn::server`]), so that the invalidation listener
//!   follows the same server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::target::Target;

/// Longest wait for Redis when a store opens.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest one connection attempt may take, the Sentinel lookup included.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a failed attempt's error answers before the next attempt.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How long Redis has to answer a command (the `redis` crate's default).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a change waits for its replicas before it fails.
pub const REPLICA_TIMEOUT_MS: u64 = 1_000;

/// Replicas that must have a change before it is acknowledged
/// (`[storage] redis_replicas`; 0: none, the master's own fsync only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replicas(pub u32);

/// A connection made: the connection, the server's address, and whether
/// it has `WAITAOF`.
#[derive(Clone)]
struct Made {
    conn: MultiplexedConnection,
    addr: String,
    waitaof: bool,
}

type Attempt = Shared<BoxFuture<'static, RedisResult<Made>>>;

/// A connection to the deployment's Redis that replaces itself when it
/// fails (see the module's invariants). Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Conn {
    shared: Arc<Inner>,
    /// `get_db` must answer without waiting; the database never changes.
    db: i64,
}

struct Inner {
    target: Target,
    replicas: Replicas,
    now: Mutex<Current>,
    /// The address of the server of the latest connection made.
    server: tokio::sync::watch::Sender<Option<String>>,
}

/// The connection in use, or the attempt to make one.
struct Current {
    /// Counts attempts, so that a failure seen on an older connection
    /// does not replace a newer one.
    generation: u64,
    attempt: Attempt,
    /// When the attempt failed, once it has.
    failed_at: Option<Instant>,
}

fn attempt(
    target: Target,
    replicas: Replicas,
    server: tokio::sync::watch::Sender<Option<String>>,
) -> Attempt {
    async move {
        let made = async {
            let client = target.client().await?;
            let addr = client.get_connection_info().addr().to_string();
            // A change's answer waits for its replicas: the response
            // timeout leaves room for that wait, so that too few replicas
            // read as such, not as a connection that failed.
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(
                RESPONSE_TIMEOUT + Duration::from_millis(REPLICA_TIMEOUT_MS) * replicas.0.min(1),
            ));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let waitaof = replicas.0 > 0 && has_waitaof(&mut conn).await?;
            Ok::<_, RedisError>(Made {
                conn,
                addr,
                waitaof,
            })
        };
        let made = tokio::time::timeout(ATTEMPT_TIMEOUT, made)
            .await
            .map_err(|_| {
                RedisError::from((
                    ErrorKind::Io,
                    "connecting",
                    "Redis did not answer in time".into(),
                ))
            })??;
        server.send_if_modified(|s| {
            let moved = s.as_deref() != Some(made.addr.as_str());
            if moved {
                *s = Some(made.addr.clone());
            }
            moved
        });
        Ok(made)
    }
    .boxed()
    .shared()
}

impl Conn {
    /// A connection to `target`, or the reason there is none after
    /// [`CONNECT_TIMEOUT`] of attempts: an open never waits without end,
    /// and says why it failed (a refused port, a certificate that does not
    /// verify, Sentinels that know no such master).
    pub async fn open(target: Target, replicas: Replicas) -> RedisResult<Conn> {
        let server = tokio::sync::watch::Sender::new(None);
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut pause = Duration::from_millis(100);
        let (first, db) = loop {
            let a = attempt(target.clone(), replicas, server.clone());
            match a.clone().await {
                Ok(Made { conn: c, .. }) => {
                    let db = match &target {
                        Target::Direct(client) => {
                            client.get_connection_info().redis_settings().db()
                        }
                        Target::Sentinel(_) => c.get_db(),
                    };
                    break (a, db);
                }
                Err(e) if Instant::now() + pause >= deadline => return Err(e),
                // Only a server not reachable yet may be worth waiting for; a
                // refused password or certificate is said at once.
                Err(e) if !e.is_io_error() => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        };
        Ok(Conn {
            shared: Arc::new(Inner {
                target,
                replicas,
                now: Mutex::new(Current {
                    generation: 0,
                    attempt: first,
                    failed_at: None,
                }),
                server,
            }),
            db,
        })
    }

    /// The address of the server reached, as it changes (for Sentinels:
    /// each new master).
    pub fn server(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.server.subscribe()
    }

    /// Where this connection goes.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.shared.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attempt to use: the current one, or a new one when the current
    /// one failed more than [`RETRY_AFTER`] ago.
    fn current(&self) -> (u64, Attempt) {
        let mut now = self.lock();
        if now.failed_at.is_some_and(|t| t.elapsed() >= RETRY_AFTER) {
            self.replace(&mut now);
        }
        (now.generation, now.attempt.clone())
    }

    fn replace(&self, now: &mut Current) {
        now.generation += 1;
        now.attempt = attempt(
            self.shared.target.clone(),
            self.shared.replicas,
            self.shared.server.clone(),
        );
        now.failed_at = None;
        // Driven at once, so that the next command finds it made or under
        // way, and its failure time noted. The task ends with the attempt,
        // within ATTEMPT_TIMEOUT.
        let (inner, generation, made) = (self.shared.clone(), now.generation, now.attempt.clone());
        tokio::spawn(async move {
            if made.await.is_err() {
                let mut now = inner.now.lock().unwrap_or_else(|p| p.into_inner());
                if now.generation == generation {
                    now.failed_at = Some(Instant::now());
                }
            }
        });
    }

    /// Replaces the connection of `generation` when `why` says it cannot
    /// serve again.
    fn failed(&self, generation: u64, why: &dyn std::fmt::Display) {
        let mut now = self.lock();
        if now.generation == generation && matches!(now.attempt.peek(), Some(Ok(_))) {
            tracing::warn!(error = %why, "the connection to Redis failed; connecting again");
            self.replace(&mut now);
        }
    }

    /// Looks at an answer: a connection that failed, or a server that is
    /// no longer the master, is replaced.
    fn check<T>(&self, generation: u64, r: &RedisResult<T>, values: &[Value]) {
        match r {
            Err(e) if e.is_io_error() || e.is_unrecoverable_error() || demoted(e.code()) => {
                self.failed(generation, e)
            }
            Err(_) => {}
            Ok(_) => {
                if let Some(Value::ServerError(e)) = values
                    .iter()
                    .find(|v| matches!(v, Value::ServerError(e) if demoted(Some(e.code()))))
                {
                    self.failed(generation, &e.code());
                }
            }
        }
    }

    async fn connection(&self) -> RedisResult<(u64, Made)> {
        let (generation, attempt) = self.current();
        attempt.await.map(|m| (generation, m))
    }

    /// Sends `cmd`; a script is followed, in the same round trip, by the
    /// wait for the replicas.
    async fn send(&self, made: &mut Made, cmd: &Cmd) -> RedisResult<Value> {
        let wanted = self.shared.replicas.0;
        if wanted == 0 || !is_script(cmd) {
            return made.conn.req_packed_command(cmd).await;
        }
        let mut p = redis::pipe();
        p.add_command(cmd.clone());
        p.add_command(wait_command(made.waitaof, wanted));
        let mut values = made.conn.req_packed_commands(&p, 0, 2).await?;
        let waited = values.pop();
        let answer = values.pop().unwrap_or(Value::Nil);
        confirmed(waited.as_ref(), wanted)?;
        Ok(answer)
    }

    /// Returns once [`Replicas`] have every change this connection made so
    /// far: for a change that is not a script (a ceremony taken with
    /// `GETDEL`, say). At once without replicas asked for.
    pub async fn confirm(&self) -> RedisResult<()> {
        let wanted = self.shared.replicas.0;
        if wanted == 0 {
            return Ok(());
        }
        let (generation, mut made) = self.connection().await?;
        let r = made
            .conn
            .req_packed_command(&wait_command(made.waitaof, wanted))
            .await;
        self.check(generation, &r, &[]);
        confirmed(Some(&r?), wanted)
    }
}

/// The wait for `wanted` replicas: `WAITAOF` where the server has it (the
/// master's own fsync is `appendfsync always`'s), else `WAIT`.
fn wait_command(waitaof: bool, wanted: u32) -> Cmd {
    if waitaof {
        let mut c = redis::cmd("WAITAOF");
        c.arg(0).arg(wanted).arg(REPLICA_TIMEOUT_MS);
        c
    } else {
        let mut c = redis::cmd("WAIT");
        c.arg(wanted).arg(REPLICA_TIMEOUT_MS);
        c
    }
}

/// `Ok` when the answer to the wait says `wanted` replicas confirmed. Too
/// few is an error of its own kind (`TRYAGAIN`): the connection is fine,
/// so it is not replaced.
fn confirmed(waited: Option<&Value>, wanted: u32) -> RedisResult<()> {
    let had = match waited {
        Some(Value::Int(n)) => *n,
        Some(Value::Array(v)) => match v.get(1) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    };
    if had >= i64::from(wanted) {
        return Ok(());
    }
    Err(RedisError::from((
        ErrorKind::Server(redis::ServerErrorKind::TryAgain),
        "replicas",
        format!(
            "{had} of the {wanted} replicas asked for ([storage] redis_replicas) \
             confirmed the change within {REPLICA_TIMEOUT_MS} ms"
        ),
    )))
}

/// Whether `cmd` runs a script: every change is one.
fn is_script(cmd: &Cmd) -> bool {
    cmd.args_iter().next().is_some_and(|a| match a {
        redis::Arg::Simple(name) => {
            name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL")
        }
        _ => false,
    })
}

/// Whether the server knows `WAITAOF` (Redis 7.2+, Valkey).
async fn has_waitaof(conn: &mut MultiplexedConnection) -> RedisResult<bool> {
    let info: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("WAITAOF")
        .query_async(conn)
        .await?;
    Ok(info.first().is_some_and(|v| !matches!(v, Value::Nil)))
}

/// Whether a server's error `code` says it is no longer the master it
/// was reached as (a failover demoted it, or it lost its master).
fn demoted(code: Option<&str>) -> bool {
    matches!(code, Some("READONLY" | "MASTERDOWN"))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let (generation, mut made) = self.connection().await?;
            let r = self.send(&mut made, cmd).await;
            self.check(
                generation,
                &r,
                r.as_ref().map(std::slice::from_ref).unwrap_or(&[]),
            );
            r
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let (generation, mut made) = self.connection().await?;
            // Pipelines carry only changes whose loss is accepted (touches,
            // uses, released leases): they wait for no replica.
            let r = made.conn.req_packed_commands(pipeline, offset, count).await;
            self.check(generation, &r, r.as_deref().unwrap_or(&[]));
            r
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scripts_wait_for_replicas() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc").arg(0);
        assert!(is_script(&eval));
        assert!(is_script(&redis::cmd("eval")));
        assert!(!is_script(&redis::cmd("HGETALL")));
        assert!(!is_script(&redis::cmd("SCRIPT")));
    }

    #[test]
    fn a_demoted_or_orphaned_master_is_left() {
        assert!(demoted(Some("READONLY")));
        assert!(demoted(Some("MASTERDOWN")));
        assert!(!demoted(Some("NOSCRIPT")));
        assert!(!demoted(None));
    }

    #[test]
    fn too_few_replicas_is_an_error_that_keeps_the_connection() {
        assert!(confirmed(Some(&Value::Int(2)), 2).is_ok());
        // WAITAOF answers [local, replicas].
        assert!(confirmed(Some(&Value::Array(vec![Value::Int(1), Value::Int(1)])), 1).is_ok());
        let e = confirmed(Some(&Value::Int(0)), 1).unwrap_err();
        assert!(e.to_string().contains("0 of the 1 replicas"), "{e}");
        assert!(!e.is_io_error() && !e.is_unrecoverable_error() && !demoted(e.code()));
        assert!(confirmed(None, 1).is_err());
    }
}
