//! `auditctl export`: matching events as JSON Lines, oldest first, streamed
//! in steps of 1,000 into a temporary file (zstd-compressed for `.zst`), which
//! is fsynced and renamed over the destination only when complete.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use gatehouse::store::{AuditStore, Event, EventFilter, EventId};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Status;
use crate::cli::ExportArgs;
use crate::render::human_bytes;
use crate::source::Source;

/// Events read per step: memory stays flat whatever the export size.
const STEP: usize = 1_000;
/// zstd level: fast, about 10x on audit JSON.
const ZSTD_LEVEL: i32 = 3;

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn create(tmp: &Path, compress: bool) -> anyhow::Result<Sink> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        // Exported events hold names, addresses and user agents: owner-only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let f = opts
            .open(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let w = BufWriter::with_capacity(256 * 1024, f);
        Ok(if compress {
            Sink::Zstd(zstd::stream::Encoder::new(w, ZSTD_LEVEL)?)
        } else {
            Sink::Plain(w)
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(z) => z,
        }
    }

    /// Ends the stream and fsyncs the file.
    fn finish(self) -> anyhow::Result<()> {
        let w = match self {
            Sink::Plain(w) => w,
            Sink::Zstd(z) => z.finish()?,
        };
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    }
}

fn progress_bar(span_secs: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(span_secs.max(1));
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

fn temp_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// The matching events above `after` up to `end`, read from the file in
/// steps of [`STEP`], each handed to `on` with the newest id examined.
fn local_steps(
    store: &impl AuditStore,
    filter: &EventFilter,
    mut after: EventId,
    end: EventId,
    on: &mut impl FnMut(&[Event], Option<EventId>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    loop {
        let batch = crate::wait(store.events_after(after, STEP))?;
        let mut out = Vec::new();
        let mut done = batch.len() < STEP;
        for ev in batch {
            if ev.id > end
                || filter
                    .until_us
                    .is_some_and(|t| ev.id >= EventId::from_micros(t))
            {
                done = true;
                break;
            }
            after = ev.id;
            if filter.matches(&ev) {
                out.push(ev);
            }
        }
        on(&out, Some(after))?;
        if done {
            return Ok(());
        }
    }
}

/// Sets a flag on SIGINT or SIGTERM, so that an interrupted export removes
/// its partial file instead of leaving it behind.
fn watch_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    if let Ok(rt) = rt {
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                rt.block_on(async {
                    let Ok(mut signals) = gatehouse::signals::StopSignals::install() else {
                        return;
                    };
                    signals.recv().await;
                    set.store(true, Ordering::Relaxed);
                })
            });
    }
    flag
}

pub fn run(store: &Source, a: &ExportArgs) -> anyhow::Result<Status> {
    let tmp = temp_path(&a.output);
    let stop = watch_signals();
    let result = export(store, a, &tmp, &stop);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn export(store: &Source, a: &ExportArgs, tmp: &Path, stop: &AtomicBool) -> anyhow::Result<Status> {
    let filter = a.filters.to_filter();
    // Export what exists now: a live server keeps appending, the export ends.
    let stats = store.stats()?;
    let end = stats.newest_event.unwrap_or(EventId(0));
    let after = EventId(
        filter
            .since_us
            .map(|t| EventId::from_micros(t).0.saturating_sub(1))
            .unwrap_or(0),
    );
    let start_us = filter
        .since_us
        .unwrap_or_else(|| stats.oldest_event.map(|e| e.micros()).unwrap_or(0));
    let end_us = filter.until_us.unwrap_or(end.micros()).min(end.micros());
    let compress = a.output.extension().is_some_and(|e| e == "zst");
    let mut sink = Sink::create(tmp, compress)?;
    let pb = progress_bar(end_us.saturating_sub(start_us) / 1_000_000);
    let mut count = 0u64;
    let mut step = |events: &[Event], through: Option<EventId>| -> anyhow::Result<()> {
        if stop.load(Ordering::Relaxed) {
            pb.finish_and_clear();
            anyhow::bail!("interrupted; {} was left unchanged", a.output.display());
        }
        for ev in events {
            gatehouse::jsonl::write_event(sink.out(), ev)
                .with_context(|| format!("writing {}", tmp.display()))?;
            count += 1;
        }
        if let Some(t) = through {
            pb.set_position(t.micros().saturating_sub(start_us) / 1_000_000);
        }
        pb.set_message(format!("{count} events"));
        Ok(())
    };
    match store {
        Source::Local(b) => local_steps(b, &filter, after, end, &mut step)?,
        Source::Remote(r) => r.export(&filter, after, end, &mut step)?,
        Source::Postgres(pg) => local_steps(pg.as_ref(), &filter, after, end, &mut step)?,
    }
    pb.finish_and_clear();
    sink.finish()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(tmp, &a.output)
        .with_context(|| format!("cannot move the export to {}", a.output.display()))?;
    if let Some(dir) = a.output.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "exported {count} events to {}, {}",
        a.output.display(),
        human_bytes(bytes)
    );
    Ok(Status::Ok)
}
