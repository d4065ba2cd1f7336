//! A `gatehouse serve` child process for the tests that kill, flood or
//! starve the real server (`crash_server`, `disk_full`, `backup_load`,
//! `floods`), with the clients and checks they share: readiness, form
//! logins, session checks, the audit trail read back, and `auditctl`.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{config_text, token_of};

/// Upper bound of every wait on a child server.
pub const WAIT: Duration = Duration::from_secs(60);

/// The number of kill/restart cycles: `GATEHOUSE_CRASH_CYCLES`, or `default`.
pub fn cycles(default: usize) -> usize {
    std::env::var("GATEHOUSE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: enough randomness to pick kill moments.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The config of the crash test: alice's remember-me sessions are the ones
/// checked; bob's ordinary sessions end after a second of idleness so that the
/// sweeper (every second) always has work when a kill lands.
pub fn crash_config() -> String {
    config_text(
        "",
        "[session]\nidle_secs = 1\nsweep_interval_secs = 1\nmax_per_user = 1000000\n\n\
         [regulation]\nmax_failures = 1000000\n",
    )
}

/// A `gatehouse serve` child process.
pub struct Proc {
    pub child: Child,
    pub url: String,
    /// Log lines the server wrote, kept for failure messages.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts the binary on `dir` (config already written) on a free loopback
    /// port and waits until it listens. `None` when it exits first (the
    /// caller decides whether that is an error); the log is returned then.
    pub async fn start(dir: &Path) -> Result<Proc, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let found = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line.clone());
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"] == "gatehouse listening" {
                    return v["fields"]["addr"].as_str().map(str::to_string);
                }
            }
            None
        })
        .await
        .map_err(|_| "the server did not listen in time".to_string())?;
        let Some(addr) = found else {
            let _ = child.wait().await;
            return Err(log.lock().unwrap().join("\n"));
        };
        // Keep draining the log so the child never blocks on a full pipe.
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = keep.lock().unwrap();
                if l.len() < 10_000 {
                    l.push(line);
                }
            }
        });
        Ok(Proc {
            child,
            url: format!("http://{addr}"),
            log,
        })
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// SIGKILL, then reap.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("killed server not reaped")
            .unwrap();
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// Polls `/healthz` until it answers 200, bounded by [`WAIT`]; returns how long it took.
pub async fn wait_healthy(p: &Proc) -> Duration {
    let c = plain_client();
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Ok(r) = c.get(p.at("/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/healthz did not answer within {WAIT:?}");
}

/// No cookie jar, no redirects, short timeouts: requests in flight when the
/// server dies fail instead of hanging.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A form login; `Some(token)` only for an acknowledged one (`303` + cookie).
pub async fn form_login(
    c: &reqwest::Client,
    url: &str,
    user: &str,
    pw: &str,
    remember: bool,
) -> Option<String> {
    let mut form = vec![("username", user), ("password", pw)];
    if remember {
        form.push(("remember_me", "on"));
    }
    let r = c
        .post(format!("{url}/login"))
        .form(&form)
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::SEE_OTHER {
        return None;
    }
    token_of(&r)
}

pub async fn verify_status(c: &reqwest::Client, url: &str, token: &str) -> Option<StatusCode> {
    c.get(format!("{url}/auth/verify"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

/// The public id of the session `token` holds, as the running server lists
/// it (`GET /api/v1/sessions`, the entry marked current); `None` when the
/// token holds none.
pub async fn session_id(c: &reqwest::Client, url: &str, token: &str) -> Option<String> {
    let r = c
        .get(format!("{url}/api/v1/sessions"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str().map(String::from))
}

/// Public ids of every `login.success` event of `user`, read with `auditctl
/// query` (through the running server's admin socket while it runs).
pub async fn login_success_ids_through(dir: &Path, user: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut args = vec![
            "query",
            "--user",
            user,
            "--kind",
            "login.success",
            "--limit",
            "1000",
            "--json",
        ];
        if let Some(c) = cursor.as_deref() {
            args.extend(["--cursor", c]);
        }
        let (code, out, err) = auditctl(dir, &args).await;
        assert!(code == Some(0) || code == Some(1), "auditctl query: {err}");
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(s) = v["session"].as_str() {
                ids.insert(s.to_string());
            }
        }
        cursor = err
            .lines()
            .find(|l| l.starts_with("more results:"))
            .and_then(|l| l.rsplit(' ').next())
            .map(|c| c.trim_matches('\'').to_string());
        if cursor.is_none() {
            break;
        }
    }
    ids
}

/// Public ids of `user`'s live sessions, read with `auditctl sessions`.
pub async fn session_ids_through(dir: &Path, user: &str) -> HashSet<String> {
    let (code, out, err) = auditctl(
        dir,
        &["sessions", "--user", user, "--limit", "10000000", "--json"],
    )
    .await;
    assert!(
        code == Some(0) || code == Some(1),
        "auditctl sessions: {err}"
    );
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Runs `auditctl` with `args` on `dir`; returns (exit code, stdout, stderr).
pub async fn auditctl(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_auditctl"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("auditctl did not finish")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
