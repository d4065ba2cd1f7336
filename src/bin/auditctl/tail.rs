//! `auditctl tail`: the last N events, oldest of them first; with `--follow`,
//! new events as they are committed, until Ctrl-C or SIGTERM: streamed by
//! the running server when one holds the file, else by reading the file
//! every 250 ms, opening it for each look so that a server can start
//! meanwhile. Following goes on across a server's start and stop, from the
//! last event printed.

use std::io::{BufWriter, Write};
use std::time::Duration;

use gatehouse::admin_wire::Frame;
use gatehouse::signals::StopSignals;
use gatehouse::store::{AuditStore, Backend, BackendConfig, Event, EventFilter, EventId};
use jiff::tz::TimeZone;

use crate::Status;
use crate::cli::TailArgs;
use crate::query::fetch;
use crate::render;
use crate::source::{Opened, Remote, Source};

/// How often `--follow` looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// Most events read per poll step.
const STEP: usize = 1_000;

struct Printer {
    json: bool,
    tz: TimeZone,
}

impl Printer {
    fn event(&self, out: &mut impl Write, ev: &Event) -> std::io::Result<()> {
        if self.json {
            gatehouse::jsonl::write_event(out, ev)
        } else {
            render::write_row(
                out,
                &render::event_row(&self.tz, ev),
                &render::FOLLOW_WIDTHS,
            )
        }
    }
}

/// `config`: the redb file to follow across a server's stops and starts;
/// `None` for PostgreSQL, which is polled.
pub fn run(config: Option<&BackendConfig>, store: Source, a: &TailArgs) -> anyhow::Result<Status> {
    let filter = a.filters.to_filter();
    // The newest id before the query: following starts no lower, so nothing
    // committed meanwhile is missed or printed twice.
    let head = store.stats()?.newest_event.unwrap_or(EventId(0));
    let (mut events, _) = if a.lines > 0 {
        fetch(&store, &filter, a.lines.into(), None)?
    } else {
        (Vec::new(), None)
    };
    events.reverse();
    let p = Printer {
        json: a.json,
        tz: TimeZone::system(),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if a.json {
        for ev in &events {
            p.event(&mut out, ev)?;
        }
    } else if a.follow {
        render::write_row(
            &mut out,
            &render::event_header(&p.tz),
            &render::FOLLOW_WIDTHS,
        )?;
        for ev in &events {
            p.event(&mut out, ev)?;
        }
    } else if !events.is_empty() {
        render::write_events(&mut out, &p.tz, &events)?;
    }
    out.flush()?;
    if !a.follow {
        return Ok(if events.is_empty() {
            Status::NothingFound
        } else {
            Status::Ok
        });
    }
    let after = events.last().map(|e| e.id).unwrap_or(head).max(head);
    // A local handle is not kept: it would keep a server from starting.
    let remote = match (store, config) {
        (Source::Postgres(pg), _) => {
            follow_postgres(&pg, &filter, after, &p, &mut out)?;
            return Ok(Status::Ok);
        }
        (Source::Local(b), _) => {
            b.close()?;
            None
        }
        (Source::Remote(r), _) => Some(r),
    };
    let config = config.ok_or_else(|| anyhow::anyhow!("following needs the database file"))?;
    follow(config, remote, &filter, after, &p, &mut out)?;
    Ok(Status::Ok)
}

/// Follows the audit trail in PostgreSQL by reading what was chained every
/// [`POLL`], until a signal.
fn follow_postgres(
    pg: &gatehouse::store::postgres::PgAudit,
    filter: &EventFilter,
    mut after: EventId,
    p: &Printer,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    crate::wait(async {
        let mut signals = StopSignals::install()?;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = signals.recv() => return Ok(()),
                _ = tick.tick() => {}
            }
            print_new(pg, filter, &mut after, p, out).await?;
        }
    })
}

/// How one way of following ended.
enum Ended {
    /// A stop signal: the command is done.
    Stopped,
    /// The file changed hands (a server started or stopped): follow the
    /// other way.
    Moved,
}

