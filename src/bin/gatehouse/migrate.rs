//! `gatehouse migrate --to-distributed`: a stopped node's redb file moved
//! into the distributed store its config names (`[storage]`), so that the
//! node starts on it next (`gatehouse::store::migrate`).

use anyhow::{Context, bail};
use gatehouse::config::Config;
use gatehouse::identity::secret_box::SecretBox;
use gatehouse::store::migrate::{self, Progress};

pub(crate) fn migrate_to_distributed(config: &Config) -> anyhow::Result<()> {
    let Some(target) = &config.storage else {
        bail!(
            "the config names no distributed store: set [storage] backend = \"distributed\" \
             with redis_url and postgres_url (or GATEHOUSE_REDIS_URL and GATEHOUSE_POSTGRES_URL) \
             first; the node starts on that store after the move"
        );
    };
    // The moved second factors are sealed with this node's key: the
    // deployment takes its fingerprint, and every node must hold the key.
    let key = SecretBox::open_or_create(&config.data_dir)?;
    let target = target.clone().with_key_fingerprint(key.fingerprint());
    let file = config.db_path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut total = 0;
    let moved = rt.block_on(migrate::to_distributed(&file, &target, |p| match p {
        Progress::Verified { events } => {
            total = events;
            eprintln!("{} verifies: {events} events to move", file.display());
        }
        Progress::Events(n) => eprintln!("moved {n} of {total} events"),
        Progress::LiveState => eprintln!("the audit chain is in PostgreSQL; moving the live state"),
    }))?;
    let live = moved.live;
    println!(
        "moved {} into {target}: {} events (the chain continues from the file's head{}), {} \
         sessions, {} access tokens, {} users' second factors, {} bans",
        file.display(),
        moved.events,
        if moved.pruned > 0 {
            format!(", after {} pruned", moved.pruned)
        } else {
            String::new()
        },
        live.sessions,
        live.tokens,
        live.factor_sets,
        live.bans,
    );
    println!(
        "start this node with the same config; copy {} to every other node",
        config.data_dir.join("secrets.key").display()
    );
    Ok(())
}
