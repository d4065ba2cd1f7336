//! The servers the figures load: gatehouse in process on a temporary data
//! directory, the plain axum competitor (which also answers a 256 MiB
//! body under `/big`), and the config both kinds of
//! gatehouse (in process and child process) start from.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse::config::{Argon2Settings, Config, Overrides};
use gatehouse::server::Server;
use tokio::sync::oneshot;

/// The cheapest argon2 cost, for figures where hashing is not measured.
pub fn cheap() -> Argon2Settings {
    Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

/// A config for user `alice` (admin) with the given password hash; `extra`
/// goes among the top-level settings, `sections` after them.
pub fn config_text(hash: &str, argon_cheap: bool, extra: &str, sections: &str) -> String {
    let argon = if argon_cheap {
        "[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n"
    } else {
        ""
    };
    // Every load comes from loopback, one client address as far as the
    // per-client connection cap knows: lift it.
    let per_ip = "max_connections_per_ip = 1000000\n";
    let sections = if sections.contains("[limits]\n") {
        sections.replacen("[limits]\n", &format!("[limits]\n{per_ip}"), 1)
    } else {
        format!("{sections}\n[limits]\n{per_ip}")
    };
    format!(
        "bind = \"127.0.0.1:0\"\nmetrics = true\nshutdown_grace_secs = 2\n{extra}\n{argon}\n{sections}\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nadmin = true\n"
    )
}

/// An in-process gatehouse; its data directory lives as long as it does.
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
    /// Its data directory (with `secrets.key`), removed with it.
    dir: tempfile::TempDir,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

/// Starts gatehouse with `config` on a fresh data directory.
pub async fn start_gatehouse(config: &str) -> Running {
    start_beside(None, config).await
}

/// Starts gatehouse with `config` on a fresh data directory holding a copy
/// of `first`'s `secrets.key` (when given): another node of its
/// deployment, which must hold the same key.
pub async fn start_beside(first: Option<&Running>, config: &str) -> Running {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    if let Some(first) = first {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("secrets.key");
        std::fs::copy(first.dir.path().join("secrets.key"), &key).expect("copy secrets.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("key mode");
    }
    std::fs::write(dir.join("gatehouse.toml"), config).expect("write bench config");
    let ov = Overrides {
        config: Some(dir.join("gatehouse.toml")),
        data_dir: Some(dir.clone()),
        ..Overrides::default()
    };
    let config = Config::load(&ov).expect("bench config");
    let server = Server::bind(config, ov).await.expect("server bind");
    let addr = server.local_addr().expect("server address");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = server
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    Running {
        addr,
        stop: tx,
        handle,
        dir: tmp,
    }
}

/// The competitor: a plain axum handler returning a constant. Send on the
/// returned channel to stop it.
pub async fn start_plain() -> (SocketAddr, oneshot::Sender<()>) {
    use axum::routing::get;
    serve(axum::Router::new().route("/auth/verify", get(|| async { "ok" }))).await
}

/// An app for the proxy figure: a plain axum handler answering every path
/// with a constant. Send on the returned channel to stop it.
pub async fn start_upstream() -> (SocketAddr, oneshot::Sender<()>) {
    use axum::body::{Body, Bytes};
    use axum::routing::get;
    // One buffer for every large answer: a clone shares it.
    let big = Bytes::from(vec![b'x'; BIG_BODY]);
    serve(
        axum::Router::new().fallback(get(move |uri: axum::http::Uri| {
            let big = big.clone();
            async move {
                if uri.path().ends_with("/big") {
                    Body::from(big)
                } else {
                    Body::from("ok")
                }
            }
        })),
    )
    .await
}

/// Bytes of the upstream's answer to a path ending in `/big` (figure 12's
/// large-body throughput).
pub const BIG_BODY: usize = 256 << 20;

/// Serves `app` on a loopback port until the returned channel is sent on.
async fn serve(app: axum::Router) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a plain handler");
    let addr = listener.local_addr().expect("plain handler address");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}
