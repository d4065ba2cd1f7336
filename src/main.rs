//! `gatehouse`: the server and its admin subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::store::{EventKind, NewEvent, Store, StoreOptions, Writer, WriterConfig};

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

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Directory holding the database and runtime files.
        #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { data_dir } => serve(data_dir),
    }
}

fn serve(data_dir: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let path = data_dir.join("gatehouse.redb");
        let store = Store::open(&path, &StoreOptions::default())
            .with_context(|| format!("opening {}", path.display()))?;
        let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
        writer.append(NewEvent::now(EventKind::ServerStarted)).await?;
        tracing::info!(db = %path.display(), "gatehouse started (HTTP server not built yet); Ctrl-C stops it");
        let sweeper = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    if let Err(e) = writer.sweep(gatehouse::store::now_ms(), 1_000).await {
                        tracing::warn!(error = %e, "sweep failed; retrying next tick");
                    }
                }
            })
        };
        tokio::signal::ctrl_c().await.ok();
        sweeper.abort();
        writer.append(NewEvent::now(EventKind::ServerStopped)).await?;
        drop(writer);
        task.shutdown().await.map_err(anyhow::Error::msg)?;
        store.close().context("closing the database")?;
        Ok(())
    })
}
