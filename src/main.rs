//! `gatehouse`: the server and its admin subcommands.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gatehouse::config::{Argon2Settings, Config, LogFormat, Overrides};
use gatehouse::server::Server;
use gatehouse::server::guard::MAX_PASSWORD;
use gatehouse::server::ops::admin;
use gatehouse::store::{Backend, BackendConfig, BanStore, BanSubject, TokenStore, now_ms};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Self-hosted login, session and audit server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the config and the data live (shared by the subcommands). Global:
/// accepted before or after a nested subcommand (`access check --config F`).
#[derive(clap::Args, Clone)]
struct Location {
    /// Config file [default: <data-dir>/gatehouse.toml].
    #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory holding the database and runtime files [default: ./data].
    #[arg(long, env = "GATEHOUSE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        loc: Location,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "GATEHOUSE_BIND")]
        bind: Option<String>,
        /// Exit after this many seconds without activity and connections.
        #[arg(long, env = "GATEHOUSE_IDLE_TIMEOUT")]
        idle_timeout: Option<u64>,
        /// Log format: text or json.
        #[arg(long, env = "GATEHOUSE_LOG_FORMAT")]
        log_format: Option<LogFormat>,
        /// Origin browsers see, for CSRF checks and login redirects.
        #[arg(long, env = "GATEHOUSE_PUBLIC_ORIGIN")]
        public_origin: Option<String>,
        /// Mark cookies Secure (HTTPS only).
        #[arg(long, env = "GATEHOUSE_SECURE_COOKIES")]
        secure_cookies: Option<bool>,
        /// Serve /metrics.
        #[arg(long, env = "GATEHOUSE_METRICS")]
        metrics: Option<bool>,
    },
    /// Read a password (stdin, or a prompt on a terminal) and print its argon2id PHC string.
    HashPassword {
        #[command(flatten)]
        loc: Location,
    },
    /// Access rules: explain what they decide for a request.
    Access {
        #[command(flatten)]
        loc: Location,
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Inspect or lift bans.
    Bans {
        #[command(flatten)]
        loc: Location,
        #[command(subcommand)]
        command: BansCommand,
    },
    /// Act on a user's credentials.
    Users {
        #[command(flatten)]
        loc: Location,
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
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

#[derive(Subcommand)]
enum AccessCommand {
    /// Print the decision for a request, the rule that made it (with its
    /// line in the config file) and why each earlier rule did not match.
    /// Exit status: 0 allowed (perhaps after signing in), 1 refused, 2 a
    /// usage or config error.
    Check {
        /// The URL the request is for, e.g. https://code.example.com/admin?x=1
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Check as this user (their groups come from the config).
        #[arg(long)]
        user: Option<String>,
        /// Check as a member of this group (repeatable; with or without --user).
        #[arg(long)]
        group: Vec<String>,
        /// The client's address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
}

#[derive(Subcommand)]
enum BansCommand {
    /// List the bans in force.
    List,
    /// Lift a ban: through the running server's admin socket, or directly in
    /// the database when no server runs.
    Lift {
        #[arg(long, conflicts_with = "ip", required_unless_present = "ip")]
        user: Option<String>,
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: log files and fail2ban get plain text.
    let ansi = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => {
            gatehouse::logging::text_subscriber(filter, std::io::stderr, ansi).init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .json()
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The rule checker's exit status says allow (0) or deny (1); its errors
    // are 2, as clap's usage errors are.
    let failure = if matches!(cli.command, Command::Access { .. }) {
        2
    } else {
        1
    };
    match run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(failure)
        }
    }
}

/// `gatehouse access check`: the decision for one request, explained.
fn access_check(
    loc: &Location,
    url: &str,
    method: &str,
    user: Option<&str>,
    groups: &[String],
    ip: Option<std::net::IpAddr>,
) -> anyhow::Result<u8> {
    use gatehouse::access::{Request, Subject, report};
    let ov = Overrides {
        config: loc.config.clone(),
        data_dir: loc.data_dir.clone(),
        ..Overrides::default()
    };
    let config = Config::load(&ov)?;
    let text = std::fs::read_to_string(&config.path).unwrap_or_default();
    let parsed = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("--url must be an http(s) URL with a host");
    }
    // Normalised as the server normalises what a proxy reports.
    let (host, path) = gatehouse::access::normalize::url(&parsed).map_err(|e| {
        anyhow::anyhow!("--url {url:?}: {e}; the server answers such a request 403")
    })?;
    let policy = config.policy();
    let mut all_groups: Vec<String> = groups.to_vec();
    if let Some(u) = user {
        match policy.user(u) {
            Some(entry) => all_groups.extend(entry.all_groups().map(str::to_string)),
            None => eprintln!("note: {u:?} is not a user in {}", config.path.display()),
        }
    }
    let name = user.unwrap_or("(a member of the groups given)");
    let subject = if user.is_some() || !groups.is_empty() {
        Subject {
            user: Some(name),
            groups: &all_groups,
        }
    } else {
        Subject::ANONYMOUS
    };
    let request = Request {
        host: &host,
        path: &path,
        method,
        ip,
    };
    let (decision, traces) = policy.rules().explain(&request, &subject);
    let file = config.path.display().to_string();
    print!(
        "{}",
        report::render(&decision, &traces, subject.user.is_some(), &file, |i| {
            gatehouse::config::table_line(&text, "rules", i)
        })
    );
    Ok(report::exit_code(&decision) as u8)
}

/// Runs a subcommand; its exit status on success.
fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve {
            loc,
            bind,
            idle_timeout,
            log_format,
            public_origin,
            secure_cookies,
            metrics,
        } => {
            let ov = Overrides {
                config: loc.config,
                data_dir: loc.data_dir,
                bind,
                idle_timeout_secs: idle_timeout,
                log_format,
                public_origin,
                secure_cookies,
                metrics,
            };
            let config = Config::load(&ov)?;
            init_logs(config.log_format);
            let odd = config.users_with_other_cost();
            if !odd.is_empty() {
                tracing::warn!(
                    users = ?odd,
                    "password hashes not at the [argon2] cost: a failed login for these users takes another time than for an unknown name; rehash them with `gatehouse hash-password`"
                );
            }
            serve(config, ov).map(|()| 0)
        }
        Command::HashPassword { loc } => {
            let ov = Overrides {
                config: loc.config,
                data_dir: loc.data_dir,
                ..Overrides::default()
            };
            // The cost comes from the config when there is one.
            let cost = Config::load(&ov)
                .map(|c| c.argon2)
                .unwrap_or_else(|_| Argon2Settings::default());
            let password = read_password(false)?;
            let phc = gatehouse::server::password::hash_password(&password, &cost)?;
            println!("{phc}");
            Ok(0)
        }
        Command::Access {
            loc,
            command:
                AccessCommand::Check {
                    url,
                    method,
                    user,
                    group,
                    ip,
                },
        } => {
            let code = access_check(&loc, &url, &method, user.as_deref(), &group, ip)?;
            Ok(code)
        }
        Command::Bans { loc, command } => {
            init_logs(LogFormat::Text);
            let ov = Overrides {
                config: loc.config,
                data_dir: loc.data_dir,
                ..Overrides::default()
            };
            let config = Config::load(&ov)?;
            bans(&config, command).map(|()| 0)
        }
        Command::Users { loc, command } => {
            init_logs(LogFormat::Text);
            let ov = Overrides {
                config: loc.config,
                data_dir: loc.data_dir,
                ..Overrides::default()
            };
            let edit = match command {
                UsersCommand::Add {
                    name,
                    groups,
                    email,
                    display_name,
                    admin,
                } => Edit::Add {
                    name,
                    groups,
                    email,
                    display_name,
                    admin,
                },
                UsersCommand::Remove { name } => Edit::Remove(name),
                UsersCommand::Passwd { name } => Edit::Passwd(name),
                UsersCommand::ResetSecondFactor { name } => {
                    let config = Config::load(&ov)?;
                    return users(&config, Action::ResetSecondFactor, &name).map(|()| 0);
                }
                UsersCommand::RevokeTokens { name } => {
                    let config = Config::load(&ov)?;
                    return users(&config, Action::RevokeTokens, &name).map(|()| 0);
                }
            };
            edit_users(&ov, edit).map(|()| 0)
        }
    }
}

