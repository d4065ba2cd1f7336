//! A full disk: the data dir is a small tmpfs that a filler file fills up
//! while the real server runs. Logins then fail promptly with a 5xx and a
//! short reason (no hang, no crash), nothing acknowledged before is lost,
//! and once the filler is deleted the server works again without a restart.
//!
//! Needs permission to mount a tmpfs (root); otherwise it prints a notice and
//! passes without testing anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::child::{
    Proc, WAIT, auditctl, crash_config, form_login, login_success_ids_through, plain_client,
    session_id, verify_status, wait_healthy,
};
use crate::harness::ALICE_PW;

/// A tmpfs mounted on a fresh temp dir; unmounted on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing why) when mounting is not allowed here.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir, _tmp: tmp }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({}); the full-disk test needs root",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); the full-disk test needs root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fills the file system holding `dir` with a file; returns its path.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    // Bounded: a tmpfs of a few MiB fills in a few hundred chunks.
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Then the last bytes, one small write at a time.
    for _ in 0..100_000 {
        if f.write_all(&chunk[..512]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_the_server_recovers() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let dir = fs.dir.clone();
    std::fs::write(dir.join("gatehouse.toml"), crash_config()).unwrap();
    let server = Proc::start(&dir).await.expect("start");
    wait_healthy(&server).await;
    let c = plain_client();

    // Some acknowledged logins while there is room.
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.push(
            form_login(&c, &server.url, "alice", ALICE_PW, true)
                .await
                .expect("login with room on the disk"),
        );
    }

    // Fill the disk, then keep signing in until writes fail. Every answer
    // comes back (the client's timeout would fail the test); a 303 is an
    // acknowledged login and must survive like the others.
    let filler = fill(&dir);
    let mut refused = None;
    for _ in 0..2_000 {
        let r = c
            .post(server.at("/login"))
            .header("accept", "application/json")
            .form(&[
                ("username", "alice"),
                ("password", ALICE_PW),
                ("remember_me", "on"),
            ])
            .send()
            .await
            .expect("a login on a full disk got no answer");
        match r.status() {
            StatusCode::OK => acked.push(crate::harness::token_of(&r).unwrap()),
            s => {
                let body: serde_json::Value = r.json().await.unwrap();
                refused = Some((s, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("logins kept succeeding on a full disk");
    assert!(status.is_server_error(), "{status} {body}");
    let reason = body["error"].as_str().unwrap_or_default();
    assert!(
        !reason.is_empty() && reason.len() < 200,
        "a short reason: {body}"
    );

    // Reads need no space: signed-in people stay signed in meanwhile.
    for t in acked.iter().take(5) {
        assert_eq!(
            verify_status(&c, &server.url, t).await,
            Some(StatusCode::OK),
            "a full disk refused an existing session"
        );
    }

    // A backup onto the full disk fails with a clear error and leaves
    // neither the destination nor its temporary file behind.
    let dest = dir.join("snap.redb");
    let (code, out, err) = auditctl(&dir, &["backup", dest.to_str().unwrap()]).await;
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("auditctl: error:"), "{err}");
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Space returns: the server works again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    let mut recovered = false;
    while start.elapsed() < WAIT {
        if let Some(t) = form_login(&c, &server.url, "alice", ALICE_PW, true).await {
            acked.push(t);
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "logins still fail after space returned; server log:\n{}",
        server.log_lines("ERROR").join("\n")
    );
    for t in &acked {
        assert_eq!(
            verify_status(&c, &server.url, t).await,
            Some(StatusCode::OK),
            "an acknowledged session was lost"
        );
    }
    // Read through the running server, which holds the file.
    let logged = login_success_ids_through(&dir, "alice").await;
    for t in &acked {
        let id = session_id(&c, &server.url, t)
            .await
            .expect("acknowledged session present");
        assert!(logged.contains(&id), "login.success lost");
    }
    let (code, out, err) = auditctl(&dir, &["verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");

    // A crash while the disk is full, and a restart before space returns:
    // the server either starts (and keeps sessions) or exits with a clear
    // error; it never hangs, and nothing acknowledged is lost either way.
    let filler = fill(&dir);
    server.kill().await;
    let full_start = match Proc::start(&dir).await {
        Ok(p) => {
            wait_healthy(&p).await;
            for t in acked.iter().take(5) {
                assert_eq!(
                    verify_status(&c, &p.url, t).await,
                    Some(StatusCode::OK),
                    "a restart on a full disk lost a session"
                );
            }
            p.kill().await;
            "started".to_string()
        }
        Err(log) => {
            let last = log.lines().last().unwrap_or_default().to_string();
            assert!(!last.is_empty(), "exited without a word");
            format!("refused to start: {last}")
        }
    };
    std::fs::remove_file(&filler).unwrap();
    let server = Proc::start(&dir).await.expect("start once space returned");
    wait_healthy(&server).await;
    for t in &acked {
        assert_eq!(
            verify_status(&c, &server.url, t).await,
            Some(StatusCode::OK),
            "an acknowledged session was lost"
        );
    }
    let (code, out, err) = auditctl(&dir, &["verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    server.kill().await;
    eprintln!("disk_full: after a kill on a full disk the server {full_start}");
    eprintln!(
        "disk_full: {} logins acknowledged, a full disk answered {status} ({reason:?}), \
         recovered without a restart, lost=0",
        acked.len()
    );
}
