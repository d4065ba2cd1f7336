//! `auditctl verify`, `stats`, `sessions` and `tokens`: whole-file facts
//! and checks.

use std::io::{BufWriter, Write};

use jiff::tz::TimeZone;

use crate::Status;
use crate::cli::{SessionsArgs, StatsArgs, TokensArgs};
use crate::render::{self, human_bytes, local_time};
use crate::source::Source;

pub fn verify(store: &Source) -> anyhow::Result<Status> {
    let r = store.check()?;
    println!("database    {}", store.name());
    println!(
        "events      {} (appended {}, pruned {})",
        r.events, r.events_appended, r.events_pruned
    );
    if !store.audit_only() {
        println!("sessions    {}", r.sessions);
        println!("tokens      {}", r.tokens);
        println!(
            "factors     {} users with second factors, {} sign-ins waiting for one",
            r.users_with_factors, r.pending_signins
        );
        println!("bans        {}", r.bans);
    }
    println!("chain head  {}", r.chain_head);
    if r.is_ok() {
        if store.audit_only() {
            println!("verify: OK (the hash chain is intact from its anchor to its head)");
        } else {
            println!("verify: OK (every index matches its table; the hash chain is intact)");
        }
        return Ok(Status::Ok);
    }
    println!("verify: FAILED, {} problems:", r.problem_count);
    for p in &r.problems {
        println!("  - {p}");
    }
    if r.problem_count > r.problems.len() {
        println!("  ... and {} more", r.problem_count - r.problems.len());
    }
    match r.first_bad_event {
        Some(id) => {
            let at = local_time(&TimeZone::system(), gatehouse::store::EventId(id).micros());
            eprintln!("auditctl: verification failed: first bad event {id} ({at})");
        }
        None => eprintln!(
            "auditctl: verification failed: {} problems",
            r.problem_count
        ),
    }
    Ok(Status::Failed)
}

pub fn stats(store: &Source, a: &StatsArgs) -> anyhow::Result<Status> {
    let s = store.stats()?;
    let c = store.audit_counts(a.top)?;
    let tz = TimeZone::system();
    println!("database    {}", store.name());
    if store.audit_only() {
        println!(
            "table size  {} (events, with its indexes)",
            human_bytes(s.file_bytes)
        );
    } else {
        println!("file size   {}", human_bytes(s.file_bytes));
    }
    println!("schema      version {}", s.schema_version);
    println!("events      {}", s.events);
    match (s.oldest_event, s.newest_event) {
        (Some(o), Some(n)) => println!(
            "time span   {} .. {} ({})",
            local_time(&tz, o.micros()),
            local_time(&tz, n.micros()),
            render::tz_name(&tz)
        ),
        _ => println!("time span   (no events)"),
    }
    if !store.audit_only() {
        println!(
            "sessions    {} (rows, including expired not yet swept)",
            s.sessions
        );
        println!(
            "tokens      {} (rows, including expired not yet swept)",
            s.tokens
        );
        println!("bans        {}", s.bans);
    }
    println!();
    println!("events by kind:");
    let w = c
        .by_kind
        .iter()
        .map(|(k, _)| k.as_str().len())
        .max()
        .unwrap_or(0);
    for (k, n) in &c.by_kind {
        println!("  {:<w$}  {n:>10}", k.as_str());
    }
    if c.unknown_kinds > 0 {
        println!("  {:<w$}  {:>10}", "(unknown kinds)", c.unknown_kinds);
    }
    println!();
    println!(
        "top users ({} of {} users; {} events name no user):",
        c.top_users.len(),
        c.users,
        c.without_user
    );
    let w = c
        .top_users
        .iter()
        .map(|(u, _)| render::width(&render::clean(u)))
        .max()
        .unwrap_or(0);
    for (u, n) in &c.top_users {
        println!("  {}  {n:>10}", render::pad(&render::clean(u), w));
    }
    Ok(Status::Ok)
}

/// `auditctl tokens --user NAME`: read-only.
pub fn tokens(store: &Source, a: &TokensArgs) -> anyhow::Result<Status> {
    let list = store.tokens_of(&a.user)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if a.json {
        for t in &list {
            render::write_token_json(&mut out, t)?;
        }
    } else if !list.is_empty() {
        render::write_tokens(&mut out, &TimeZone::system(), &list)?;
    }
    out.flush()?;
    if list.is_empty() {
        eprintln!("no live access tokens");
        return Ok(Status::NothingFound);
    }
    Ok(Status::Ok)
}

pub fn sessions(store: &Source, a: &SessionsArgs) -> anyhow::Result<Status> {
    let mut list = store.sessions(a.user.as_deref(), a.limit)?;
    list.truncate(a.limit);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if a.json {
        for s in &list {
            render::write_session_json(&mut out, s)?;
        }
    } else if !list.is_empty() {
        render::write_sessions(&mut out, &TimeZone::system(), &list)?;
    }
    out.flush()?;
    if list.is_empty() {
        eprintln!("no active sessions");
        return Ok(Status::NothingFound);
    }
    Ok(Status::Ok)
}
