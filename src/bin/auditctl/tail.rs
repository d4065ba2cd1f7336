//! `auditctl tail`: the last N events, oldest of them first; with `--follow`,
//! new events as they are committed, by polling the read-only handle every
//! 250 ms, until Ctrl-C or SIGTERM.

use std::io::{BufWriter, Write};
use std::time::Duration;

use gatehouse::signals::StopSignals;
use gatehouse::store::{AuditStore, Backend, Event, EventFilter, EventId, StoreCheck};
use jiff::tz::TimeZone;

use crate::Status;
use crate::cli::TailArgs;
use crate::query::fetch;
use crate::render;

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

pub fn run(store: &Backend, a: &TailArgs) -> anyhow::Result<Status> {
    let filter = a.filters.to_filter();
    // The newest id before the query: following starts no lower, so nothing
    // committed meanwhile is missed or printed twice.
    let head = crate::wait(store.stats())?
        .newest_event
        .unwrap_or(EventId(0));
    let (mut events, _) = if a.lines > 0 {
        fetch(store, &filter, a.lines.into(), None)?
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
    follow(store, &filter, after, &p, &mut out)?;
    Ok(Status::Ok)
}

/// Prints matching events above `after` as they appear, until a signal.
fn follow(
    store: &Backend,
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
                _ = signals.recv() => break,
                _ = tick.tick() => {
                    loop {
                        let batch = store.events_after(after, STEP).await?;
                        for ev in &batch {
                            after = ev.id;
                            if filter.matches(ev) {
                                p.event(out, ev)?;
                            }
                        }
                        if batch.len() < STEP {
                            break;
                        }
                    }
                    out.flush()?;
                }
            }
        }
        Ok(())
    })
}
