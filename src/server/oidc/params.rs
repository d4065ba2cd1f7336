//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2):
//! read from the query or the form, checked into an [`AuthRequest`], and
//! written back into the `rd` that brings the browser back after sign-in.
//!
//! Until the client and its `redirect_uri` are known to be valid, an error
//! is a page of ours ([`AuthError::Page`]); only after that may an error go
//! to the `redirect_uri` ([`AuthError::Redirect`]), so that the endpoint is
//! never an open redirect.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Policy;
use crate::config::oidc::{KNOWN_SCOPES, OidcClient};
use crate::domain::oidc::{ACR_2FA, MAX_NONCE, MAX_SCOPES, MAX_URI};
use crate::server::signin::redirect::MAX_RD;

/// Longest `state`.
pub const MAX_STATE: usize = 1024;

/// The path of the authorization endpoint.
pub const AUTHORIZE_PATH: &str = "/oidc/authorize";

/// The parameters as sent. Unknown parameters are ignored (RFC 6749
/// §3.1); one sent twice makes the request unreadable.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawAuthRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    /// Set by gatehouse when it sends the browser to sign in again
    /// (`prompt=login`, `max_age`): the session must have been signed in at
    /// or after this time (ms). Only ever asks for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_after: Option<String>,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: Arc<OidcClient>,
    pub redirect_uri: String,
    /// Requested scopes the client may have, each once, `openid` first.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    /// Seconds.
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    /// The client's policy or `acr_values` ask for two factors.
    pub two_factor: bool,
    pub auth_after_ms: Option<u64>,
    /// The request as sent, to send it again after sign-in.
    pub raw: RawAuthRequest,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Shown on our own error page (the client or the URI is not known).
    Page(String),
    /// Sent to the client's `redirect_uri` (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// Reads the parameters of a query or form body.
pub fn read(encoded: &str) -> Result<RawAuthRequest, AuthError> {
    serde_urlencoded::from_str(encoded).map_err(|_| {
        AuthError::Page(
            "The sign-in request from the app could not be read (a parameter is malformed or sent twice)."
                .into(),
        )
    })
}

fn too_long(v: &Option<String>, max: usize) -> bool {
    v.as_ref().is_some_and(|s| s.len() > max)
}

