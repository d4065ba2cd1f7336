//! One node's redb file moved into an empty distributed deployment
//! (`gatehouse migrate --to-distributed`): the whole audit chain into
//! PostgreSQL, continuing from the file's head, and the live state
//! (sessions, access tokens, second factors, bans) into Redis.
//!
//! Invariants:
//! - Only a file no server holds (the read-only open refuses a held one)
//!   and that verifies; only into a deployment with no live state and no
//!   chain. Nothing is merged or overwritten.
//! - The chain moves first, in one PostgreSQL transaction: a failure there
//!   leaves both services as they were. The live state follows; a failure
//!   there names what to clear before trying again.
//! - Nothing is recorded as new: the events keep their ids and bytes, so
//!   `auditctl verify` on PostgreSQL checks the file's chain and what the
//!   nodes chain after it as one.
//!
//! Memory: the live state is read whole (one node's sessions, tokens,
//! factors and bans); the chain moves in batches of `IMPORT_BATCH` events.
//!
//! Not moved: pending sign-ins (minutes long; a user mid-sign-in starts
//! again), failure counters (they are leases, not records), and the OpenID
//! Connect provider's state (codes, grants, consents, subjects, signing
//! keys), which the distributed store does not keep yet: a config with
//! `[[oidc.clients]]` is refused on it, and apps that signed in through the
//! provider sign in again once it is there.

use std::path::Path;

use crate::domain::EventId;
use crate::store::distributed::{Distributed, DistributedConfig};
use crate::store::error::{OpenError, StoreError};
use crate::store::postgres::IMPORT_BATCH;
use crate::store::redis::Imported;
use crate::store::{Store, StoreOptions};

/// What a migration moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Events chained in PostgreSQL.
    pub events: u64,
    /// Events the file had pruned before (the chain's anchor moved too).
    pub pruned: u64,
    /// The live state written to Redis.
    pub live: Imported,
}

/// A step of a migration, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The file verified: this many events to move.
    Verified { events: u64 },
    /// Events moved so far.
    Events(u64),
    /// The chain is in PostgreSQL; the live state goes next.
    LiveState,
}

/// Why a migration did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(
        "{path} does not verify ({problems} problems, first: {first}); run `auditctl verify` \
         on it and repair it before moving it"
    )]
    Broken {
        path: String,
        problems: usize,
        first: String,
    },
    #[error(
        "the deployment {0} already holds live state (sessions, tokens, factors, bans or an \
         outbox); migrate into an unused prefix"
    )]
    NotEmpty(String),
    #[error("moving the audit chain: {0}")]
    Chain(StoreError),
    #[error(
        "the audit chain was moved, but writing the live state failed: {0}. Delete the keys \
         under the prefix and the PostgreSQL database's tables, then run the migration again"
    )]
    LiveState(StoreError),
    #[error("reading the file: {0}")]
    Read(StoreError),
}

/// Moves the redb file at `file` into the deployment `target`, telling
/// `progress` along the way.
pub async fn to_distributed(
    file: &Path,
    target: &DistributedConfig,
    mut progress: impl FnMut(Progress),
) -> Result<Migrated, MigrateError> {
    let store = Store::open_read_only(file, &StoreOptions::default())?;
    let report = store.check().map_err(MigrateError::Read)?;
    if !report.is_ok() {
        return Err(MigrateError::Broken {
            path: file.display().to_string(),
            problems: report.problem_count,
            first: report.problems.first().cloned().unwrap_or_default(),
        });
    }
    progress(Progress::Verified {
        events: report.events,
    });
    let (head, anchor) = store.chain_state().map_err(MigrateError::Read)?;
    let now = crate::domain::now_ms();
    let live = store.live_state(now).map_err(MigrateError::Read)?;

    let d = Distributed::connect(target).await?;
    if !d
        .redis()
        .live_state_is_empty()
        .await
        .map_err(MigrateError::Chain)?
    {
        return Err(MigrateError::NotEmpty(target.to_string()));
    }
    let events = d
        .audit()
        .import_chain(
            head,
            anchor,
            |after: EventId| store.chain_rows(after, IMPORT_BATCH),
            |n| progress(Progress::Events(n)),
        )
        .await
        .map_err(MigrateError::Chain)?;
    progress(Progress::LiveState);
    let live = d
        .redis()
        .import(&live.sessions, &live.tokens, &live.factors, &live.bans, now)
        .await
        .map_err(MigrateError::LiveState)?;
    Ok(Migrated {
        events,
        pruned: anchor.pruned,
        live,
    })
}
