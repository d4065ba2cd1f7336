//! `gatehouse bans list|lift`: through the running server's admin socket,
//! or directly in the database when no server runs.

use anyhow::bail;
use clap::Subcommand;
use gatehouse::config::Config;
use gatehouse::server::ops::admin;
use gatehouse::store::{BanStore, BanSubject, now_ms};

#[derive(Subcommand)]
pub(crate) enum BansCommand {
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

pub(crate) fn bans(config: &Config, command: BansCommand) -> anyhow::Result<()> {
    let store = config.backend_config();
    let rt = crate::store::runtime()?;
    match command {
        BansCommand::List => {
            if let Some(reply) = admin::request(&config.data_dir, "GET", "/bans")? {
                print!("{}", reply.into_result()?);
                return Ok(());
            }
            let (backend, task) = crate::store::open_to_read(&rt, &store)?;
            let bans = rt.block_on(backend.bans(now_ms()));
            if let Some(task) = task {
                rt.block_on(task.shutdown()).map_err(anyhow::Error::msg)?;
            }
            let bans = bans?;
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
            let (backend, task) = crate::store::open(&rt, &store)?;
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
