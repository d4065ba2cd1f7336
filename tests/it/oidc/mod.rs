//! The OpenID Connect provider, from outside: an independent client
//! library (`authlib`, [`authlib`]), hostile requests ([`hostile`]), and
//! key rotation ([`keys`]). Chromium walks are in `browser::oidc`.

mod authlib;
mod flows;
mod hostile;
mod keys;
mod shipped;

use crate::harness::{TestServer, config_text};
use crate::proxy::free_port;

/// The confidential client's secret in these tests.
pub const SECRET: &str = "rp-secret-rp-secret-rp-secret-rp-secret-x";

/// A server whose issuer is its own loopback URL, with a confidential
/// client `rp` (returning to `redirect`, telling `backchannel` of sign-outs,
/// consent asked), a public client `spa`, and `extra` more config.
pub async fn provider(redirect: &str, backchannel: Option<&str>, extra: &str) -> TestServer {
    let port = free_port();
    let hash = gatehouse::config::oidc::hash_secret(SECRET);
    let back = backchannel.map_or(String::new(), |b| {
        format!("backchannel_logout_uri = \"{b}\"\n")
    });
    let clients = format!(
        "[[oidc.clients]]\nid = \"rp\"\nname = \"Test RP\"\nsecret_hash = \"{hash}\"\n\
         redirect_uris = [\"{redirect}\"]\npost_logout_redirect_uris = [\"{redirect}/bye\"]\n{back}\
         scopes = [\"openid\", \"profile\", \"email\", \"groups\", \"offline_access\"]\n\n\
         [[oidc.clients]]\nid = \"spa\"\npublic = true\nredirect_uris = [\"http://127.0.0.1:9/spa\"]\n\
         consent = \"implicit\"\n\n{extra}"
    );
    let text = config_text(
        &format!("bind = \"127.0.0.1:{port}\"\npublic_origin = \"http://127.0.0.1:{port}\""),
        &clients,
    )
    .replacen("bind = \"127.0.0.1:0\"\n", "", 1);
    TestServer::start(&text).await
}
