//! PostgreSQL stopped for ten seconds under sign-in load on two nodes:
//! sign-ins and sign-outs go on (their events wait in the Redis outbox),
//! and once it is back every acknowledged event is chained exactly once
//! and `auditctl --db postgres://… verify` accepts the chain. The
//! PostgreSQL is the test's own, since the shared one serves other tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::Mutex;

use crate::distributed_faults::*;
use crate::harness::share_key;

/// A PostgreSQL of the test's own in a temp dir (the shared one serves
/// other tests, so it must not be stopped), run as `postgres` when the
/// tests run as root (PostgreSQL refuses root). Stopped at once on drop.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// `initdb` and start in `root`, or `None` without PostgreSQL's
    /// binaries (a failure under `GATEHOUSE_REQUIRE_SERVICES=1`).
    async fn init(root: &Path) -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            });
        let Some(bin) = bin else {
            assert!(
                std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "GATEHOUSE_REQUIRE_SERVICES=1, but PostgreSQL is not installed"
            );
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        };
        let pg_root = root.join("pg");
        std::fs::create_dir_all(&pg_root).unwrap();
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = std::process::Command::new("chown")
                .arg("postgres")
                .arg(&pg_root)
                .status()
                .unwrap();
            assert!(st.success(), "chown postgres {}", pg_root.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let pg = OwnPostgres {
            data: pg_root.join("data"),
            sockets: pg_root.clone(),
            bin,
            port,
        };
        let initdb = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-A", "trust", "-U", "postgres"])
            .output()
            .await
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        pg.start().await;
        Some(pg)
    }

    /// A command of PostgreSQL's, run as `postgres` when this is root.
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.sockets.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.sockets.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops it as an operator would (`-m fast`: sessions are ended).
    async fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let mut c = std::process::Command::new(if is_root() { "runuser" } else { "pg_ctl" });
        if is_root() {
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
        }
        let _ = c
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Acknowledged sign-ins and sign-outs so far.
async fn acked_count(acked: &Mutex<Acked>) -> usize {
    let a = acked.lock().await;
    a.live.len() + a.signed_out.len()
}

/// The outage is real time (a real server stopped); nothing is asserted
/// about durations, only that sign-ins were acknowledged while it lasted.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_sign_ins_go_on_and_every_event_arrives() {
    let Some((redis, prefix)) = gatehouse::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = OwnPostgres::init(tmp.path()).await else {
        return;
    };
    let config = node_config(&storage(&redis, &prefix, &pg.url()));
    let dirs = node_dirs(tmp.path(), &config);
    let a = crate::harness::TestServer::start_in(&dirs[0], &config).await;
    share_key(&dirs[0], &dirs[1]);
    let b = crate::harness::TestServer::start_in(&dirs[1], &config).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let (stop, drivers) = start_load(&[&a.url, &b.url], 2, &acked);
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.stop().await;
    let before = acked_count(&acked).await;
    tokio::time::sleep(OUTAGE).await;
    let during = acked_count(&acked).await - before;
    pg.start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_load(stop, drivers).await;
    assert!(
        during > 0,
        "no sign-in or sign-out was acknowledged while PostgreSQL was away"
    );

    let acked = acked.lock().await;
    let on_a = live_ids(&a.url, &acked, "node A").await;
    let on_b = live_ids(&b.url, &acked, "node B").await;
    assert_eq!(on_a, on_b);
    let events = check_chain(&pg.url(), &on_a, &acked.signed_out).await;
    eprintln!(
        "PostgreSQL away {OUTAGE:?}: {during} sign-ins and sign-outs acknowledged meanwhile, \
         {events} events checked once each in the chain afterwards, chain verified"
    );
    a.stop().await;
    b.stop().await;
}
