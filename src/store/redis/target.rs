//! Where the deployment's Redis is: one address (`redis://`,
//! `rediss://`), or the master that a set of Sentinels names
//! (`redis+sentinel://`, `rediss+sentinel://`).
//!
//! Invariants:
//! - Behind Sentinels, the master is looked up again for every new
//!   connection, and a server is taken only once it says it is the master
//!   (`ROLE`): after a failover, reconnecting reaches the new master,
//!   never the old one demoted to a replica.
//! - TLS verifies the certificate chain and the host name, of the
//!   Sentinels and of the master alike (see `crate::store::tls`).
//! - Passwords never reach `Debug` or a message: [`redact`] writes them
//!   as `***`.

use std::sync::Arc;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsCertificates, TlsMode};

/// Port of a Sentinel named without one.
pub const SENTINEL_PORT: u16 = 26379;

/// How to reach the deployment's Redis. Cheap to clone.
#[derive(Clone)]
pub enum Target {
    /// One server at a fixed address.
    Direct(Arc<redis::Client>),
    /// The master of `service`, as the Sentinels name it now.
    Sentinel(Arc<Sentinels>),
}

/// A set of Sentinels and the service whose master they name.
pub struct Sentinels {
    /// Asks the Sentinels in turn; one lookup at a time, since it keeps
    /// its connections to them.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master's name in the Sentinels' configuration.
    service: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Direct(_) => f.write_str("Target::Direct"),
            Target::Sentinel(s) => write!(f, "Target::Sentinel({})", s.service),
        }
    }
}

impl Target {
    /// The target `url` names, verified against `ca_pem` (or else the
    /// system's roots) where it uses TLS.
    pub fn from_url(url: &str, ca_pem: Option<&[u8]>) -> Result<Target, String> {
        match url.split_once("://").map(|(s, _)| s) {
            Some("redis+sentinel" | "rediss+sentinel") => Ok(Target::Sentinel(Arc::new(
                Sentinels::from_url(url, ca_pem)?,
            ))),
            _ => crate::store::tls::redis_client(url, ca_pem).map(|c| Target::Direct(Arc::new(c))),
        }
    }

    /// A client for the server to use now: for Sentinels, the master they
    /// name, once it has said it is the master.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Target::Direct(client) => Ok((**client).clone()),
            Target::Sentinel(s) => {
                let found = s.client.lock().await.async_get_client().await;
                found.map_err(|e| {
                    redis::RedisError::from((
                        e.kind(),
                        "asking the Sentinels",
                        format!("no Sentinel named a master for {:?}: {e}", s.service),
                    ))
                })
            }
        }
    }

    /// Whether the server may change address (Sentinels): a connection
    /// then checks, when it starts, that it still reaches the master.
    pub fn follows_failover(&self) -> bool {
        matches!(self, Target::Sentinel(_))
    }
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    sentinels: Vec<(String, u16)>,
    service: String,
    db: i64,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
}

