//! `[[oidc.clients]]`: the apps that sign in through gatehouse's OpenID
//! Connect provider, as written and as checked ([`OidcClient`]). Clients
//! are part of the [`super::Policy`], so a reload swaps them with the users
//! and rules, and a bad file keeps the old ones.
//!
//! # Invariants
//!
//! - A confidential client has a secret hash and a public one has none.
//! - Every redirect URI is absolute, has no fragment, and is https, or http
//!   on a loopback host (RFC 8252 §7.3), or a private-use scheme of a
//!   native app (`com.example.app:/cb`, RFC 8252 §7.1).
//! - A client's scopes include `openid`.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::access::Policy as RulePolicy;
use crate::domain::oidc::{MAX_CLIENT_ID, MAX_SCOPE, MAX_SCOPES, MAX_URI};

/// The scopes gatehouse knows.
pub const KNOWN_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// What a client secret's stored hash starts with.
pub const SECRET_HASH_PREFIX: &str = "sha256:";

/// `[oidc]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// Reloaded with the users (not among the settings a reload reports).
    #[serde(skip_serializing)]
    pub clients: Vec<OidcClientEntry>,
}

/// `consent`: whether the user is asked before a client gets their data.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Asked once per client (and again for new scopes); remembered until
    /// withdrawn on the account page.
    #[default]
    Explicit,
    /// Never asked: the operator vouches for the app.
    Implicit,
}

/// One `[[oidc.clients]]` entry, as written.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcClientEntry {
    /// The `client_id`.
    pub id: String,
    /// Shown on the consent and account pages; default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// `sha256:` and the base64url SHA-256 of the secret, as printed by
    /// `gatehouse oidc new-client`. Confidential clients only.
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// A public client (a single-page or native app): no secret, PKCE required.
    #[serde(default)]
    pub public: bool,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `one_factor` (default) or `two_factor`.
    #[serde(default = "default_policy")]
    pub policy: RulePolicy,
    /// `user:NAME` and `group:NAME`; unset: every user.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    #[serde(default)]
    pub consent: ConsentMode,
    #[serde(default = "default_hour")]
    pub access_token_secs: u64,
    #[serde(default = "default_hour")]
    pub id_token_secs: u64,
    #[serde(default = "default_refresh_days")]
    pub refresh_token_days: u64,
}

impl fmt::Debug for OidcClientEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClientEntry")
            .field("id", &self.id)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "groups"]
        .map(String::from)
        .to_vec()
}

fn default_policy() -> RulePolicy {
    RulePolicy::OneFactor
}

fn default_hour() -> u64 {
    3600
}

fn default_refresh_days() -> u64 {
    30
}

/// A checked client.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcClient {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    secret: Option<[u8; 32]>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<url::Url>,
    /// Includes `openid`; each known, each once.
    pub scopes: Vec<String>,
    /// Whether sign-in needs a second factor.
    pub two_factor: bool,
    users: Vec<String>,
    groups: Vec<String>,
    /// `subjects` was set.
    restricted: bool,
    pub consent: ConsentMode,
    pub access_token_ms: u64,
    pub id_token_ms: u64,
    pub refresh_token_ms: u64,
    /// The web origins of the redirect URIs (`https://app.example`), for
    /// CORS of a browser-based public client.
    pub origins: Vec<String>,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("id", &self.id)
            .field("public", &self.is_public())
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Whether `presented` is this client's secret, in constant time. A
    /// public client has none, so nothing matches.
    pub fn secret_matches(&self, presented: &str) -> bool {
        let Some(want) = &self.secret else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        got.ct_eq(want).into()
    }

    /// Whether `uri` is one of the redirect URIs: exactly, or, for a
    /// registered `http` loopback URI, on any port (RFC 8252 §7.3).
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        uri_registered(&self.redirect_uris, uri)
    }

    /// Whether `uri` is a registered post-logout redirect URI (exactly).
    pub fn post_logout_allowed(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `user` (in `groups`) may use this client.
    pub fn admits(&self, user: &str, groups: &[String]) -> bool {
        !self.restricted
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The hash to store for `secret`: what `secret_hash` holds.
pub fn hash_secret(secret: &str) -> String {
    format!(
        "{SECRET_HASH_PREFIX}{}",
        B64.encode(Sha256::digest(secret.as_bytes()))
    )
}

/// What a page whose form leads to `redirect_uri` must allow in
/// `form-action`: its origin, or its scheme for a native app.
pub fn form_target(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => "'none'".into(),
    }
}

/// Where an authorization request (its query, `q`) returns the browser,
/// as [`form_target`], when its client and `redirect_uri` are registered.
pub fn return_target(policy: &super::Policy, q: &str) -> Option<String> {
    let (mut id, mut uri) = (None, None);
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        match &*k {
            "client_id" => id = Some(v.into_owned()),
            "redirect_uri" => uri = Some(v.into_owned()),
            _ => {}
        }
    }
    let (id, uri) = (id?, uri?);
    policy
        .client(&id)
        .is_some_and(|c| c.redirect_allowed(&uri))
        .then(|| form_target(&uri))
}

