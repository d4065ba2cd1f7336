//! `auditctl query`: one page of events, newest first, from the indexes, and
//! the command for the next page on stderr.

use std::io::{BufWriter, Write};

use gatehouse::store::{Event, EventFilter, QueryError};
use jiff::tz::TimeZone;

use crate::Status;
use crate::cli::QueryArgs;
use crate::render;
use crate::source::Source;

/// Turns a query error into what the operator should do about it.
pub fn explain(e: QueryError) -> anyhow::Error {
    match e {
        QueryError::Cursor(c) => explain_cursor(&c),
        QueryError::Store(s) => anyhow::Error::new(s),
    }
}

/// A cursor that is not one of this query's, with what to pass instead.
pub fn explain_cursor(c: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{c}\n  hint: pass the cursor printed by the previous page of this same query \
         (same --user, --kind, --ip and --outcome)"
    )
}

/// Up to `want` newest events matching `filter`, below `cursor`. Keeps reading
/// when the store stops a page early (its scan budget), so a rare match still
/// fills the page. Returns the cursor of the rest, if any may remain.
pub fn fetch(
    store: &Source,
    filter: &EventFilter,
    want: usize,
    mut cursor: Option<String>,
) -> anyhow::Result<(Vec<Event>, Option<String>)> {
    let mut out: Vec<Event> = Vec::new();
    while out.len() < want {
        let page = store.query_events(filter, want - out.len(), cursor.as_deref())?;
        out.extend(page.events);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok((out, cursor))
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// This same command line with `--cursor C` in place of any cursor it had.
pub fn next_page_command(args: &[String], cursor: &str) -> String {
    let mut out = vec!["auditctl".to_string()];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--cursor" {
            it.next();
        } else if !a.starts_with("--cursor=") {
            out.push(quote(a));
        }
    }
    out.push("--cursor".into());
    out.push(quote(cursor));
    out.join(" ")
}

pub fn run(store: &Source, a: &QueryArgs) -> anyhow::Result<Status> {
    let filter = a.filters.to_filter();
    let (events, next) = fetch(store, &filter, a.limit.into(), a.cursor.clone())?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if a.json {
        for ev in &events {
            gatehouse::jsonl::write_event(&mut out, ev)?;
        }
    } else if !events.is_empty() {
        render::write_events(&mut out, &TimeZone::system(), &events)?;
    }
    out.flush()?;
    if let Some(c) = next {
        let args: Vec<String> = std::env::args().collect();
        eprintln!("more results: {}", next_page_command(&args, &c));
    }
    if events.is_empty() {
        if !a.json {
            eprintln!("no matching events");
        }
        return Ok(Status::NothingFound);
    }
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_replaces_the_cursor() {
        let args: Vec<String> = [
            "/usr/bin/auditctl",
            "query",
            "--user",
            "o'brien",
            "--cursor",
            "OLD",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            next_page_command(&args, "NEW_c-1"),
            r"auditctl query --user 'o'\''brien' --json --cursor NEW_c-1"
        );
    }
}
