//! What gatehouse says about a user to an OpenID Connect client: the ID
//! token's claims, the userinfo answer (the same scope claims), and the
//! back-channel logout token.
//!
//! Scope claims follow the grant's scopes: `profile` gives
//! `preferred_username` and `name`, `email` gives `email` and
//! `email_verified` (only when the user has an email), `groups` gives
//! `groups`. `sub` is the user's stable random subject, never the name.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::UserEntry;
use crate::domain::oidc::{Authorization, acr, amr};

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The claims of an ID token.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: u64,
    pub iat: u64,
    pub auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<String>,
    pub sid: String,
    pub amr: Vec<String>,
    pub acr: String,
    /// The scope claims.
    #[serde(flatten)]
    pub profile: Map<String, Value>,
}

impl IdClaims {
    /// The ID token of `auth` for `who`, issued at `now_ms` for
    /// `lifetime_ms`.
    pub fn new(
        issuer: &str,
        who: &Who<'_>,
        auth: &Authorization,
        nonce: Option<String>,
        now_ms: u64,
        lifetime_ms: u64,
    ) -> IdClaims {
        IdClaims {
            iss: issuer.to_string(),
            sub: who.sub.to_string(),
            aud: auth.client.clone(),
            azp: auth.client.clone(),
            exp: (now_ms + lifetime_ms) / 1000,
            iat: now_ms / 1000,
            auth_time: auth.auth_time_ms / 1000,
            nonce,
            sid: auth.session.to_string(),
            amr: amr(auth.methods).into_iter().map(String::from).collect(),
            acr: acr(auth.methods).to_string(),
            profile: scope_claims(auth, who.entry, who.groups),
        }
    }
}

/// The user a token speaks of: their subject, entry and groups.
pub struct Who<'a> {
    pub sub: &'a str,
    /// `None` for a user no longer configured.
    pub entry: Option<&'a UserEntry>,
    pub groups: &'a [String],
}

/// The claims the grant's scopes give (userinfo adds `sub`).
pub fn scope_claims(
    auth: &Authorization,
    entry: Option<&UserEntry>,
    groups: &[String],
) -> Map<String, Value> {
    let mut m = Map::new();
    if auth.has_scope("profile") {
        m.insert("preferred_username".into(), auth.user.clone().into());
        let name = entry
            .and_then(|e| e.display_name.clone())
            .unwrap_or_else(|| auth.user.clone());
        m.insert("name".into(), name.into());
    }
    if auth.has_scope("email")
        && let Some(e) = entry
        && let Some(email) = &e.email
    {
        m.insert("email".into(), email.clone().into());
        m.insert("email_verified".into(), e.email_verified.into());
    }
    if auth.has_scope("groups") {
        m.insert("groups".into(), groups.to_vec().into());
    }
    m
}

/// The userinfo answer: `sub` and the scope claims.
pub fn userinfo(
    sub: &str,
    auth: &Authorization,
    entry: Option<&UserEntry>,
    groups: &[String],
) -> Value {
    let mut m = scope_claims(auth, entry, groups);
    m.insert("sub".into(), sub.into());
    Value::Object(m)
}

/// The claims of a back-channel logout token (§2.4): no `nonce`, the event,
/// a unique `jti`, and both `sub` and `sid`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogoutClaims {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// Empty (and left out) for a user no longer configured.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub sub: String,
    pub sid: String,
    pub events: Map<String, Value>,
}

impl LogoutClaims {
    /// Lives two minutes: a receiver checks it at once.
    pub fn new(issuer: &str, client: &str, sub: &str, sid: &str, now_ms: u64) -> LogoutClaims {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).expect("the operating system's random source failed");
        let mut events = Map::new();
        events.insert(BACKCHANNEL_EVENT.into(), Value::Object(Map::new()));
        LogoutClaims {
            iss: issuer.to_string(),
            aud: client.to_string(),
            iat: now_ms / 1000,
            exp: now_ms / 1000 + 120,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            sub: sub.to_string(),
            sid: sid.to_string(),
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Method, Methods, PublicId};

    fn auth(scopes: &[&str]) -> Authorization {
        Authorization {
            client: "grafana".into(),
            user: "alice".into(),
            session: "AAAAAAAAAAAAAAAAAAAAAA".parse::<PublicId>().unwrap(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            auth_time_ms: 1_700_000_000_123,
            methods: Methods::PASSWORD.with(Method::Totp),
        }
    }

    fn alice() -> UserEntry {
        UserEntry {
            name: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice A.".into()),
            ..UserEntry::default()
        }
    }

    #[test]
    fn scopes_decide_the_claims() {
        let e = alice();
        let groups = vec!["ops".to_string()];
        let only = scope_claims(&auth(&["openid"]), Some(&e), &groups);
        assert!(only.is_empty());
        let all = scope_claims(
            &auth(&["openid", "profile", "email", "groups"]),
            Some(&e),
            &groups,
        );
        assert_eq!(all["preferred_username"], "alice");
        assert_eq!(all["name"], "Alice A.");
        assert_eq!(all["email"], "alice@example.com");
        assert_eq!(all["email_verified"], false);
        assert_eq!(all["groups"], serde_json::json!(["ops"]));
        let info = userinfo("sub-1", &auth(&["openid"]), Some(&e), &groups);
        assert_eq!(info, serde_json::json!({"sub": "sub-1"}));
    }

    #[test]
    fn an_id_token_carries_the_session_and_how_it_signed_in() {
        let who = Who {
            sub: "sub-1",
            entry: None,
            groups: &[],
        };
        let c = IdClaims::new(
            "https://auth.example.com",
            &who,
            &auth(&["openid"]),
            Some("n-0S6".into()),
            1_700_000_100_000,
            3_600_000,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["aud"], "grafana");
        assert_eq!(v["azp"], "grafana");
        assert_eq!(v["exp"], 1_700_003_700u64);
        assert_eq!(v["auth_time"], 1_700_000_000u64);
        assert_eq!(v["nonce"], "n-0S6");
        assert_eq!(v["sid"], "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(v["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
        assert_eq!(v["acr"], "urn:gatehouse:2fa");
        let l = serde_json::to_value(LogoutClaims::new("i", "grafana", "s", "sid", 5_000)).unwrap();
        assert!(l.get("nonce").is_none());
        assert_eq!(l["events"][BACKCHANNEL_EVENT], serde_json::json!({}));
    }
}