impl RawAuthRequest {
    /// Checks the request against the clients of `policy`.
    pub fn check(self, policy: &Policy) -> Result<AuthRequest, AuthError> {
        let page = |m: &str| Err(AuthError::Page(m.to_string()));
        let Some(id) = self.client_id.as_deref() else {
            return page("The app did not say which app it is (client_id is missing).");
        };
        let Some(client) = policy.client(id).cloned() else {
            return page(
                "The app is not registered with this sign-in service (unknown client_id).",
            );
        };
        let Some(redirect_uri) = self.redirect_uri.clone() else {
            return page("The app did not say where to return (redirect_uri is missing).");
        };
        if redirect_uri.len() > MAX_URI || !client.redirect_allowed(&redirect_uri) {
            return page(
                "The app asked to return to an address it has not registered (redirect_uri does not match).",
            );
        }
        let state = self.state.clone();
        let fail = |error: &'static str, description: &str| {
            Err(AuthError::Redirect {
                redirect_uri: redirect_uri.clone(),
                error,
                description: description.to_string(),
                state: state.clone().filter(|s| s.len() <= MAX_STATE),
            })
        };
        if too_long(&self.state, MAX_STATE)
            || too_long(&self.nonce, MAX_NONCE)
            || too_long(&self.scope, 1024)
            || too_long(&self.login_hint, crate::domain::MAX_USER)
            || too_long(&self.acr_values, 1024)
            || too_long(&self.prompt, 64)
            || too_long(&self.max_age, 20)
        {
            return fail("invalid_request", "a parameter is too long");
        }
        // Room for the `auth_after` a fresh sign-in adds to the `rd`.
        if self.rd().len() > MAX_RD - 64 {
            return fail("invalid_request", "the request is too long");
        }
        match self.response_type.as_deref() {
            Some("code") => {}
            None => return fail("invalid_request", "response_type is missing"),
            Some(_) => {
                return fail(
                    "unsupported_response_type",
                    "only the authorization code flow (response_type=code) is supported",
                );
            }
        }
        if !matches!(self.response_mode.as_deref(), None | Some("query")) {
            return fail("invalid_request", "only response_mode=query is supported");
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in self
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !KNOWN_SCOPES.contains(&s) {
                return fail("invalid_scope", &format!("unknown scope {s:?}"));
            }
            if client.allows_scope(s) && !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            return fail("invalid_scope", "the openid scope is required");
        }
        scopes.sort_by_key(|s| s != "openid");
        debug_assert!(scopes.len() <= MAX_SCOPES);
        let code_challenge = match (
            self.code_challenge.as_deref(),
            self.code_challenge_method.as_deref(),
        ) {
            (None, None) if client.is_public() => {
                return fail(
                    "invalid_request",
                    "a public client must use PKCE (code_challenge)",
                );
            }
            (None, None) => None,
            (None, Some(_)) => return fail("invalid_request", "code_challenge is missing"),
            (Some(_), Some("plain")) | (Some(_), None) => {
                return fail(
                    "invalid_request",
                    "code_challenge_method must be S256; plain is refused",
                );
            }
            (Some(c), Some("S256")) => {
                if !(43..=128).contains(&c.len())
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    return fail("invalid_request", "code_challenge is not a S256 challenge");
                }
                Some(c.to_string())
            }
            (Some(_), Some(_)) => {
                return fail("invalid_request", "code_challenge_method must be S256");
            }
        };
        let prompts: Vec<&str> = self
            .prompt
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        if prompts
            .iter()
            .any(|p| !matches!(*p, "none" | "login" | "consent"))
        {
            return fail("invalid_request", "prompt may be none, login or consent");
        }
        let prompt_none = prompts.contains(&"none");
        if prompt_none && prompts.len() > 1 {
            return fail("invalid_request", "prompt=none goes alone");
        }
        let max_age = match self.max_age.as_deref() {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => return fail("invalid_request", "max_age is not a number of seconds"),
            },
        };
        let auth_after_ms = self.auth_after.as_deref().and_then(|v| v.parse().ok());
        let two_factor = client.two_factor
            || self
                .acr_values
                .as_deref()
                .is_some_and(|a| a.split(' ').any(|v| v == ACR_2FA));
        Ok(AuthRequest {
            redirect_uri: redirect_uri.clone(),
            scopes,
            state: self.state.clone(),
            nonce: self.nonce.clone(),
            code_challenge,
            prompt_none,
            prompt_login: prompts.contains(&"login"),
            prompt_consent: prompts.contains(&"consent"),
            max_age,
            login_hint: self.login_hint.clone(),
            two_factor,
            auth_after_ms,
            client,
            raw: self,
        })
    }

    /// This request as a path of the authorization endpoint.
    pub fn rd(&self) -> String {
        let q = serde_urlencoded::to_string(self).unwrap_or_default();
        format!("{AUTHORIZE_PATH}?{q}")
    }
}

impl AuthRequest {
    /// The path that runs this request again after a fresh sign-in: no
    /// `prompt=login` (it is done), and a session signed in from `now_ms`.
    pub fn again_after_sign_in(&self, now_ms: u64) -> String {
        let mut raw = self.raw.clone();
        raw.prompt = raw.prompt.map(|p| {
            p.split(' ')
                .filter(|x| *x != "login")
                .collect::<Vec<_>>()
                .join(" ")
        });
        raw.prompt = raw.prompt.filter(|p| !p.is_empty());
        raw.auth_after = Some(now_ms.to_string());
        raw.rd()
    }

    /// This request's path, as it came.
    pub fn rd(&self) -> String {
        self.raw.rd()
    }

    /// The redirect of an error after the client and URI were checked.
    pub fn error(&self, error: &'static str, description: &str) -> AuthError {
        AuthError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            error,
            description: description.to_string(),
            state: self.state.clone(),
        }
    }
}