/// Reads `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/SERVICE[/DB]`
/// with the optional query `sentinel_username=` and `sentinel_password=`
/// (the Sentinels' own credentials; the user part is the master's).
fn parse(url: &str) -> Result<SentinelUrl, String> {
    let bad = |why: &str| format!("the Sentinel URL {} {why}", redact(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme"))?;
    let tls = scheme == "rediss+sentinel";
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => {
            let (u, p) = a.split_once(':').unwrap_or((a, ""));
            let dec = |s: &str| {
                percent_decode(s).ok_or_else(|| bad("has a credential that is not UTF-8"))
            };
            (
                (!u.is_empty()).then(|| dec(u)).transpose()?,
                (!p.is_empty()).then(|| dec(p)).transpose()?,
            )
        }
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("names no service: add /SERVICE after the Sentinels"))?;
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad(&format!("has the port {port:?}, not a number")))?,
            ),
            _ => (h, SENTINEL_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("has an empty Sentinel address"));
        }
        sentinels.push((host.to_string(), port));
    }
    let mut parts = path.splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_string();
    if service.is_empty() {
        return Err(bad("names no service: add /SERVICE after the Sentinels"));
    }
    let db = match parts.next().filter(|d| !d.is_empty()) {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| bad(&format!("has the database {d:?}, not a number")))?,
        None => 0,
    };
    let (mut sentinel_username, mut sentinel_password) = (None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| bad("has a credential that is not UTF-8"))?;
        match k {
            "sentinel_username" => sentinel_username = Some(v),
            "sentinel_password" => sentinel_password = Some(v),
            other => return Err(bad(&format!("has the unknown parameter {other:?}"))),
        }
    }
    Ok(SentinelUrl {
        tls,
        username,
        password,
        sentinels,
        service,
        db,
        sentinel_username,
        sentinel_password,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

impl Sentinels {
    fn from_url(url: &str, ca_pem: Option<&[u8]>) -> Result<Sentinels, String> {
        let u = parse(url)?;
        let addrs = u.sentinels.iter().map(|(host, port)| {
            if u.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b = SentinelClientBuilder::new(addrs, &u.service, SentinelServerType::Master)
            .map_err(|e| e.to_string())?
            .set_client_to_redis_db(u.db);
        if let Some(user) = &u.username {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(pw) = &u.password {
            b = b.set_client_to_redis_password(pw);
        }
        if let Some(user) = &u.sentinel_username {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(pw) = &u.sentinel_password {
            b = b.set_client_to_sentinel_password(pw);
        }
        if u.tls {
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(pem) = ca_pem {
                let certs = || TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                };
                b = b
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
        }
        let client = b.build().map_err(|e| e.to_string())?;
        Ok(Sentinels {
            client: tokio::sync::Mutex::new(client),
            service: u.service,
        })
    }
}

/// `url` without its passwords, for messages.
pub fn redact(url: &str) -> String {
    if url.contains("+sentinel://") {
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let mut out = match head.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((auth, hosts)) => {
                    let user = auth.split_once(':').map_or(auth, |(u, _)| u);
                    let masked = if auth.contains(':') { ":***" } else { "" };
                    format!("{scheme}://{user}{masked}@{hosts}")
                }
                None => head.to_string(),
            },
            None => return "redis (an unreadable URL)".into(),
        };
        if let Some(q) = query {
            let masked: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.ends_with("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out = format!("{out}?{}", masked.join("&"));
        }
        return out;
    }
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "redis (an unreadable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_its_sentinels_service_database_and_credentials() {
        let u = parse(
            "redis+sentinel://:m%40ster@s1:26380,s2,[::1]:26381/mymaster/2\
             ?sentinel_password=s3nt",
        )
        .unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                tls: false,
                username: None,
                password: Some("m@ster".into()),
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), SENTINEL_PORT),
                    ("::1".into(), 26381)
                ],
                service: "mymaster".into(),
                db: 2,
                sentinel_username: None,
                sentinel_password: Some("s3nt".into()),
            }
        );
        let t = parse("rediss+sentinel://app:pw@s1/cache").unwrap();
        assert!(t.tls);
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.db, 0);
    }

    #[test]
    fn a_sentinel_url_without_service_or_with_odd_parts_is_refused_without_its_password() {
        for (url, says) in [
            ("redis+sentinel://:hunter2@s1:26379", "names no service"),
            ("redis+sentinel://:hunter2@s1:26379/", "names no service"),
            ("redis+sentinel://:hunter2@s1:port/m", "not a number"),
            ("redis+sentinel://:hunter2@,s1/m", "empty Sentinel address"),
            ("redis+sentinel://:hunter2@s1/m/x", "not a number"),
            (
                "redis+sentinel://:hunter2@s1/m?timeout=3",
                "unknown parameter",
            ),
        ] {
            let e = Target::from_url(url, None).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn redact_hides_every_password_of_either_form() {
        assert_eq!(
            redact("redis+sentinel://app:pw@s1,s2/m?sentinel_password=x&sentinel_username=u"),
            "redis+sentinel://app:***@s1,s2/m?sentinel_password=***&sentinel_username=u"
        );
        assert_eq!(redact("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis+sentinel://s1/m"), "redis+sentinel://s1/m");
    }

    #[test]
    fn plain_urls_stay_direct_and_sentinel_urls_follow_failover() {
        assert!(
            !Target::from_url("redis://h:6379", None)
                .unwrap()
                .follows_failover()
        );
        assert!(
            Target::from_url("redis+sentinel://s1/m", None)
                .unwrap()
                .follows_failover()
        );
    }

    /// Sentinels that do not answer stop the open with a reason, not a
    /// hang.
    #[tokio::test]
    async fn sentinels_that_do_not_answer_stop_the_open_with_a_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis+sentinel://:hunter2@127.0.0.1:{port}/gh");
        let e = crate::store::redis::RedisState::connect(
            &url,
            "p",
            crate::store::redis::Durability::Always,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("no Sentinel named a master for \"gh\""), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
