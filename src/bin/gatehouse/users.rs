//! `gatehouse users` and `hash-password`: editing the users of the config
//! file (then a reload through the admin socket), acting on a user's
//! credentials in the store, and reading a password.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use clap::Subcommand;
use gatehouse::config::{Config, Overrides};
use gatehouse::server::guard::MAX_PASSWORD;
use gatehouse::server::ops::admin;
use gatehouse::store::{TokenStore, now_ms};

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user to the config file: asks for the password twice on a
    /// terminal (else reads one line from standard input), writes its
    /// argon2id hash with the file's comments kept, and reloads a running
    /// server through its admin socket. An existing name is an error.
    Add {
        /// The user's name (what they type to sign in).
        name: String,
        /// Groups, comma-separated, for access rules and `Remote-Groups`.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Sent to apps as `Remote-Email`.
        #[arg(long)]
        email: Option<String>,
        /// Sent to apps as `Remote-Name`.
        #[arg(long)]
        display_name: Option<String>,
        /// May read the audit trail and manage others' sessions (also the
        /// group `admin`).
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user from the config file and reload a running server,
    /// which ends their sessions and access tokens.
    Remove {
        /// The user's name.
        name: String,
    },
    /// Set a user's password (asked as for `add`) and reload a running
    /// server, which ends their sessions and access tokens.
    Passwd {
        /// The user's name.
        name: String,
    },
    /// Remove every second factor of a user (TOTP, passkeys, recovery
    /// codes), for someone who lost theirs: through the running server's
    /// admin socket, or directly in the database when no server runs.
    /// Audited as `mfa.reset`.
    ResetSecondFactor {
        /// The user's name.
        name: String,
    },
    /// Revoke every access token of a user: through the running server's
    /// admin socket, or directly in the database when no server runs.
    RevokeTokens {
        /// The user whose tokens end.
        name: String,
    },
}

/// An edit of the users in the config file.
pub(crate) enum Edit {
    Add {
        name: String,
        groups: Vec<String>,
        email: Option<String>,
        display_name: Option<String>,
        admin: bool,
    },
    Remove(String),
    Passwd(String),
}

/// An action on a user's credentials in the database.
pub(crate) enum Action {
    ResetSecondFactor,
    RevokeTokens,
}

/// `gatehouse users add|remove|passwd`: edits the config file (found as
/// `serve` finds it), checks the result as the server will read it, writes
/// it in one rename, then has a running server reload it.
pub(crate) fn edit_users(ov: &Overrides, edit: Edit) -> anyhow::Result<()> {
    use gatehouse::config::{UserEntry, add_user, remove_user, set_password, write_config};
    // The file as it is must load: an edit never hides an older mistake.
    let config = Config::load(ov)?;
    let (path, text) = Config::read(ov)?;
    let shown = path.display().to_string();
    let policy = config.policy();
    let known = |name: &str| -> anyhow::Result<()> {
        if policy.user(name).is_none() {
            bail!("there is no user named {name:?} in {shown}");
        }
        Ok(())
    };
    let hash = || -> anyhow::Result<String> {
        let password = read_password(true)?;
        Ok(gatehouse::server::password::hash_password(
            &password,
            &config.argon2,
        )?)
    };
    let (edited, done) = match edit {
        Edit::Add {
            name,
            groups,
            email,
            display_name,
            admin,
        } => {
            if policy.user(&name).is_some() {
                bail!(
                    "a user named {name:?} already exists in {shown}; `gatehouse users passwd {name}` sets a new password"
                );
            }
            let user = UserEntry {
                name: name.clone(),
                password_hash: hash()?,
                admin,
                groups,
                email,
                display_name,
                require_second_factor: None,
                email_verified: false,
            };
            (
                add_user(&text, &user)?,
                format!("added user {name} to {shown}"),
            )
        }
        Edit::Remove(name) => {
            known(&name)?;
            let last_admin = policy.user(&name).is_some_and(|u| u.admin)
                && policy.users().values().filter(|u| u.admin).count() == 1;
            if last_admin {
                eprintln!(
                    "warning: {name} is the last admin; nobody will be able to read the audit trail over HTTP"
                );
            }
            (
                remove_user(&text, &name)?,
                format!(
                    "removed user {name} from {shown}; a running server ends their sessions and access tokens"
                ),
            )
        }
        Edit::Passwd(name) => {
            known(&name)?;
            (
                set_password(&text, &name, &hash()?)?,
                format!(
                    "set a new password for {name} in {shown}; a running server ends their sessions and access tokens"
                ),
            )
        }
    };
    // Checked as the server will read it, before anything is written.
    let checked = Config::load_text(ov, path.clone(), &edited)
        .context("the edited file would not load; nothing was written")?;
    write_config(&path, &edited)?;
    println!("{done}");
    let socket = checked.data_dir.join(admin::SOCKET_FILE);
    match admin::request(&checked.data_dir, "POST", "/config/reload") {
        Ok(Some(reply)) => {
            let said = reply
                .into_result()
                .context("the file is changed, but the running server did not reload it")?;
            print!("{said}");
            // A server started with another --config reads another file.
            let ours = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let theirs = said
                .strip_prefix("reloaded ")
                .and_then(|rest| rest.lines().next())
                .and_then(|first| first.rsplit_once(": "))
                .map(|(file, _)| std::path::PathBuf::from(file));
            if let Some(theirs) = theirs.filter(|t| *t != ours) {
                bail!(
                    "the running server reads {}, not {}: the change does not apply to it; \
                     run this again with --config {}",
                    theirs.display(),
                    ours.display(),
                    theirs.display()
                );
            }
        }
        Ok(None) => println!(
            "no server answers on {}: the change applies when it starts",
            socket.display()
        ),
        Err(e) => bail!(
            "the file is changed, but the running server could not be asked to reload it ({}: {e}); send it SIGHUP",
            socket.display()
        ),
    }
    Ok(())
}