fn uri_registered(registered: &[String], uri: &str) -> bool {
    if registered.iter().any(|r| r == uri) {
        return true;
    }
    let Ok(given) = url::Url::parse(uri) else {
        return false;
    };
    if given.scheme() != "http" || !is_loopback(&given) {
        return false;
    }
    registered.iter().any(|r| {
        url::Url::parse(r).is_ok_and(|reg| {
            reg.scheme() == "http"
                && is_loopback(&reg)
                && reg.host_str() == given.host_str()
                && reg.path() == given.path()
                && reg.query() == given.query()
                && given.username().is_empty()
                && given.password().is_none()
                && given.fragment().is_none()
        })
    })
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Checks the clients; errors name the field (`oidc.clients[1].redirect_uris`).
pub(super) fn check<E>(
    entries: &[OidcClientEntry],
    public_origin: Option<&url::Url>,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Vec<OidcClient>, E> {
    if !entries.is_empty() && public_origin.is_none() {
        return Err(invalid(
            "oidc.clients",
            "set public_origin: it is the issuer every client checks".into(),
        ));
    }
    let mut ids = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let err =
            |field: &str, reason: String| invalid(&format!("oidc.clients[{i}].{field}"), reason);
        if e.id.is_empty()
            || e.id.len() > MAX_CLIENT_ID
            || !e.id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(err(
                "id",
                format!("1 to {MAX_CLIENT_ID} printable ASCII characters, no spaces or ':'"),
            ));
        }
        if !ids.insert(e.id.as_str()) {
            return Err(err(
                "id",
                format!("{:?} is used by an earlier client", e.id),
            ));
        }
        let secret = match (&e.secret_hash, e.public) {
            (Some(_), true) => {
                return Err(err("secret_hash", "a public client has no secret".into()));
            }
            (None, false) => {
                return Err(err(
                    "secret_hash",
                    "required unless public = true; make one with `gatehouse oidc new-client`"
                        .into(),
                ));
            }
            (None, true) => None,
            (Some(h), false) => Some(parse_secret_hash(h).ok_or_else(|| {
                err(
                    "secret_hash",
                    format!(
                        "write {SECRET_HASH_PREFIX} and the hash `gatehouse oidc new-client` prints"
                    ),
                )
            })?),
        };
        if e.redirect_uris.is_empty() {
            return Err(err("redirect_uris", "name at least one".into()));
        }
        let mut origins = Vec::new();
        for (j, u) in e.redirect_uris.iter().enumerate() {
            let url = check_uri(u).map_err(|r| err(&format!("redirect_uris[{j}]"), r))?;
            if matches!(url.scheme(), "http" | "https") {
                let o = url.origin().ascii_serialization();
                if !origins.contains(&o) {
                    origins.push(o);
                }
            }
        }
        for (j, u) in e.post_logout_redirect_uris.iter().enumerate() {
            check_uri(u).map_err(|r| err(&format!("post_logout_redirect_uris[{j}]"), r))?;
        }
        let backchannel_logout_uri = match &e.backchannel_logout_uri {
            None => None,
            Some(u) => {
                let url = check_uri(u).map_err(|r| err("backchannel_logout_uri", r))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(err(
                        "backchannel_logout_uri",
                        "must be http or https".into(),
                    ));
                }
                Some(url)
            }
        };
        let mut scopes: Vec<String> = Vec::new();
        for s in &e.scopes {
            if !KNOWN_SCOPES.contains(&s.as_str()) {
                return Err(err(
                    "scopes",
                    format!("{s:?} is not one of {}", KNOWN_SCOPES.join(", ")),
                ));
            }
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            return Err(err("scopes", "must include \"openid\"".into()));
        }
        debug_assert!(scopes.len() <= MAX_SCOPES && scopes.iter().all(|s| s.len() <= MAX_SCOPE));
        let two_factor = match e.policy {
            RulePolicy::OneFactor => false,
            RulePolicy::TwoFactor => true,
            other => {
                return Err(err(
                    "policy",
                    format!("{:?}: use one_factor or two_factor", other.as_str()),
                ));
            }
        };
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        for s in e.subjects.iter().flatten() {
            match s.split_once(':') {
                Some(("user", n)) if !n.is_empty() => users.push(n.to_string()),
                Some(("group", n)) if !n.is_empty() => groups.push(n.to_string()),
                _ => {
                    return Err(err(
                        "subjects",
                        format!("{s:?}: write `user:NAME` or `group:NAME`"),
                    ));
                }
            }
        }
        let secs = |field: &str, v: u64, max: u64| {
            if (60..=max).contains(&v) {
                Ok(v * 1000)
            } else {
                Err(err(field, format!("must be from 60 to {max}")))
            }
        };
        let access_token_ms = secs("access_token_secs", e.access_token_secs, 86_400)?;
        let id_token_ms = secs("id_token_secs", e.id_token_secs, 86_400)?;
        if !(1..=365).contains(&e.refresh_token_days) {
            return Err(err("refresh_token_days", "must be from 1 to 365".into()));
        }
        out.push(OidcClient {
            id: e.id.clone(),
            name: e.name.clone().unwrap_or_else(|| e.id.clone()),
            secret,
            redirect_uris: e.redirect_uris.clone(),
            post_logout_redirect_uris: e.post_logout_redirect_uris.clone(),
            backchannel_logout_uri,
            scopes,
            two_factor,
            users,
            groups,
            restricted: e.subjects.is_some(),
            consent: e.consent,
            access_token_ms,
            id_token_ms,
            refresh_token_ms: e.refresh_token_days * 86_400_000,
            origins,
        });
    }
    Ok(out)
}

