//! `TestServer`: starts `gatehouse` in-process on port 0 with a temp data
//! dir and cheap argon2 parameters; stops it on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gatehouse::config::{Argon2Settings, Config, Overrides};
use gatehouse::server::password::HashGate;
use gatehouse::server::{Exit, Reloader, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ALICE_PW: &str = "alice-secret-pw";
pub const BOB_PW: &str = "bob-secret-pw";

pub fn cheap() -> Argon2Settings {
    Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

pub fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        let h = |p| gatehouse::server::password::hash_password(p, &cheap()).unwrap();
        (h(ALICE_PW), h(BOB_PW))
    })
}

/// Config text with alice (admin) and bob, cheap hashing, and `extra`
/// top-level settings (put before any table).
pub fn config_text(extra: &str, sections: &str) -> String {
    let (a, b) = hashes();
    format!(
        "bind = \"127.0.0.1:0\"\nmetrics = true\nshutdown_grace_secs = 5\n{extra}\n\
         [argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n{sections}\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{a}\"\nadmin = true\n\
         email = \"alice@example.com\"\ndisplay_name = \"Alice Admin\"\n\n\
         [[users]]\nname = \"bob\"\npassword_hash = \"{b}\"\n"
    )
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The plain-HTTP listener of `[tls] http_redirect_bind`.
    pub redirect_addr: Option<SocketAddr>,
    pub url: String,
    pub dir: PathBuf,
    pub reloader: Reloader,
    /// The hashing pool's test gate (open unless a test closes it).
    pub gate: HashGate,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<Exit, gatehouse::server::ServerError>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server in a fresh temp dir.
    pub async fn start(config: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, config).await;
        s._tmp = Some(tmp);
        s
    }

    /// Another node of `first`'s deployment: a fresh data dir holding a
    /// copy of `first`'s `secrets.key` (mode 0600), as every node of one
    /// deployment needs.
    pub async fn start_beside(first: &TestServer, config: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        share_key(&first.dir, tmp.path());
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, config).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server whose store answers no lookup on the spot, as a network
    /// store on a cache miss (`StoreOptions::spot_reads` off): every check
    /// takes its awaited path.
    pub async fn start_awaiting(config: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_with(&dir, config, false).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir`, writing `config` as its config file first.
    pub async fn start_in(dir: &Path, config: &str) -> TestServer {
        Self::start_with(dir, config, true).await
    }

    async fn start_with(dir: &Path, config: &str, spot_reads: bool) -> TestServer {
        std::fs::write(dir.join("gatehouse.toml"), config).unwrap();
        let ov = Overrides {
            config: Some(dir.join("gatehouse.toml")),
            data_dir: Some(dir.to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::load(&ov).unwrap();
        let backend = config.backend_config().with_spot_reads(spot_reads);
        let server = Server::bind_to(config, ov, backend).await.unwrap();
        let addr = server.local_addr().unwrap();
        let redirect_addr = server.redirect_addr();
        let reloader = server.reloader();
        let gate = server.state().hasher.gate().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            redirect_addr,
            url: format!("http://{addr}"),
            dir: dir.to_path_buf(),
            reloader,
            gate,
            stop: Some(tx),
            handle: Some(handle),
            _tmp: None,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Asks for shutdown and waits until the server has closed everything.
    pub async fn stop(mut self) -> Exit {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits for the server to stop by itself (idle timeout).
    pub async fn wait(&mut self) -> Exit {
        let h = self.handle.take().expect("not yet waited for");
        tokio::time::timeout(std::time::Duration::from_secs(60), h)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A browser-like client: cookie jar, no redirects followed.
/// Writes `config` into the data dir `dir` and starts a server there,
/// which must refuse: the refusal's message, with its causes.
pub async fn refused_start(dir: &Path, config: &str) -> String {
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, config).unwrap();
    let ov = Overrides {
        config: Some(path),
        data_dir: Some(dir.to_path_buf()),
        ..Overrides::default()
    };
    let config = Config::load(&ov).unwrap();
    let refused = Server::bind(config, ov).await;
    format!("{:#}", anyhow::Error::from(refused.err().expect("refused")))
}

/// Copies the key file of the data dir `from` into `to`, private.
pub fn share_key(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let key = to.join("secrets.key");
    std::fs::copy(from.join("secrets.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Logs in with a form post; returns the response.
pub async fn login(
    c: &reqwest::Client,
    s: &TestServer,
    user: &str,
    pw: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("username", user), ("password", pw)];
    form.extend_from_slice(extra);
    c.post(s.at("/login")).form(&form).send().await.unwrap()
}

/// The `Set-Cookie` header of a response.
pub fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Sends raw bytes on a fresh connection and returns what comes back (empty
/// when the server closed without answering). The server may answer and
/// close before the whole request is written.
pub async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = conn.write_all(req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        conn.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One `GET` on a fresh connection; the raw answer (empty if closed).
pub async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}

/// The session token a login response set, if it set one (a removal,
/// `Max-Age=0`, is not one).
pub fn token_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
}

/// The server's `/metrics` text.
pub async fn metrics_text(s: &TestServer) -> String {
    client()
        .get(s.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `req` with the original request `method url` named as Caddy, Traefik
/// and the shipped nginx file name it to the forward-auth check
/// (`X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`): the family gatehouse
/// reads by default.
pub fn forwarded(req: reqwest::RequestBuilder, method: &str, url: &str) -> reqwest::RequestBuilder {
    let (proto, rest) = url.split_once("://").expect("an absolute URL");
    let (host, uri) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let uri = if uri.starts_with('/') {
        uri.to_string()
    } else {
        format!("/{uri}")
    };
    req.header("x-forwarded-method", method)
        .header("x-forwarded-proto", proto)
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
}
