//! `gatehouse access check`: the decision of the access rules for one
//! request, the rule that made it and why each earlier rule did not match.

use anyhow::{Context, bail};
use clap::Subcommand;
use gatehouse::config::{Config, Overrides};

use crate::Location;

#[derive(Subcommand)]
pub(crate) enum AccessCommand {
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

/// `gatehouse access check`: the decision for one request, explained.
pub(crate) fn access_check(
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