fn parse_secret_hash(h: &str) -> Option<[u8; 32]> {
    let b = h.strip_prefix(SECRET_HASH_PREFIX)?;
    let mut out = [0u8; 32];
    match B64.decode_slice(b.as_bytes(), &mut out) {
        Ok(32) => Some(out),
        _ => None,
    }
}

/// A registered URI: absolute, no fragment, https, http on loopback, or a
/// native app's private-use scheme (containing a `.`).
fn check_uri(u: &str) -> Result<url::Url, String> {
    if u.len() > MAX_URI {
        return Err(format!("longer than {MAX_URI} bytes"));
    }
    let url = url::Url::parse(u).map_err(|e| format!("{u:?}: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{u:?}: a redirect URI has no fragment"));
    }
    if url.as_str() != u && url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{u:?}: write it as {:?}", url.as_str()));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{u:?}: http is for loopback addresses only; use https"
        )),
        s if s.contains('.') => Ok(url),
        _ => Err(format!(
            "{u:?}: use https, http on a loopback address, or a reverse-domain scheme (com.example.app:/cb)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> OidcClientEntry {
        toml::from_str(&format!(
            "id = \"grafana\"\nsecret_hash = \"{}\"\nredirect_uris = [\"https://grafana.example.com/login/generic_oauth\", \"http://127.0.0.1/cb\"]\n",
            hash_secret("s3cret")
        ))
        .unwrap()
    }

    fn checked(e: OidcClientEntry) -> Result<OidcClient, String> {
        let origin = url::Url::parse("https://auth.example.com").unwrap();
        check(&[e], Some(&origin), |f, r| format!("{f}: {r}")).map(|mut v| v.remove(0))
    }

    #[test]
    fn redirect_uris_match_exactly_except_a_loopback_port() {
        let c = checked(entry()).unwrap();
        assert!(c.redirect_allowed("https://grafana.example.com/login/generic_oauth"));
        for bad in [
            "https://grafana.example.com/login/generic_oauth/",
            "https://grafana.example.com/login/generic_oauth?x=1",
            "https://grafana.example.com/login/generic_oauth#x",
            "https://grafana.example.com/login/generic_oaut",
            "https://grafana.example.com/login/%67eneric_oauth",
            "https://GRAFANA.example.com/login/generic_oauth",
            "https://grafana.example.com.evil.test/login/generic_oauth",
            "https://grafana.example.com:443/login/generic_oauth/../generic_oauth",
            "http://127.0.0.1:8080/cb/",
            "http://user@127.0.0.1:8080/cb",
            "https://127.0.0.1:8080/cb",
            "http://127.0.0.2:8080/cb",
        ] {
            assert!(!c.redirect_allowed(bad), "{bad} was let through");
        }
        assert!(c.redirect_allowed("http://127.0.0.1:8080/cb"));
        assert!(c.redirect_allowed("http://127.0.0.1:51234/cb"));
    }

    #[test]
    fn the_secret_is_checked_against_its_hash() {
        let c = checked(entry()).unwrap();
        assert!(c.secret_matches("s3cret"));
        assert!(!c.secret_matches("s3cre"));
        assert!(!c.secret_matches(""));
        assert!(!format!("{c:?}").contains(&hash_secret("s3cret")[7..]));
    }

    #[test]
    fn bad_clients_are_refused_naming_the_field() {
        type Case = (fn(&mut OidcClientEntry), &'static str);
        let cases: Vec<Case> = vec![
            (|e| e.secret_hash = None, "secret_hash"),
            (|e| e.public = true, "secret_hash"),
            (|e| e.secret_hash = Some("plain".into()), "secret_hash"),
            (|e| e.redirect_uris = vec![], "redirect_uris"),
            (
                |e| e.redirect_uris = vec!["http://grafana.example.com/cb".into()],
                "redirect_uris[0]",
            ),
            (
                |e| e.redirect_uris = vec!["https://x.example/cb#frag".into()],
                "redirect_uris[0]",
            ),
            (
                |e| e.redirect_uris = vec!["javascript:alert(1)".into()],
                "redirect_uris[0]",
            ),
            (|e| e.scopes = vec!["profile".into()], "scopes"),
            (
                |e| e.scopes = vec!["openid".into(), "admin".into()],
                "scopes",
            ),
            (|e| e.policy = RulePolicy::Bypass, "policy"),
            (|e| e.subjects = Some(vec!["ops".into()]), "subjects"),
            (|e| e.access_token_secs = 0, "access_token_secs"),
            (|e| e.refresh_token_days = 0, "refresh_token_days"),
            (|e| e.id = "a b".into(), "id"),
        ];
        for (f, field) in cases {
            let mut e = entry();
            f(&mut e);
            let err = checked(e).unwrap_err();
            assert!(
                err.starts_with(&format!("oidc.clients[0].{field}:")),
                "{field}: {err}"
            );
        }
        let origin = url::Url::parse("https://auth.example.com").unwrap();
        let twice = check(&[entry(), entry()], Some(&origin), |f, r| {
            format!("{f}: {r}")
        });
        assert!(twice.unwrap_err().starts_with("oidc.clients[1].id"));
        let no_issuer = check(&[entry()], None, |f, r| format!("{f}: {r}"));
        assert!(no_issuer.unwrap_err().contains("public_origin"));
    }

    #[test]
    fn subjects_decide_who_may_use_a_client() {
        let mut e = entry();
        e.subjects = Some(vec!["user:alice".into(), "group:ops".into()]);
        let c = checked(e).unwrap();
        assert!(c.admits("alice", &[]));
        assert!(c.admits("bob", &["ops".into()]));
        assert!(!c.admits("carol", &["dev".into()]));
        assert!(checked(entry()).unwrap().admits("anyone", &[]));
    }

    #[test]
    fn a_native_apps_private_scheme_is_allowed() {
        let mut e = entry();
        e.public = true;
        e.secret_hash = None;
        e.redirect_uris = vec!["com.example.app:/oauth2redirect".into()];
        let c = checked(e).unwrap();
        assert!(c.is_public() && !c.secret_matches(""));
        assert!(c.redirect_allowed("com.example.app:/oauth2redirect"));
        assert!(c.origins.is_empty());
    }
}
