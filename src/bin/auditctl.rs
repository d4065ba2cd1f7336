//! `auditctl`: read the audit trail (skeleton; see the README for what is built).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::store::{EventFilter, Store, StoreOptions};

#[derive(Parser)]
#[command(name = "auditctl", version, about = "Query the gatehouse audit trail")]
struct Cli {
    #[arg(
        long,
        env = "GATEHOUSE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Newest events first.
    Query {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let path = cli.data_dir.join("gatehouse.redb");
    let store = Store::open_read_only(&path, &StoreOptions::default())
        .with_context(|| format!("opening {}", path.display()))?;
    match cli.command {
        Command::Query { user, limit } => {
            let filter = EventFilter {
                user,
                ..Default::default()
            };
            let page = store.query_events(&filter, limit, None)?;
            for ev in page.events {
                println!("{}", serde_json::to_string(&ev)?);
            }
        }
    }
    Ok(())
}
