//! The admin endpoint on a Unix socket, `<data-dir>/admin.sock` (mode 0600):
//! how `gatehouse bans lift` changes state while the server runs (the server
//! is then the only writer of the database). Whoever can open the socket is
//! the operator: the file mode is the access control.
//!
//! Routes: `GET /bans` (text list), `POST /bans/lift?user=U` or `?ip=IP`,
//! `POST /users/revoke-tokens?user=U` (ends every access token of a user),
//! `POST /oidc/rotate-key` (a new OpenID Connect signing key),
//! `POST /config/reload` (re-reads the users and rules, as SIGHUP does, and
//! says what it read and which changed settings wait for a restart),
//! `POST /events/backup?path=P&bytes=N&events=N&chain_head=H` (records the
//! `backup.created` event for a snapshot `auditctl backup` just took), and
//! the streamed answers of `auditctl` under `/stream/` (`admin_stream.rs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::server::factors::reset::reset_factors;
use crate::server::state::AppState;
use crate::store::{
    AuditStore, BanStore, BanSubject, EventKind, NewEvent, Revocation, RevokeReason, TokenStore,
    now_ms,
};

/// Name of the socket in the data dir.
pub const SOCKET_FILE: &str = "admin.sock";

/// Largest reply the CLI reads from the socket; a longer one is reported
/// as cut ([`Reply::cut`]), never passed on as if it were whole.
pub const MAX_REPLY: u64 = 1024 * 1024;

/// Binds the socket (replacing a stale one) and makes it owner-only.
///
/// The socket is bound inside a new directory of mode 0700, made owner-only
/// there, and only then renamed into the data dir. Binding in place would
/// create it with the process umask and leave a moment, before the `chmod`,
/// in which another local user could connect; the umask itself is
/// process-wide and cannot be narrowed for one call without racing other
/// threads. A socket another server answers on is left alone (an error).
pub fn bind(data_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = data_dir.join(SOCKET_FILE);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another server answers on {}", path.display()),
            ));
        }
        // A socket left by a crashed server: nobody answers on it.
        std::fs::remove_file(&path)?;
    }
    // A short name: socket paths are limited to about 100 bytes.
    let private = data_dir.join(format!(".adm{}", std::process::id()));
    // Left by an earlier process that had the same id and crashed here.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = (|| {
        let tmp = private.join("s");
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound.map(|l| (l, path))
}

/// Serves admin requests until `stop` changes, then removes the socket file.
pub async fn serve(
    state: AppState,
    reloader: crate::server::ops::reload::Reloader,
    listener: UnixListener,
    path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let streams = crate::server::ops::admin_stream::router(state.store.clone());
    let router = Router::new()
        .route(
            "/config/reload",
            post(move || {
                let reloader = reloader.clone();
                async move { reload(&reloader).await }
            }),
        )
        .route("/bans", get(list))
        .route("/bans/lift", post(lift))
        .route("/users/reset-second-factor", post(reset_second_factor))
        .route("/events/backup", post(backup_created))
        .route("/users/revoke-tokens", post(revoke_tokens))
        .route("/oidc/rotate-key", post(rotate_key))
        .with_state(state)
        .merge(streams);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // One short exchange, or a stream that keeps moving; a stuck
        // client is cut off.
        conns.spawn(crate::server::ops::admin_stream::serve_connection(
            builder.clone(),
            stream,
            router.clone(),
        ));
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&path);
}

/// `POST /config/reload`: what the reload read, or why it failed (the
/// previous users and rules then stay).
async fn reload(reloader: &crate::server::ops::reload::Reloader) -> (StatusCode, String) {
    match reloader.reload().await {
        Ok(done) => (StatusCode::OK, done.to_string()),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload failed, the previous users and rules stay: {e}\n"),
        ),
    }
}