/// Prints matching events above `after` as they appear, until a signal,
/// through the server while one holds the file and from the file otherwise.
fn follow(
    config: &BackendConfig,
    mut remote: Option<Remote>,
    filter: &EventFilter,
    mut after: EventId,
    p: &Printer,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    crate::wait(async {
        let mut signals = StopSignals::install()?;
        loop {
            let ended = match remote.take() {
                Some(r) => follow_remote(&r, filter, &mut after, p, out, &mut signals).await?,
                None => follow_local(config, filter, &mut after, p, out, &mut signals).await?,
            };
            if let Ended::Stopped = ended {
                return Ok(());
            }
            // Between two holders: look again until one way works.
            loop {
                match Source::try_open(config)? {
                    Opened::Source(Source::Remote(r)) => {
                        remote = Some(r);
                        break;
                    }
                    Opened::Source(Source::Local(b)) => {
                        b.close()?;
                        break;
                    }
                    Opened::Source(Source::Postgres(_)) => break,
                    Opened::Held(_) => {}
                }
                tokio::select! {
                    _ = signals.recv() => return Ok(()),
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    })
}

/// Follows by reading the file every [`POLL`], opening it for each look.
async fn follow_local(
    config: &BackendConfig,
    filter: &EventFilter,
    after: &mut EventId,
    p: &Printer,
    out: &mut impl Write,
    signals: &mut StopSignals,
) -> anyhow::Result<Ended> {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = signals.recv() => return Ok(Ended::Stopped),
            _ = tick.tick() => {}
        }
        let store = match Backend::open_read_only(config) {
            Ok(s) => s,
            Err(gatehouse::store::OpenError::Locked(_)) => return Ok(Ended::Moved),
            Err(e) => return Err(crate::explain_open(e)),
        };
        let read = print_new(&store, filter, after, p, out).await;
        store.close()?;
        read?;
    }
}

/// Prints what was committed above `after` in `store`.
async fn print_new(
    store: &impl AuditStore,
    filter: &EventFilter,
    after: &mut EventId,
    p: &Printer,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    loop {
        let batch = store.events_after(*after, STEP).await?;
        for ev in &batch {
            *after = ev.id;
            if filter.matches(ev) {
                p.event(out, ev)?;
            }
        }
        if batch.len() < STEP {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

/// Follows the server's stream of new events until a signal, or until the
/// stream ends (the server stopped).
async fn follow_remote(
    r: &Remote,
    filter: &EventFilter,
    after: &mut EventId,
    p: &Printer,
    out: &mut impl Write,
    signals: &mut StopSignals,
) -> anyhow::Result<Ended> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    gatehouse::admin_wire::filter_query(filter, &mut q);
    q.append_pair("after", &after.0.to_string());
    let Some(mut stream) = r.open("/stream/follow", &q.finish()).await? else {
        // The server is stopping (or gone, its socket left behind): the
        // socket can outlast the hold on the file for a moment, so look
        // again after a pause rather than at once.
        tokio::select! {
            _ = signals.recv() => return Ok(Ended::Stopped),
            _ = tokio::time::sleep(POLL) => {}
        }
        return Ok(Ended::Moved);
    };
    loop {
        let frame = tokio::select! {
            _ = signals.recv() => return Ok(Ended::Stopped),
            f = stream.next() => f,
        };
        match frame {
            Ok(Frame::Events { events, through }) => {
                for ev in &events {
                    *after = ev.id;
                    p.event(out, ev)?;
                }
                if let Some(t) = through {
                    *after = t.max(*after);
                }
                out.flush()?;
            }
            Ok(Frame::End) | Err(gatehouse::admin_wire::WireError::Cut) => {
                return Ok(Ended::Moved);
            }
            Ok(f) => anyhow::bail!("the server sent an unexpected answer ({f:?})"),
            Err(e) => return Err(r.explain(e)),
        }
    }
}
