//! `gatehouse oidc`: OpenID Connect clients and signing keys.
//!
//! - `new-client NAME` needs no config and no server: it prints a new
//!   256-bit secret once, on a line of its own, then the `[[oidc.clients]]`
//!   block to paste, which holds only the secret's hash.
//! - `rotate-key` asks the running server (admin socket) to sign with a new
//!   key, or changes the store itself when no server runs.

use anyhow::Context;
use base64::Engine as _;
use clap::Subcommand;
use gatehouse::config::Config;
use gatehouse::config::oidc::hash_secret;
use gatehouse::server::ops::admin;

#[derive(Subcommand)]
pub(crate) enum OidcCommand {
    /// Print a new client's secret (once) and the config block to paste.
    NewClient {
        /// The client id (what the app calls its client ID).
        name: String,
        /// A public client (a single-page or native app): no secret, PKCE.
        #[arg(long)]
        public: bool,
        /// A redirect URI to fill in (more can be added to the block).
        #[arg(long)]
        redirect_uri: Option<String>,
    },
    /// Start signing with a new key; the old one stays published for a day.
    RotateKey,
}

/// `gatehouse oidc new-client`: no config, no server.
pub(crate) fn new_client(
    name: &str,
    public: bool,
    redirect_uri: Option<&str>,
) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'"')
    {
        anyhow::bail!("the client id must be printable ASCII without spaces, ':' or '\"'");
    }
    let uri = redirect_uri.unwrap_or("https://app.example.com/callback");
    let mut block = format!("[[oidc.clients]]\nid = \"{name}\"\nname = \"{name}\"\n");
    if public {
        block.push_str("public = true\n");
        println!("A public client has no secret: it proves itself with PKCE.\n");
    } else {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).context("the operating system's random source failed")?;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        println!("Client secret (shown once; give it to the app):\n{secret}\n");
        block.push_str(&format!("secret_hash = \"{}\"\n", hash_secret(&secret)));
    }
    block.push_str(&format!(
        "redirect_uris = [\"{}\"]\nscopes = [\"openid\", \"profile\", \"email\", \"groups\"]\nconsent = \"explicit\"\n",
        uri.replace('"', "%22")
    ));
    println!("Add to the config file, then reload the server (SIGHUP):\n\n{block}");
    Ok(())
}

/// `gatehouse oidc rotate-key`.
pub(crate) fn rotate_key(config: &Config) -> anyhow::Result<()> {
    if let Some(reply) = admin::request(&config.data_dir, "POST", "/oidc/rotate-key")? {
        print!("{}", reply.into_result()?);
        return Ok(());
    }
    // No server of this node runs: the store is changed directly.
    let rt = crate::store::runtime()?;
    let (backend, task) = crate::store::open(&rt, &config.backend_config())?;
    let secrets = gatehouse::identity::secret_box::SecretBox::open_or_create(&config.data_dir)?;
    let provider = gatehouse::oidc::provider::Provider::new(config);
    let done = rt.block_on(provider.rotate(&backend, &secrets));
    rt.block_on(task.shutdown()).map_err(anyhow::Error::msg)?;
    backend.close()?;
    println!("signing with key {}", done?);
    Ok(())
}
