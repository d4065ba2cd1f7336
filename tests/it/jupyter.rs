//! A real app behind the built-in proxy: Jupyter Server from PyPI
//! (`jupyter_server` 2, `ipykernel` 6, installed by `.ci/run` in a
//! virtualenv), as the path-prefix app `/jupyter/` (its `base_url`, the
//! prefix kept). A signed-in client lists the kernels, starts one and runs
//! `1+1` over the kernel's WebSocket, all on gatehouse's port; without a
//! session a browser is sent to sign in and a script gets 401, Jupyter's
//! own token notwithstanding. Jupyter's login cookie, set by its `?token=`
//! link, passes through beside gatehouse's session cookie.
//!
//! Jupyter keeps its token: the client sends it as `Authorization: token
//! ...`, which gatehouse passes on because it authenticated the request by
//! the session cookie. The app keeps the client's `Host`, so Jupyter's own
//! same-origin check of the WebSocket agrees with gatehouse's.
//!
//! The server is `$GATEHOUSE_JUPYTER`, else
//! `~/.cache/gatehouse-jupyter/bin/jupyter-server`. Skipped with a notice
//! when it is not there, unless `GATEHOUSE_REQUIRE_SERVICES=1` (then it
//! fails). Every wait is bounded; no assertion reads the clock.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{BOB_PW, TestServer, client, config_text, login, token_of};
use crate::proxy::free_port;

/// Jupyter's own token, which the client presents to it through gatehouse.
const TOKEN: &str = "jupyter-test-token";
/// The wait for Jupyter to answer, and for the kernel to run the code: a
/// hang guard (a kernel starts in a few seconds on an idle machine).
const SLOW: Duration = Duration::from_secs(90);
/// Every other wait of a step.
const STEP: Duration = Duration::from_secs(20);

/// The `jupyter-server` executable, if installed.
fn executable() -> Option<PathBuf> {
    let path = std::env::var_os("GATEHOUSE_JUPYTER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gatehouse-jupyter/bin/jupyter-server"))
        })?;
    path.is_file().then_some(path)
}