pub(crate) fn users(config: &Config, action: Action, name: &str) -> anyhow::Result<()> {
    let path = match action {
        Action::ResetSecondFactor => "/users/reset-second-factor",
        Action::RevokeTokens => "/users/revoke-tokens",
    };
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user", name)
        .finish();
    if let Some(reply) = admin::request(&config.data_dir, "POST", &format!("{path}?{q}"))? {
        print!("{}", reply.into_result()?);
        return Ok(());
    }
    // No server of this node runs: the store is changed directly.
    let rt = crate::store::runtime()?;
    let (backend, task) = crate::store::open(&rt, &config.backend_config())?;
    let actor = std::env::var("USER").ok();
    let done = match action {
        Action::ResetSecondFactor => rt.block_on(gatehouse::server::factors::reset::reset_factors(
            &backend,
            name,
            actor.as_deref().unwrap_or("command line"),
        )),
        Action::RevokeTokens => {
            let how = gatehouse::store::Revocation {
                actor,
                ..gatehouse::store::Revocation::new(
                    gatehouse::store::RevokeReason::ByAdmin,
                    now_ms(),
                )
            };
            rt.block_on(backend.revoke_user_tokens(name, how))
                .map(|ids| admin::revoked_tokens_line(name, ids.len()))
        }
    };
    rt.block_on(task.shutdown()).map_err(anyhow::Error::msg)?;
    backend.close()?;
    print!("{}", done?);
    Ok(())
}

/// Passwords shorter than this get a warning from `hash-password` (ASVS
/// 2.1.1 asks for at least 12 characters).
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;

/// A password: prompted twice without echo on a terminal, else read from
/// standard input: one line when `one_line`, else all of it (a trailing
/// line ending dropped either way). Never cut: longer than the login form
/// accepts is an error.
pub(crate) fn read_password(one_line: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else if one_line {
        use std::io::BufRead;
        let mut line = Vec::new();
        stdin
            .lock()
            .take(MAX_PASSWORD as u64 + 3)
            .read_until(b'\n', &mut line)
            .context("reading the password from stdin")?;
        let line = String::from_utf8(line).context("the password is not UTF-8")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let mut s = String::new();
        // One byte past the limit (plus a line ending) is enough to tell
        // "too long" from "fits": never truncate silently.
        stdin
            .lock()
            .take(MAX_PASSWORD as u64 + 3)
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        bail!("empty password");
    }
    // The login form refuses longer passwords: a hash of one could never be used.
    if pw.len() > MAX_PASSWORD {
        bail!("password longer than {MAX_PASSWORD} bytes");
    }
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        eprintln!(
            "warning: a password shorter than {MIN_PASSWORD_CHARS} characters is easy to guess"
        );
    }
    Ok(pw)
}
