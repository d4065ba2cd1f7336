//! The WebAuthn relying party a request's passkey ceremony runs for: the
//! public origin's, built once at start and held in the shared state, or
//! one made for the host the browser is on, when that host is an app's
//! own (`[[apps]] host`) or a `localhost` name.
//!
//! A browser runs a ceremony only for a relying party id that is its
//! page's host (or a suffix of it), and gatehouse accepts an answer only
//! from the origin it expects. So on an app's host, where gatehouse's
//! pages live under the reserved prefix, the party must be that host's.
//! The host comes from `Host`, which the client writes: it is believed
//! only when the configuration names it (an app's host) or when it is a
//! `localhost` name, which browsers resolve to this machine. The port is
//! taken as the browser names it: cookies do not separate ports either, so
//! another port of the same host is already inside the session cookie's
//! reach, and a port mapping in front may move the listener's.

use std::sync::Arc;

use crate::config::Config;
use crate::identity::webauthn::{Passkeys, WebAuthnError};

/// The relying party of the public origin, built once at start: `None`
/// without a public origin, an error when the origin cannot use passkeys.
pub type Relying = Option<Result<Arc<Passkeys>, WebAuthnError>>;

/// [`Relying`] for `config`.
pub fn relying_party(config: &Config) -> Relying {
    let origin = config.public_origin.as_ref()?;
    let built = Passkeys::new(origin).map(Arc::new);
    if let Err(e) = &built {
        tracing::warn!(origin = %origin, "passkeys are off: {e}");
    }
    Some(built)
}

/// Why a request has no relying party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoParty {
    /// The host is one passkeys could serve, but not as configured (plain
    /// http off localhost, an origin the library refuses).
    Unusable(WebAuthnError),
    /// The host is neither the public origin's, an app's, nor localhost.
    Elsewhere,
}

/// The relying party for a request whose `Host` is `host` (as sent:
/// `name`, `name:port`), given the public origin's `relying`:
///
/// - an app's host (not the public origin's): a party for that host, on
///   https when browsers reach gatehouse over https (`[tls]`, or an https
///   public origin with a TLS proxy in front);
/// - otherwise the public origin's, when there is one;
/// - otherwise a `localhost` or `*.localhost` name, a secure context even
///   over plain http.
pub fn party_for(config: &Config, relying: &Relying, host: &str) -> Result<Arc<Passkeys>, NoParty> {
    let scheme = if config.https() { "https" } else { "http" };
    let Ok(name) = crate::access::normalize::host(host.as_bytes()) else {
        return public(relying);
    };
    let public_host = config
        .public_origin
        .as_ref()
        .and_then(|u| u.host_str())
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    let apps = config.proxy.claims_host(&name) && public_host.as_deref() != Some(&*name);
    let local = name == "localhost" || name.ends_with(".localhost");
    if apps || (local && relying.is_none()) {
        let origin = match port_of(host) {
            Some(port) => format!("{scheme}://{name}:{port}"),
            None => format!("{scheme}://{name}"),
        };
        let url = url::Url::parse(&origin)
            .map_err(|_| NoParty::Unusable(WebAuthnError::Configuration))?;
        return Passkeys::new(&url).map(Arc::new).map_err(NoParty::Unusable);
    }
    public(relying)
}

/// The public origin's party, if there is one.
fn public(relying: &Relying) -> Result<Arc<Passkeys>, NoParty> {
    match relying {
        Some(built) => built.clone().map_err(NoParty::Unusable),
        None => Err(NoParty::Elsewhere),
    }
}

/// The port of a `Host` value that [`crate::access::normalize::host`]
/// accepted: the digits after its last `:` outside brackets.
fn port_of(host: &str) -> Option<&str> {
    let after = host.rfind(']').map_or(host, |i| &host[i + 1..]);
    after.rsplit_once(':').map(|(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_file;

    fn config(text: &str) -> Config {
        let file = parse_file(std::path::Path::new("g.toml"), text).unwrap();
        Config::from_file("g.toml".into(), "d".into(), file).unwrap()
    }

    const APPS: &str = "[[apps]]\nname = \"code\"\nhost = \"code.example.com\"\nupstream = \"http://127.0.0.1:9\"\n\n\
         [[apps]]\nname = \"notes\"\nhost = \"notes.localhost\"\nupstream = \"http://127.0.0.1:9\"\n";
    const TLS: &str = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";

    /// The party's id and the origin it accepts answers from, or why none.
    fn party(text: &str, host: &str) -> Result<(String, String), NoParty> {
        let c = config(text);
        let relying = relying_party(&c);
        party_for(&c, &relying, host).map(|p| (p.rp_id().to_string(), p.origin().to_string()))
    }

    fn ok(id: &str, origin: &str) -> Result<(String, String), NoParty> {
        Ok((id.to_string(), origin.to_string()))
    }

    #[test]
    fn an_apps_own_host_over_tls_is_its_own_party() {
        let text = format!("{TLS}{APPS}");
        assert_eq!(
            party(&text, "Code.Example.com:8443"),
            ok("code.example.com", "https://code.example.com:8443")
        );
        assert_eq!(
            party(&text, "code.example.com"),
            ok("code.example.com", "https://code.example.com")
        );
        // The default port is the origin without one, as browsers write it.
        assert_eq!(
            party(&text, "code.example.com:443"),
            ok("code.example.com", "https://code.example.com")
        );
        // A host no app claims is believed from nobody.
        assert_eq!(party(&text, "evil.example"), Err(NoParty::Elsewhere));
        assert_eq!(
            party(&text, "sub.code.example.com"),
            Err(NoParty::Elsewhere)
        );
        assert_eq!(party(&text, "code.example.com:x"), Err(NoParty::Elsewhere));
        assert_eq!(party(&text, ""), Err(NoParty::Elsewhere));
        // localhost over TLS: its https origin.
        assert_eq!(
            party(&text, "localhost:8443"),
            ok("localhost", "https://localhost:8443")
        );
    }

    #[test]
    fn beside_a_public_origin_an_app_host_keeps_its_own_party() {
        let text = format!("public_origin = \"https://auth.example.com\"\n{APPS}");
        assert_eq!(
            party(&text, "code.example.com"),
            ok("code.example.com", "https://code.example.com")
        );
        // Every other host gets the public origin's, as before.
        for host in ["auth.example.com", "evil.example", "localhost:8080"] {
            assert_eq!(
                party(&text, host),
                ok("auth.example.com", "https://auth.example.com"),
                "{host}"
            );
        }
        // An app on the public origin's own host is the public origin.
        let same = "public_origin = \"https://code.example.com:8443\"\n\
             [[apps]]\nname = \"code\"\nhost = \"code.example.com\"\nupstream = \"http://127.0.0.1:9\"\n";
        assert_eq!(
            party(same, "code.example.com:9999"),
            ok("code.example.com", "https://code.example.com:8443")
        );
    }

    #[test]
    fn plain_http_serves_only_localhost_names() {
        assert_eq!(
            party(APPS, "code.example.com"),
            Err(NoParty::Unusable(WebAuthnError::InsecureOrigin))
        );
        assert_eq!(
            party(APPS, "notes.localhost:8080"),
            ok("notes.localhost", "http://notes.localhost:8080")
        );
        assert_eq!(
            party("", "localhost:8080"),
            ok("localhost", "http://localhost:8080")
        );
        assert_eq!(party("", "example.com"), Err(NoParty::Elsewhere));
        assert_eq!(party("", "127.0.0.1:8080"), Err(NoParty::Elsewhere));
    }
}
