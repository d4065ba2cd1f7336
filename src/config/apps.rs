//! `[[apps]]` and `[proxy]`: the apps the built-in reverse proxy serves,
//! checked and turned into [`ProxyConfig`]. Every check names the field
//! (`apps[1].path_prefix`); [`super::locate`] adds the line.
//!
//! Routing is decided here once, so that the proxy's per-request match is
//! a map lookup and a short scan: a host app claims its host (every path on
//! it), a path-prefix app takes its prefix on every host that no app claims,
//! the longest prefix first, and gatehouse's own routes keep their paths.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::schema::{AppEntry, FileConfig, ProxySettings};
use super::{MAX_COUNT, MAX_SECS};

/// First path segments of gatehouse's own routes: a path prefix under one of
/// them would hide a gatehouse page or API behind an app.
const OWN_PATHS: [&str; 15] = [
    "/",
    "/.well-known",
    "/account",
    "/api",
    "/assets",
    "/auth",
    "/favicon.ico",
    "/healthz",
    "/login",
    "/logout",
    "/metrics",
    "/oidc",
    "/robots.txt",
    "/sessions",
    "/tokens",
];

/// Longest timeout of the proxy's settings: a day. Longer waits on an
/// upstream are typos.
const MAX_PROXY_SECS: u64 = 86_400;

/// Where an app's upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `http://HOST:PORT`: the authority (`host:port`), as it is sent in
    /// `Host` when `preserve_host = false`.
    Tcp { authority: String },
    /// `unix:/PATH`.
    Unix { path: PathBuf },
}

/// One app, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub name: String,
    /// Lower case, without port or trailing dot.
    pub host: Option<String>,
    /// Starts and ends with `/`, in the normal form the rules see.
    pub path_prefix: Option<String>,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub upstream: Upstream,
    /// Never 0.
    pub max_connections: usize,
}

/// `[proxy]` and `[[apps]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Starts with `/`, no trailing `/` (`/.gatehouse`).
    pub reserved_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub body_idle: Duration,
    pub ws_idle: Duration,
    pub ws_recheck: Duration,
    /// Never 0.
    pub max_upgraded: usize,
    /// In file order; indexes are the apps' ids.
    pub apps: Vec<AppConfig>,
    /// Host apps by host.
    hosts: HashMap<String, usize>,
    /// Path-prefix apps, longest prefix first.
    prefixes: Vec<usize>,
}

/// Which app a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Gatehouse's own routes.
    Own,
    /// Gatehouse's own routes, reached under the reserved prefix: the path
    /// with the prefix's length removed.
    Reserved(usize),
    /// The app of this index.
    App(usize),
}

impl ProxyConfig {
    /// Whether any app is configured (else every request is gatehouse's).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Whether a host app claims `host` (normal form: lower case, no port).
    pub fn claims_host(&self, host: &str) -> bool {
        self.hosts.contains_key(host)
    }