/// `redirect_uri` with `params` added to its query (and `iss`, RFC 9207).
pub fn redirect_with(redirect_uri: &str, issuer: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_string();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", issuer);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Arc<Policy> {
        let text = format!(
            "public_origin = \"https://auth.example.com\"\n[[users]]\nname = \"alice\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$4fXXG0spB92WPB1NitT8/OH0VKI\"\n\
             [[oidc.clients]]\nid = \"app\"\nsecret_hash = \"{}\"\nredirect_uris = [\"https://app.example.com/cb\"]\nscopes = [\"openid\", \"profile\"]\n\
             [[oidc.clients]]\nid = \"spa\"\npublic = true\nredirect_uris = [\"https://spa.example.com/cb\"]\n",
            crate::config::oidc::hash_secret("x")
        );
        let path = std::path::PathBuf::from("/nonexistent/gatehouse.toml");
        crate::config::Config::load_text(&crate::config::Overrides::default(), path, &text)
            .unwrap()
            .policy()
            .clone()
    }

    fn ask(q: &str) -> Result<AuthRequest, AuthError> {
        read(q)?.check(&policy())
    }

    fn redirected(r: Result<AuthRequest, AuthError>) -> &'static str {
        match r {
            Err(AuthError::Redirect { error, .. }) => error,
            other => panic!("not a redirect: {other:?}"),
        }
    }

    const OK: &str = "client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid+profile+email&state=s1";

    #[test]
    fn a_good_request_keeps_only_the_clients_scopes() {
        let r = ask(OK).unwrap();
        assert_eq!(r.scopes, ["openid", "profile"]);
        assert_eq!(r.state.as_deref(), Some("s1"));
        assert!(r.code_challenge.is_none());
        assert!(r.rd().starts_with("/oidc/authorize?client_id=app&"));
    }

    #[test]
    fn an_unknown_client_or_uri_is_a_page_never_a_redirect() {
        for q in [
            "redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid",
            "client_id=nope&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid",
            "client_id=app&response_type=code&scope=openid",
            "client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%2F&response_type=code",
            "client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%3F&response_type=code",
            "client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2F%2563b&response_type=code",
            "client_id=app&redirect_uri=https%3A%2F%2Fevil.test%2Fcb&response_type=code",
            "client_id=app&client_id=spa&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        ] {
            assert!(matches!(ask(q), Err(AuthError::Page(_))), "{q}");
        }
    }

    #[test]
    fn bad_parameters_go_back_to_the_app_as_errors() {
        assert_eq!(
            redirected(ask(&OK.replace("code", "token"))),
            "unsupported_response_type"
        );
        assert_eq!(redirected(ask(&OK.replace("openid+", ""))), "invalid_scope");
        assert_eq!(
            redirected(ask(&OK.replace("email", "email+admin"))),
            "invalid_scope"
        );
        assert_eq!(
            redirected(ask(&format!(
                "{OK}&code_challenge=abc&code_challenge_method=plain"
            ))),
            "invalid_request"
        );
        assert_eq!(
            redirected(ask(&format!("{OK}&prompt=none+login"))),
            "invalid_request"
        );
        assert_eq!(
            redirected(ask(&format!("{OK}&nonce={}", "n".repeat(600)))),
            "invalid_request"
        );
        assert_eq!(
            redirected(ask(&format!("{OK}&max_age=soon"))),
            "invalid_request"
        );
        let spa = "client_id=spa&redirect_uri=https%3A%2F%2Fspa.example.com%2Fcb&response_type=code&scope=openid";
        assert_eq!(redirected(ask(spa)), "invalid_request");
        let c = crate::domain::oidc::pkce_s256("verifier-verifier-verifier-verifier-verifier");
        let r = ask(&format!(
            "{spa}&code_challenge={c}&code_challenge_method=S256"
        ))
        .unwrap();
        assert_eq!(r.code_challenge.as_deref(), Some(c.as_str()));
    }

    #[test]
    fn sign_in_again_drops_prompt_login_and_asks_for_a_newer_session() {
        let r = ask(&format!("{OK}&prompt=login+consent")).unwrap();
        assert!(r.prompt_login && r.prompt_consent);
        let again = read(r.again_after_sign_in(5_000).split_once('?').unwrap().1)
            .unwrap()
            .check(&policy())
            .unwrap();
        assert!(!again.prompt_login && again.prompt_consent);
        assert_eq!(again.auth_after_ms, Some(5_000));
        assert_eq!(
            redirect_with(
                "https://app.example.com/cb?x=1",
                "https://auth.example.com",
                &[("code", "c d")]
            ),
            "https://app.example.com/cb?x=1&code=c+d&iss=https%3A%2F%2Fauth.example.com"
        );
    }
}
