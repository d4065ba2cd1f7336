//! The text log subscriber of `gatehouse serve`. Its line format is what
//! `deploy/fail2ban-filter.conf` parses, so the binary and the fail2ban
//! test (`tests/it/fail2ban.rs`) build it here, in one place.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// tracing-subscriber's default text format: `TIMESTAMP LEVEL target:
/// message field=value ...`, with `Display` fields (`%`) written bare and
/// `Debug` fields (`?`) quoted and escaped. `ansi` adds colour codes; it must
/// be off for anything a program reads.
pub fn text_subscriber<W>(filter: EnvFilter, writer: W, ansi: bool) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .finish()
}