async fn list(State(state): State<AppState>) -> (StatusCode, String) {
    match state.store.bans(now_ms()).await {
        Ok(bans) => (StatusCode::OK, format_bans(&bans)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// One line per ban: subject, seconds left, reason. User names and reasons
/// are escaped for the terminal (`crate::terminal::escape`): a banned name
/// is whatever someone typed into the login form.
pub fn format_bans(bans: &[crate::store::Ban]) -> String {
    format_bans_at(bans, now_ms())
}

fn format_bans_at(bans: &[crate::store::Ban], now: u64) -> String {
    use crate::terminal::escape;
    if bans.is_empty() {
        return "no bans in force\n".into();
    }
    bans.iter()
        .map(|b| {
            let subject = match &b.subject {
                BanSubject::User(u) => format!("user {}", escape(u)),
                BanSubject::Ip(ip) => format!("ip {ip}"),
            };
            format!(
                "{subject}\t{}s left\t{}\n",
                b.until_ms.saturating_sub(now).div_ceil(1000),
                escape(&b.reason)
            )
        })
        .collect()
}

#[derive(Deserialize)]
struct LiftQuery {
    user: Option<String>,
    ip: Option<IpAddr>,
}

async fn lift(State(state): State<AppState>, Query(q): Query<LiftQuery>) -> (StatusCode, String) {
    let subject = match (q.user, q.ip) {
        (Some(u), None) => BanSubject::User(u),
        (None, Some(ip)) => BanSubject::ip(ip),
        _ => return (StatusCode::BAD_REQUEST, "give user or ip\n".into()),
    };
    let lifted = state
        .store
        .lift_ban(
            &subject,
            "lifted by the operator",
            Some("admin-socket"),
            now_ms(),
        )
        .await;
    match lifted {
        Ok(true) => (StatusCode::OK, format!("lifted the ban on {subject}\n")),
        Ok(false) => (StatusCode::OK, format!("no ban on {subject}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
}

async fn reset_second_factor(
    State(state): State<AppState>,
    Query(q): Query<UserQuery>,
) -> (StatusCode, String) {
    match reset_factors(&state.store, &q.user, "admin-socket").await {
        Ok(msg) => (StatusCode::OK, msg),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Starts signing OpenID Connect tokens with a new key
/// (`gatehouse oidc rotate-key`); the old one stays published.
async fn rotate_key(State(state): State<AppState>) -> (StatusCode, String) {
    match state.oidc.rotate(&state.store, &state.secrets).await {
        Ok(kid) => (StatusCode::OK, format!("signing with key {kid}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Ends every access token of a user (`gatehouse users revoke-tokens`),
/// each with `token.revoked` (reason `admin`, actor `admin-socket`).
async fn revoke_tokens(
    State(state): State<AppState>,
    Query(q): Query<UserQuery>,
) -> (StatusCode, String) {
    let how = Revocation {
        actor: Some("admin-socket".into()),
        ..Revocation::new(RevokeReason::ByAdmin, now_ms())
    };
    match state.store.revoke_user_tokens(&q.user, how).await {
        Ok(ids) => (StatusCode::OK, revoked_tokens_line(&q.user, ids.len())),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// What `users revoke-tokens` prints, the user escaped for the terminal.
pub fn revoked_tokens_line(user: &str, n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!(
        "revoked {n} access token{s} of {}\n",
        crate::terminal::escape(user)
    )
}

#[derive(Deserialize)]
struct BackupQuery {
    path: String,
    bytes: u64,
    events: u64,
    chain_head: String,
}

/// Records `backup.created` on behalf of `auditctl backup`, which cannot write
/// while the server holds the file.
async fn backup_created(
    State(state): State<AppState>,
    Query(q): Query<BackupQuery>,
) -> (StatusCode, String) {
    let ev = NewEvent::now(EventKind::BackupCreated)
        .detail("path", q.path)
        .detail("bytes", q.bytes.to_string())
        .detail("events", q.events.to_string())
        .detail("chain_head", q.chain_head)
        .detail("by", "auditctl");
    match state.store.append(ev).await {
        Ok(id) => (
            StatusCode::OK,
            format!("recorded backup.created as event {id}\n"),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// A reply from the admin socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The body; when `cut`, only its whole lines within [`MAX_REPLY`].
    pub body: String,
    /// The reply was longer than [`MAX_REPLY`]: the rest was not read.
    pub cut: bool,
}

impl Reply {
    /// The body for the operator, or an error when the server refused or
    /// its reply was cut (the lines shown are then printed first, so that
    /// nothing is lost silently).
    pub fn into_result(self) -> anyhow::Result<String> {
        if self.cut {
            print!("{}", self.body);
            anyhow::bail!(
                "the server's reply was longer than {} KiB and was cut after the lines shown",
                MAX_REPLY / 1024
            );
        }
        if !(200..300).contains(&self.status) {
            anyhow::bail!("the server answered {}: {}", self.status, self.body.trim());
        }
        Ok(self.body)
    }
}

/// Client side: sends one request over the socket and returns its reply,
/// read up to [`MAX_REPLY`] (a longer one is marked `cut`). `Ok(None)` when
/// no server listens.
pub fn request(
    data_dir: &Path,
    method: &str,
    path_and_query: &str,
) -> std::io::Result<Option<Reply>> {
    use std::io::{Read, Write};
    let sock = data_dir.join(SOCKET_FILE);
    let mut s = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        s,
        "{method} {path_and_query} HTTP/1.1\r\nHost: gatehouse\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // One byte past the cap tells a reply that fits from one that does not.
    s.take(MAX_REPLY + 1).read_to_end(&mut raw)?;
    let cut = raw.len() as u64 > MAX_REPLY;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed reply from the admin socket"))?;
    let body = if cut {
        // Whole lines only: a line cut in the middle could read as another.
        body.rfind('\n').map_or("", |end| &body[..=end])
    } else {
        body
    };
    Ok(Some(Reply {
        status,
        body: body.to_string(),
        cut,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ban_lists_escape_crafted_names() {
        let ban = |subject, reason: &str| crate::store::Ban {
            subject,
            created_ms: 0,
            until_ms: 61_000,
            reason: reason.into(),
        };
        let text = format_bans_at(
            &[
                ban(
                    BanSubject::User("a\u{200b}\u{200b}dmin".into()),
                    "too many failures",
                ),
                ban(BanSubject::User("x\u{202e}\t1s left".into()), "r\u{2028}"),
                ban(
                    BanSubject::ip("2001:db8::1".parse().unwrap()),
                    "too many failures",
                ),
            ],
            1_000,
        );
        assert_eq!(
            text,
            "user a\\u{200b}\\u{200b}dmin\t60s left\ttoo many failures\n\
             user x\\u{202e}\\t1s left\t60s left\tr\\u{2028}\n\
             ip 2001:db8::\t60s left\ttoo many failures\n"
        );
    }

    #[tokio::test]
    async fn the_socket_is_owner_only_and_bound_out_of_reach() {
        let dir = tempfile::tempdir().unwrap();
        // A data dir others may enter, as an operator might have made it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (listener, path) = bind(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(SOCKET_FILE));
        assert_eq!(mode(&path), 0o600);
        // Only the socket is left: the private directory it was bound in is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SOCKET_FILE]);
        // It answers under its final name.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        // A second server does not take it over while the first answers.
        let e = bind(dir.path()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert_eq!(mode(&path), 0o600);
        // A stale socket (nobody listens) is replaced.
        drop(listener);
        let (_l, path) = bind(dir.path()).unwrap();
        assert_eq!(mode(&path), 0o600);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }
}