/// A running Jupyter Server on loopback, stopped on drop: SIGTERM, which
/// makes it shut its kernels down, then SIGKILL if it is still there.
struct Jupyter {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Jupyter {
    /// Starts `exe` with `base_url` `/jupyter/`, the fixed token, no
    /// browser, and its root, config, data and runtime dirs in a temp dir;
    /// waits (bounded) until its API answers.
    async fn start(exe: &PathBuf) -> Jupyter {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let log = dir.path().join("jupyter.log");
        let out = std::fs::File::create(&log).unwrap();
        let port = free_port();
        let child = Command::new(exe)
            .args([
                "--no-browser",
                // Harmless when not root; Jupyter refuses to run as root
                // without it (CI containers).
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                &format!("--ServerApp.port={port}"),
                "--ServerApp.port_retries=0",
                "--ServerApp.base_url=/jupyter/",
                &format!("--ServerApp.root_dir={}", root.display()),
                &format!("--IdentityProvider.token={TOKEN}"),
            ])
            .env("JUPYTER_CONFIG_DIR", dir.path().join("config"))
            .env("JUPYTER_DATA_DIR", dir.path().join("data"))
            .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
            .env("IPYTHONDIR", dir.path().join("ipython"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut j = Jupyter {
            child,
            port,
            log,
            _dir: dir,
        };
        j.wait_until_up().await;
        j
    }

    /// Polls Jupyter's own `/api/status` with the token until it answers
    /// 200; panics (with its log) if it exits or the bound passes.
    async fn wait_until_up(&mut self) {
        let url = format!("http://127.0.0.1:{}/jupyter/api/status", self.port);
        let c = client();
        let up = timeout(SLOW, async {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(status);
                }
                let r = c
                    .get(&url)
                    .header("authorization", format!("token {TOKEN}"))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 200) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        match up {
            Ok(Ok(())) => {}
            Ok(Err(status)) => panic!("jupyter-server exited ({status}):\n{}", self.log()),
            Err(_) => panic!("jupyter-server did not answer:\n{}", self.log()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Jupyter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("jupyter-server's log:\n{}", self.log());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Jupyter message on the `shell` channel, in the JSON form of the
/// kernel WebSocket (no subprotocol asked for).
fn execute_request(session: &str, msg_id: &str, code: &str) -> Value {
    json!({
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": session,
            "username": "bob",
            "version": "5.3",
            "date": "2026-01-01T00:00:00.000000Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": false,
            "store_history": false,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": true,
        },
        "buffers": [],
        "channel": "shell",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyter_runs_code_through_gatehouse_for_signed_in_users_only() {
    let test = "jupyter_runs_code_through_gatehouse_for_signed_in_users_only";
    let Some(exe) = executable() else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but jupyter-server is not installed \
             (GATEHOUSE_JUPYTER, or ~/.cache/gatehouse-jupyter; .ci/run installs it)"
        );
        eprintln!(
            "SKIPPED {test}: jupyter-server is not installed (set GATEHOUSE_JUPYTER, \
             or run .ci/run, which installs jupyter_server and ipykernel)"
        );
        return;
    };
    let jupyter = Jupyter::start(&exe).await;
    let apps = format!(
        "[[apps]]\nname = \"jupyter\"\npath_prefix = \"/jupyter/\"\nstrip_prefix = false\n\
         upstream = \"http://127.0.0.1:{}\"\n",
        jupyter.port
    );
    let s = TestServer::start(&config_text("", &apps)).await;
    assert_ne!(s.addr.port(), jupyter.port);
    let jupyter_auth = format!("token {TOKEN}");

    // Not signed in: a browser is sent to sign in, a script (Jupyter's
    // token or not) gets the challenge, and so does the WebSocket.
    let anon = client();
    crate::apps::sent_to_sign_in(&anon, &s, "/jupyter/tree", "%2Fjupyter%2Ftree").await;
    for auth in [None, Some(jupyter_auth.as_str())] {
        let mut req = anon.get(s.at("/jupyter/api/kernels"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().contains_key("www-authenticate"));
    }

    // Signed in.
    let c = client();
    let r = login(&c, &s, "bob", BOB_PW, &[]).await;
    let session = token_of(&r).expect("signed in");
    // gatehouse adds no credential of Jupyter's: without its token,
    // Jupyter itself refuses.
    let r = c.get(s.at("/jupyter/api/kernels")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A browser's way in: Jupyter's `?token=` link once, then Jupyter's own
    // cookie, which gatehouse passes both ways beside its session cookie.
    let r = c
        .get(s.at(&format!("/jupyter/api/status?token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers().get_all("set-cookie").iter().count();
    assert!(set >= 1, "Jupyter set no cookie");
    let r = c.get(s.at("/jupyter/api/kernels")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(s.at("/jupyter/api/kernels"))
        .header("authorization", &jupyter_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kernels: Value = r.json().await.unwrap();
    assert_eq!(kernels, json!([]));
    let r = timeout(
        SLOW,
        c.post(s.at("/jupyter/api/kernels"))
            .header("authorization", &jupyter_auth)
            .json(&json!({"name": "python3"}))
            .send(),
    )
    .await
    .expect("kernel start answered")
    .unwrap();
    assert_eq!(r.status(), 201);
    let kernel: Value = r.json().await.unwrap();
    let id = kernel["id"].as_str().expect("a kernel id").to_string();
    let r = c
        .get(s.at("/jupyter/api/kernels"))
        .header("authorization", &jupyter_auth)
        .send()
        .await
        .unwrap();
    let kernels: Value = r.json().await.unwrap();
    assert_eq!(kernels.as_array().map(Vec::len), Some(1), "{kernels}");
    assert_eq!(kernels[0]["id"], id.as_str());

    // The kernel's channels, through gatehouse: a WebSocket without a
    // session is refused by gatehouse, one with it runs `1+1`.
    let channels = format!(
        "ws://{}/jupyter/api/kernels/{id}/channels?session_id=gatehouse-test",
        s.addr
    );
    let own_origin = format!("http://{}", s.addr);
    let ws_request = |cookie: Option<&str>| {
        let mut req = channels.as_str().into_client_request().unwrap();
        let h = req.headers_mut();
        h.insert("origin", HeaderValue::from_str(&own_origin).unwrap());
        h.insert(
            "authorization",
            HeaderValue::from_str(&jupyter_auth).unwrap(),
        );
        if let Some(token) = cookie {
            let v = format!("gatehouse_session={token}");
            h.insert("cookie", HeaderValue::from_str(&v).unwrap());
        }
        req
    };
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let refused = timeout(STEP, tokio_tungstenite::client_async(ws_request(None), tcp))
        .await
        .unwrap()
        .expect_err("refused without a session");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 401),
        other => panic!("not an HTTP refusal: {other}"),
    }

    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut ws, _) = timeout(
        SLOW,
        tokio_tungstenite::client_async(ws_request(Some(&session)), tcp),
    )
    .await
    .expect("the kernel's WebSocket opened")
    .unwrap();
    let msg_id = "gatehouse-test-execute-1";
    let request = execute_request("gatehouse-test", msg_id, "1+1");
    ws.send(Message::text(request.to_string())).await.unwrap();
    let (mut result, mut reply) = (None, None);
    timeout(SLOW, async {
        while result.is_none() || reply.is_none() {
            let m = match ws.next().await {
                Some(Ok(m)) => m,
                other => panic!("the kernel's WebSocket ended: {other:?}"),
            };
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["parent_header"]["msg_id"] != msg_id {
                continue;
            }
            match v["header"]["msg_type"].as_str() {
                Some("execute_result") => result = Some(v),
                Some("execute_reply") => reply = Some(v),
                Some("error") => panic!("the kernel failed: {v}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the kernel answered within the bound");
    let (result, reply) = (result.unwrap(), reply.unwrap());
    assert_eq!(result["channel"], "iopub");
    assert_eq!(result["content"]["data"]["text/plain"], "2", "{result}");
    assert_eq!(reply["channel"], "shell");
    assert_eq!(reply["content"]["status"], "ok", "{reply}");

    // Jupyter itself counts the one connection, the relayed one.
    let direct = client()
        .get(format!(
            "http://127.0.0.1:{}/jupyter/api/kernels/{id}",
            jupyter.port
        ))
        .header("authorization", &jupyter_auth)
        .send()
        .await
        .unwrap();
    let seen: Value = direct.json().await.unwrap();
    assert_eq!(seen["connections"], 1, "{seen}");
    ws.close(None).await.unwrap();

    // The kernel is shut down through gatehouse too.
    let r = timeout(
        SLOW,
        c.delete(s.at(&format!("/jupyter/api/kernels/{id}")))
            .header("authorization", &jupyter_auth)
            .send(),
    )
    .await
    .expect("kernel shutdown answered")
    .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(s.at("/jupyter/api/kernels"))
        .header("authorization", &jupyter_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    drop(jupyter);
}