    /// Where a request for `host` (normal form: lower case, no port) and
    /// `path` (as received, without the query) goes. A path under the
    /// reserved prefix is always gatehouse's, on every host.
    ///
    /// Path prefixes are matched on the path's normal form, the one the
    /// access rules see ([`crate::access::normalize::path`]): otherwise
    /// `/public/../code/x` would go to the app of `/public/` while being
    /// decided, and routed by that app's framework, as `/code/x`. A path
    /// with no normal form goes to no prefix app; the host's app, if any,
    /// refuses it in its access check. Another spelling of the reserved
    /// prefix (`/x/../.gatehouse/`) goes to no app either.
    pub fn route(&self, host: &str, path: &str) -> Route {
        if self.apps.is_empty() {
            return Route::Own;
        }
        let reserved = |p: &str| {
            p.strip_prefix(self.reserved_prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if reserved(path) {
            return Route::Reserved(self.reserved_prefix.len());
        }
        let host_app = self.hosts.get(host).map(|&i| Route::App(i));
        let Ok(normal) = crate::access::normalize::path(path.as_bytes()) else {
            return host_app.unwrap_or(Route::Own);
        };
        if reserved(&normal) {
            return Route::Own;
        }
        if let Some(app) = host_app {
            return app;
        }
        self.prefix_app(&normal).map_or(Route::Own, Route::App)
    }

    /// The prefix app whose `path_prefix` holds `normal` (a path in normal
    /// form), the longest prefix first.
    fn prefix_app(&self, normal: &str) -> Option<usize> {
        self.prefixes.iter().copied().find(|&i| {
            let p = self.apps[i].path_prefix.as_deref().unwrap_or("/");
            // `/code/` also takes `/code`, which the app would redirect.
            normal.starts_with(p) || normal == &p[..p.len() - 1]
        })
    }
}

/// Checks `[proxy]` and `[[apps]]`. `invalid` makes the error of a field.
pub(super) fn check<E>(
    file: &FileConfig,
    invalid: impl Fn(&str, String) -> E,
) -> Result<ProxyConfig, E> {
    let p: &ProxySettings = &file.proxy;
    let reserved = &p.reserved_prefix;
    if !reserved.starts_with('/')
        || reserved.len() < 2
        || reserved.ends_with('/')
        || crate::access::normalize::path(reserved.as_bytes())
            .ok()
            .as_deref()
            != Some(reserved)
        || reserved.contains('?')
    {
        return Err(invalid(
            "proxy.reserved_prefix",
            format!(
                "{reserved:?}: a path such as \"/.gatehouse\", in normal form, without a trailing '/'"
            ),
        ));
    }
    for (field, v) in [
        ("proxy.connect_timeout_secs", p.connect_timeout_secs),
        ("proxy.response_timeout_secs", p.response_timeout_secs),
        ("proxy.body_idle_secs", p.body_idle_secs),
        ("proxy.ws_idle_secs", p.ws_idle_secs),
        ("proxy.ws_recheck_secs", p.ws_recheck_secs),
    ] {
        if !(1..=MAX_PROXY_SECS.min(MAX_SECS)).contains(&v) {
            return Err(invalid(
                field,
                format!("must be from 1 to {MAX_PROXY_SECS}"),
            ));
        }
    }
    if !(1..=MAX_COUNT).contains(&p.max_upgraded) {
        return Err(invalid(
            "proxy.max_upgraded",
            format!("must be from 1 to {MAX_COUNT}"),
        ));
    }
    let mut apps = Vec::with_capacity(file.apps.len());
    let mut names = HashMap::new();
    let mut hosts = HashMap::new();
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    for (i, a) in file.apps.iter().enumerate() {
        let field = |f: &str| format!("apps[{i}].{f}");
        let app = check_app(a, reserved).map_err(|(f, reason)| invalid(&field(f), reason))?;
        if let Some(j) = names.insert(app.name.clone(), i) {
            return Err(invalid(
                &field("name"),
                format!("{:?} is also the name of apps[{j}]", app.name),
            ));
        }
        if let Some(h) = &app.host
            && let Some(j) = hosts.insert(h.clone(), i)
        {
            return Err(invalid(
                &field("host"),
                format!("{h:?} is also the host of apps[{j}]"),
            ));
        }
        if let Some(pp) = &app.path_prefix
            && let Some(j) = prefixes.insert(pp.clone(), i)
        {
            return Err(invalid(
                &field("path_prefix"),
                format!("{pp:?} is also the path prefix of apps[{j}]"),
            ));
        }
        apps.push(app);
    }
    let mut by_length: Vec<usize> = prefixes.into_values().collect();
    by_length
        .sort_by_key(|&i| std::cmp::Reverse(apps[i].path_prefix.as_deref().map_or(0, str::len)));
    Ok(ProxyConfig {
        reserved_prefix: reserved.clone(),
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        response_timeout: Duration::from_secs(p.response_timeout_secs),
        body_idle: Duration::from_secs(p.body_idle_secs),
        ws_idle: Duration::from_secs(p.ws_idle_secs),
        ws_recheck: Duration::from_secs(p.ws_recheck_secs),
        max_upgraded: p.max_upgraded,
        apps,
        hosts,
        prefixes: by_length,
    })
}

/// Checks one app; an error names the field (within the app) and why.
fn check_app(a: &AppEntry, reserved: &str) -> Result<AppConfig, (&'static str, String)> {
    if a.name.is_empty()
        || a.name.len() > 64
        || !a
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err((
            "name",
            format!("{:?}: 1 to 64 of A-Z, a-z, 0-9, `-`, `_`, `.`", a.name),
        ));
    }
    let host = match (&a.host, &a.path_prefix) {
        (Some(_), Some(_)) => {
            return Err((
                "path_prefix",
                "an app is matched by `host` or by `path_prefix`, not both".into(),
            ));
        }
        (None, None) => {
            return Err((
                "host",
                "set `host` (the app's own host) or `path_prefix` (a path on gatehouse's hosts)"
                    .into(),
            ));
        }
        (Some(h), None) => {
            let normal = crate::access::normalize::host(h.as_bytes())
                .map_err(|_| ("host", format!("{h:?} is not a host name")))?;
            if normal != h.as_str() {
                return Err((
                    "host",
                    format!("{h:?}: write it as {normal:?} (lower case, no port, no trailing dot)"),
                ));
            }
            Some(normal.into_owned())
        }
        (None, Some(_)) => None,
    };
    let path_prefix = match &a.path_prefix {
        None => None,
        Some(p) => {
            let normal = crate::access::normalize::path(p.as_bytes()).ok();
            if !p.starts_with('/')
                || !p.ends_with('/')
                || p.len() < 3
                || p.contains('?')
                || normal.as_deref() != Some(p.as_str())
            {
                return Err((
                    "path_prefix",
                    format!(
                        "{p:?}: a path such as \"/code/\", starting and ending with '/', in normal form"
                    ),
                ));
            }
            let bare = &p[..p.len() - 1];
            let first = match bare[1..].find('/') {
                Some(i) => &bare[..i + 1],
                None => bare,
            };
            if OWN_PATHS[1..].contains(&first) || first == reserved {
                return Err((
                    "path_prefix",
                    format!("{p:?} would hide gatehouse's own {first} routes"),
                ));
            }
            Some(p.clone())
        }
    };
    if a.strip_prefix && path_prefix.is_none() {
        return Err((
            "strip_prefix",
            "only an app with a `path_prefix` has a prefix to strip".into(),
        ));
    }
    let upstream = parse_upstream(&a.upstream).map_err(|r| ("upstream", r))?;
    if !(1..=MAX_COUNT).contains(&a.max_connections) {
        return Err(("max_connections", format!("must be from 1 to {MAX_COUNT}")));
    }
    Ok(AppConfig {
        name: a.name.clone(),
        host,
        path_prefix,
        strip_prefix: a.strip_prefix,
        preserve_host: a.preserve_host,
        upstream,
        max_connections: a.max_connections,
    })
}

/// `http://HOST:PORT` (no path, query or credentials) or `unix:/PATH`.
fn parse_upstream(s: &str) -> Result<Upstream, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') || path.len() > 107 {
            return Err(format!(
                "{s:?}: a Unix socket is `unix:/ABSOLUTE/PATH` (at most 107 bytes)"
            ));
        }
        return Ok(Upstream::Unix { path: path.into() });
    }
    let u = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    if u.scheme() == "https" {
        return Err(format!(
            "{s:?}: https upstreams are not supported yet; use http:// on loopback or unix:"
        ));
    }
    if u.scheme() != "http"
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !matches!(u.path(), "" | "/")
    {
        return Err(format!(
            "{s:?}: expected http://HOST:PORT (no path, query or credentials) or unix:/PATH"
        ));
    }
    let host = u.host_str().ok_or_else(|| format!("{s:?}: no host"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    Ok(Upstream::Tcp {
        authority: format!("{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, host: Option<&str>, prefix: Option<&str>) -> AppEntry {
        AppEntry {
            name: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            strip_prefix: false,
            preserve_host: true,
            upstream: "http://127.0.0.1:9000".into(),
            max_connections: 8,
        }
    }

    fn checked(apps: Vec<AppEntry>) -> Result<ProxyConfig, String> {
        let file = FileConfig {
            apps,
            ..FileConfig::default()
        };
        check(&file, |f, r| format!("{f}: {r}"))
    }

    #[test]
    fn routes_by_host_then_longest_prefix() {
        let p = checked(vec![
            app("code", Some("code.example.com"), None),
            app("a", None, Some("/a/")),
            app("ab", None, Some("/a/b/")),
        ])
        .unwrap();
        assert_eq!(p.route("code.example.com", "/login"), Route::App(0));
        assert_eq!(
            p.route("code.example.com", "/.gatehouse/login"),
            Route::Reserved(11)
        );
        assert_eq!(p.route("other", "/.gatehouse"), Route::Reserved(11));
        assert_eq!(p.route("other", "/.gatehousex"), Route::Own);
        assert_eq!(p.route("other", "/a/b/c"), Route::App(2));
        assert_eq!(p.route("other", "/a/c"), Route::App(1));
        assert_eq!(p.route("other", "/a"), Route::App(1));
        assert_eq!(p.route("other", "/ab"), Route::Own);
        assert_eq!(p.route("other", "/login"), Route::Own);
    }

    #[test]
    fn prefixes_match_the_spelling_the_rules_see() {
        let p = checked(vec![
            app("code", Some("code.example.com"), None),
            app("public", None, Some("/public/")),
            app("private", None, Some("/private/")),
        ])
        .unwrap();
        // Each of these reaches `/private/x` in the app's framework, and is
        // decided as `/private/x`: it must go to the app of `/private/`.
        for spelling in [
            "/public/../private/x",
            "/public/%2e%2e/private/x",
            "/public/./../private/x",
            "//private/x",
            "/%70rivate/x",
            "/public;x/../private/x",
        ] {
            assert_eq!(p.route("other", spelling), Route::App(2), "{spelling}");
        }
        assert_eq!(p.route("other", "/private/../public/"), Route::App(1));
        assert_eq!(p.route("other", "/private/.."), Route::Own);
        // No normal form: no prefix app; the host's app refuses it itself.
        assert_eq!(p.route("other", "/public/%2fx"), Route::Own);
        assert_eq!(p.route("other", "/public/%zz"), Route::Own);
        assert_eq!(p.route("code.example.com", "/%2fx"), Route::App(0));
        // Another spelling of the reserved prefix reaches no app.
        assert_eq!(p.route("other", "/public/../.gatehouse/login"), Route::Own);
        assert_eq!(p.route("code.example.com", "/x/../.gatehouse/"), Route::Own);
    }

    #[test]
    fn no_apps_routes_everything_to_gatehouse() {
        let p = checked(vec![]).unwrap();
        assert_eq!(p.route("x", "/.gatehouse/login"), Route::Own);
    }

    #[test]
    fn bad_apps_name_their_field() {
        let e = |apps| checked(apps).unwrap_err();
        assert!(e(vec![app("x", Some("a"), Some("/a/"))]).starts_with("apps[0].path_prefix"));
        assert!(e(vec![app("x", None, None)]).starts_with("apps[0].host"));
        assert!(e(vec![app("x", Some("A.example"), None)]).contains("\"a.example\""));
        assert!(e(vec![app("x", None, Some("/api/"))]).contains("/api"));
        assert!(e(vec![app("x", None, Some("/code"))]).starts_with("apps[0].path_prefix"));
        assert!(e(vec![app("x", None, Some("/a/../b/"))]).starts_with("apps[0].path_prefix"));
        assert!(e(vec![app("x", None, Some("/.gatehouse/"))]).contains("hide"));
        assert!(
            e(vec![
                app("x", None, Some("/a/")),
                app("x", None, Some("/b/"))
            ])
            .starts_with("apps[1].name")
        );
        assert!(
            e(vec![app("x", Some("h"), None), app("y", Some("h"), None)])
                .starts_with("apps[1].host")
        );
        let mut bad = app("x", None, Some("/a/"));
        bad.upstream = "https://127.0.0.1".into();
        assert!(e(vec![bad.clone()]).contains("not supported"));
        bad.upstream = "http://127.0.0.1/base".into();
        assert!(e(vec![bad.clone()]).starts_with("apps[0].upstream"));
        bad.upstream = "unix:relative".into();
        assert!(e(vec![bad.clone()]).starts_with("apps[0].upstream"));
        bad.upstream = "unix:/run/x.sock".into();
        bad.max_connections = 0;
        assert!(e(vec![bad.clone()]).starts_with("apps[0].max_connections"));
        let mut host_strip = app("x", Some("h"), None);
        host_strip.strip_prefix = true;
        assert!(e(vec![host_strip]).starts_with("apps[0].strip_prefix"));
    }

    #[test]
    fn upstreams_parse() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:8443").unwrap(),
            Upstream::Tcp {
                authority: "127.0.0.1:8443".into()
            }
        );
        assert_eq!(
            parse_upstream("http://localhost/").unwrap(),
            Upstream::Tcp {
                authority: "localhost:80".into()
            }
        );
        assert_eq!(
            parse_upstream("unix:/run/code.sock").unwrap(),
            Upstream::Unix {
                path: "/run/code.sock".into()
            }
        );
    }
}
