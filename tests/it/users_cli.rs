//! `gatehouse users add|remove|passwd` against a real config file and a
//! running server: the file keeps its comments, the server reloads through
//! its admin socket at once (sessions end on remove and passwd), names
//! already taken or missing are errors (exit 1), and without a server the
//! change waits for the next start. A reload names each changed setting
//! that waits for a restart.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::child::Proc;
use crate::harness::*;

/// Runs `gatehouse users ARGS` with `env` set and `stdin` piped in;
/// returns (exit code, stdout, stderr).
async fn users(args: &[&str], env: &[(&str, &Path)], stdin: &str) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("users")
        .args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove("GATEHOUSE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command that reads no password may exit before taking its input.
    match input.write_all(stdin.as_bytes()).await {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("gatehouse users did not finish")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NOTE: &str = "# Operator's note: keep this comment.\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_add_passwd_remove_edit_the_file_and_reload_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), &format!("{NOTE}{}", config_text("", ""))).await;
    let dir = s.dir.to_str().unwrap().to_string();
    let file = s.dir.join("gatehouse.toml");

    // Added, found through --data-dir, password from one line of stdin
    // (what follows it is not part of it).
    let (code, out, err) = users(
        &[
            "--data-dir",
            &dir,
            "add",
            "carol",
            "--groups",
            "dev,ops",
            "--email",
            "carol@example.com",
        ],
        &[],
        "carol-first-password\nnot the password\n",
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("added user carol to"), "{out}");
    assert!(out.contains("reloaded") && out.contains("3 users"), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(NOTE), "{text}");
    assert!(text.contains("groups = [\"dev\", \"ops\"]"), "{text}");
    // Signs in at once, with her groups.
    let carol = client();
    let r = login(&carol, &s, "carol", "carol-first-password", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = carol.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["remote-groups"], "dev,ops");

    // A name taken: exit 1, the file untouched.
    let (code, _, err) = users(
        &["--data-dir", &dir, "add", "carol"],
        &[],
        "x-long-password\n",
    )
    .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // A new password, found through the environment: her session ends,
    // the new password works, the old one not.
    let env = [
        ("GATEHOUSE_CONFIG", file.as_path()),
        ("GATEHOUSE_DATA_DIR", s.dir.as_path()),
    ];
    let (code, out, err) = users(&["passwd", "carol"], &env, "carol-second-password\n").await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("set a new password for carol"), "{out}");
    let r = carol.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login(&client(), &s, "carol", "carol-first-password", &[]).await;
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    let carol = client();
    let r = login(&carol, &s, "carol", "carol-second-password", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(NOTE) && text.contains("email = \"carol@example.com\""));

    // Removed: her session ends and she cannot sign in.
    let (code, out, err) = users(&["--data-dir", &dir, "remove", "carol"], &[], "").await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("removed user carol") && out.contains("2 users"),
        "{out}"
    );
    let r = carol.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login(&client(), &s, "carol", "carol-second-password", &[]).await;
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(NOTE) && !text.contains("carol"), "{text}");
    for cmd in ["remove", "passwd"] {
        let (code, _, err) =
            users(&["--data-dir", &dir, cmd, "carol"], &[], "pw-long-enough\n").await;
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(err.contains("no user named \"carol\""), "{cmd}: {err}");
    }
    // An edit the server would refuse is not written.
    let (code, _, err) = users(
        &["--data-dir", &dir, "add", "dave", "--groups", "no spaces"],
        &[],
        "dave-long-password\n",
    )
    .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("nothing was written") && err.contains("groups[0]"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // A file the running server does not read: said, exit 1.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, "# another file\n").unwrap();
    let (code, out, err) = users(
        &[
            "--config",
            other.to_str().unwrap(),
            "--data-dir",
            &dir,
            "add",
            "erin",
        ],
        &[],
        "erin-long-password\n",
    )
    .await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("the running server reads") && err.contains("run this again with --config"),
        "{err}"
    );

    // With the server stopped, the change waits for its next start.
    s.stop().await;
    let (code, out, err) = users(
        &["--data-dir", &dir, "add", "dave"],
        &[],
        "dave-long-password\n",
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("no server answers") && out.contains("when it starts"),
        "{out}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with(NOTE) && text.contains("name = \"alice\""),
        "{text}"
    );
    let s = TestServer::start_in(tmp.path(), &text).await;
    let r = login(&client(), &s, "dave", "dave-long-password", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

/// A reload, here through `users add` on the real binary, names in the
/// log each setting that changed in the file and waits for a restart, and
/// says so to the operator; the users and rules it replaced are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_each_setting_that_waits_for_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("gatehouse.toml");
    std::fs::write(&file, config_text("", "[session]\nidle_secs = 600\n")).unwrap();
    let server = Proc::start(tmp.path()).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text
        .replace("metrics = true", "metrics = false")
        .replace("idle_secs = 600", "idle_secs = 900");
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();

    let dir = tmp.path().to_str().unwrap();
    let (code, out, err) = users(
        &["--data-dir", dir, "add", "carol"],
        &[],
        "carol-long-password\n",
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3 users, 0 rules"), "{out}");
    assert!(
        out.contains("changed, applies at the next start: metrics\n")
            && out.contains("changed, applies at the next start: session.idle_secs\n"),
        "{out}"
    );
    // Only those two: the users, and the flags the server was started with,
    // are no change.
    assert_eq!(out.matches("applies at the next start").count(), 2, "{out}");

    // The log is read as the server writes it: wait for the lines (bounded).
    for _ in 0..200 {
        if !server.log_lines("config reloaded").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let logged = |key: &str, value: &str| {
        server
            .log_lines("\"setting\"")
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["fields"][key] == value)
    };
    assert!(
        logged("setting", "metrics"),
        "{:?}",
        server.log_lines("reload")
    );
    assert!(logged("setting", "session.idle_secs"));
    let reloaded: Vec<serde_json::Value> = server
        .log_lines("config reloaded")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0]["fields"]["users"], 3);
    assert_eq!(reloaded[0]["fields"]["rules"], 0);
    assert_eq!(reloaded[0]["fields"]["waiting_for_restart"], 2);
    server.kill().await;
}
