//! The store as a command opens it when no server of this node answers:
//! the redb file itself (held for the command, or read-only), or the
//! distributed store's services, which every node shares and a command
//! reaches like one more node.

use anyhow::Context;
use gatehouse::store::{Backend, BackendConfig, BackendTask};

/// The one thread that drives the store's async interface for a command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The store, for writing: `shutdown` the task and `close` the store after.
pub(crate) fn open(
    rt: &tokio::runtime::Runtime,
    config: &BackendConfig,
) -> anyhow::Result<(Backend, BackendTask)> {
    Ok(match config {
        BackendConfig::Distributed(_) => rt.block_on(Backend::connect(config))?,
        BackendConfig::Redb { .. } => Backend::open(config)?,
    })
}

/// The store, for reading: the file read-only, or the services.
pub(crate) fn open_to_read(
    rt: &tokio::runtime::Runtime,
    config: &BackendConfig,
) -> anyhow::Result<(Backend, Option<BackendTask>)> {
    Ok(match config {
        BackendConfig::Distributed(_) => {
            let (b, task) = rt.block_on(Backend::connect(config))?;
            (b, Some(task))
        }
        BackendConfig::Redb { .. } => (Backend::open_read_only(config)?, None),
    })
}