/// An edit of the users in the config file.
enum Edit {
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
enum Action {
    ResetSecondFactor,
    RevokeTokens,
}

/// `gatehouse users add|remove|passwd`: edits the config file (found as
/// `serve` finds it), checks the result as the server will read it, writes
/// it in one rename, then has a running server reload it.
fn edit_users(ov: &Overrides, edit: Edit) -> anyhow::Result<()> {
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

fn users(config: &Config, action: Action, name: &str) -> anyhow::Result<()> {
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
    // No server runs: the file is changed directly.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (backend, task) = Backend::open(&BackendConfig::redb(config.db_path()))?;
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
const MIN_PASSWORD_CHARS: usize = 12;

/// A password: prompted twice without echo on a terminal, else read from
/// standard input: one line when `one_line`, else all of it (a trailing
/// line ending dropped either way). Never cut: longer than the login form
/// accepts is an error.
fn read_password(one_line: bool) -> anyhow::Result<String> {
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

fn serve(config: Config, ov: Overrides) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let exit = rt.block_on(async move {
        // The server reloads its users on SIGHUP itself, as one of its
        // background tasks.
        let server = Server::bind(config, ov).await?;
        server.run(shutdown_signal()).await
    })?;
    tracing::debug!(?exit, "exiting");
    Ok(())
}

/// Completes at the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    let Ok(mut signals) = gatehouse::signals::StopSignals::install() else {
        tracing::error!("cannot install signal handlers; only the idle timeout stops the server");
        std::future::pending::<()>().await;
        return;
    };
    signals.recv().await;
    tracing::info!("shutdown signal received; a second one exits at once");
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

fn bans(config: &Config, command: BansCommand) -> anyhow::Result<()> {
    let store = BackendConfig::redb(config.db_path());
    // The store's interface is async: one thread drives it (scans use the
    // blocking pool).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match command {
        BansCommand::List => {
            if let Some(reply) = admin::request(&config.data_dir, "GET", "/bans")? {
                print!("{}", reply.into_result()?);
                return Ok(());
            }
            let backend = Backend::open_read_only(&store)?;
            let bans = rt.block_on(backend.bans(now_ms()))?;
            print!("{}", admin::format_bans(&bans));
            Ok(())
        }
        BansCommand::Lift { user, ip } => {
            let subject = match (user, ip) {
                (Some(u), _) => BanSubject::User(u),
                (None, Some(ip)) => BanSubject::ip(ip),
                (None, None) => bail!("give --user or --ip"),
            };
            let query = match &subject {
                BanSubject::User(u) => ("user", u.clone()),
                BanSubject::Ip(ip) => ("ip", ip.to_string()),
            };
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(query.0, &query.1)
                .finish();
            if let Some(reply) =
                admin::request(&config.data_dir, "POST", &format!("/bans/lift?{q}"))?
            {
                print!("{}", reply.into_result()?);
                return Ok(());
            }
            let (backend, task) = Backend::open(&store)?;
            let actor = std::env::var("USER").ok();
            let lifted = rt.block_on(backend.lift_ban(
                &subject,
                "lifted from the command line",
                actor.as_deref(),
                now_ms(),
            ));
            rt.block_on(task.shutdown()).map_err(anyhow::Error::msg)?;
            backend.close()?;
            if lifted? {
                println!("lifted the ban on {subject}");
            } else {
                println!("no ban on {subject}");
            }
            Ok(())
        }
    }
}
