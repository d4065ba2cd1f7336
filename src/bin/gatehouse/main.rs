//! `gatehouse`: the server and its admin subcommands.

mod access;
mod bans;
mod migrate;
mod oidc;
mod store;
mod users;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::config::{Argon2Settings, Config, LogFormat, Overrides};
use gatehouse::server::Server;

use crate::access::{AccessCommand, access_check};
use crate::bans::{BansCommand, bans};
use crate::users::{Action, Edit, UsersCommand, edit_users, read_password, users};

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
pub(crate) struct Location {
    /// Config file [default: <data-dir>/gatehouse.toml].
    #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Directory holding the database and runtime files [default: ./data].
    #[arg(long, env = "GATEHOUSE_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl Location {
    /// The overrides these flags make.
    pub(crate) fn overrides(self) -> Overrides {
        Overrides {
            config: self.config,
            data_dir: self.data_dir,
            ..Overrides::default()
        }
    }
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
        /// [storage] redis_url (with its password: prefer the variable).
        #[arg(long, env = "GATEHOUSE_REDIS_URL", hide_env_values = true)]
        redis_url: Option<gatehouse::config::SecretUrl>,
        /// [storage] postgres_url (with its password: prefer the variable).
        #[arg(long, env = "GATEHOUSE_POSTGRES_URL", hide_env_values = true)]
        postgres_url: Option<gatehouse::config::SecretUrl>,
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
    /// Move this node's database into the distributed store that the
    /// config's [storage] names (the server must be stopped).
    Migrate {
        #[command(flatten)]
        loc: Location,
        /// Into Redis (live state) and PostgreSQL (the audit chain); the
        /// only direction there is.
        #[arg(long, required = true)]
        to_distributed: bool,
        /// [storage] redis_url (with its password: prefer the variable).
        #[arg(long, env = "GATEHOUSE_REDIS_URL", hide_env_values = true)]
        redis_url: Option<gatehouse::config::SecretUrl>,
        /// [storage] postgres_url (with its password: prefer the variable).
        #[arg(long, env = "GATEHOUSE_POSTGRES_URL", hide_env_values = true)]
        postgres_url: Option<gatehouse::config::SecretUrl>,
    },
    /// OpenID Connect: make a client's secret, rotate the signing key.
    Oidc {
        #[command(flatten)]
        loc: Location,
        #[command(subcommand)]
        command: crate::oidc::OidcCommand,
    },
    /// Act on a user's credentials.
    Users {
        #[command(flatten)]
        loc: Location,
        #[command(subcommand)]
        command: UsersCommand,
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
            redis_url,
            postgres_url,
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
                redis_url,
                postgres_url,
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
            let ov = loc.overrides();
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
            let ov = loc.overrides();
            let config = Config::load(&ov)?;
            bans(&config, command).map(|()| 0)
        }
        Command::Migrate {
            loc,
            redis_url,
            postgres_url,
            ..
        } => {
            init_logs(LogFormat::Text);
            let ov = Overrides {
                config: loc.config,
                data_dir: loc.data_dir,
                redis_url,
                postgres_url,
                ..Overrides::default()
            };
            let config = Config::load(&ov)?;
            migrate::migrate_to_distributed(&config).map(|()| 0)
        }
        Command::Oidc { loc, command } => match command {
            crate::oidc::OidcCommand::NewClient {
                name,
                public,
                redirect_uri,
            } => crate::oidc::new_client(&name, public, redirect_uri.as_deref()).map(|()| 0),
            crate::oidc::OidcCommand::RotateKey => {
                init_logs(LogFormat::Text);
                let ov = loc.overrides();
                let config = Config::load(&ov)?;
                crate::oidc::rotate_key(&config).map(|()| 0)
            }
        },
        Command::Users { loc, command } => {
            init_logs(LogFormat::Text);
            let ov = loc.overrides();
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

fn serve(config: Config, ov: Overrides) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let exit = rt.block_on(async move {
        // The server reloads its users (and certificate files) on SIGHUP
        // itself, as one of its background tasks.
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
