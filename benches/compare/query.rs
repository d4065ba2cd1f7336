//! Figures 2 and 3 at one size of the event stores: the newest 100 events
//! of one user (gatehouse, SQLite keyset and `id <`, JSONL naive and
//! streaming, grep and rg), checked to agree first, and deep pagination to
//! page 1,000 (cursors, SQLite keyset, SQLite OFFSET).

use std::time::Instant;

use gatehouse::store::{EventFilter, Store};
use gatehouse_benches::figure::{DEEP_PAGES, NEWEST_100};
use gatehouse_benches::report::{fmt_us, short};
use gatehouse_benches::stats::{Better, Lat, sample, sample2};

use crate::Params;
use crate::data::{HEAVY_USER, Rng, USERS, user_name};
use crate::jsonl::{self, Jsonl};
use crate::report::{Report, Unit};
use crate::sqlite::{self, Sql};

/// Ids of a user's newest `limit` events in gatehouse.
pub fn gh_newest(
    store: &Store,
    user: &str,
    limit: usize,
    cursor: Option<&str>,
) -> (Vec<u64>, Option<String>) {
    let f = EventFilter {
        user: Some(user.into()),
        ..Default::default()
    };
    let page = store.query_events(&f, limit, cursor).expect("query");
    (
        page.events.iter().map(|e| e.id.0).collect(),
        page.next_cursor,
    )
}

/// Figure 2 at one size. Returns the p50s of gatehouse, SQLite keyset, naive,
/// streaming and grep.
pub fn query_figure(
    p: &Params,
    size: usize,
    store: &Store,
    sql: &Sql,
    js: &Jsonl,
    rg: bool,
    rep: &mut Report,
) -> [f64; 5] {
    let label = short(size);
    let mut rng = Rng::new(size as u64);
    let users: Vec<String> = (0..p.fast_iters)
        .map(|_| user_name(rng.below(USERS)))
        .collect();

    // Same answers everywhere, or the comparison means nothing.
    for u in users.iter().take(3) {
        let (g, _) = gh_newest(store, u, 100, None);
        let s: Vec<u64> = sql
            .page(u, None, 100)
            .expect("sql")
            .iter()
            .map(|e| e.id as u64)
            .collect();
        let j: Vec<u64> = jsonl::streaming(&js.path, u, 100)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(g.len(), 100.min(g.len().max(s.len())));
        assert_eq!(g, s, "gatehouse and SQLite disagree for {u}");
        assert_eq!(g, j, "gatehouse and JSONL disagree for {u}");
    }
    if size == p.event_sizes[0] {
        let u = &users[0];
        rep.note(format!(
            "SQLite keyset plan: {}",
            sql.plan(sqlite::KEYSET_SQL, &[u, &i64::MAX, &i64::MAX, &100i64])
        ));
        rep.note(format!(
            "SQLite `id < ?` plan: {}",
            sql.plan(sqlite::KEYSET_BY_ID_SQL, &[u, &i64::MAX, &100i64])
        ));
    }

    // Warm up, then measure.
    for u in users.iter().take(200) {
        gh_newest(store, u, 100, None);
        sql.page(u, None, 100).expect("sql");
    }
    let (gh, sq) = sample2(
        users.len(),
        |i| gh_newest(store, &users[i], 100, None),
        |i| sql.page(&users[i], None, 100).expect("sql"),
    );
    let by_id_n = (users.len() / 4).max(50);
    let sq_id = sample(by_id_n, |i| {
        sql.page_by_id(&users[i], None, 100).expect("sql")
    });
    // The monitoring account always fills a page: the same 100 rows at every size.
    let (gh_full, sq_full) = sample2(
        users.len() / 4,
        |_| gh_newest(store, HEAVY_USER, 100, None),
        |_| sql.page(HEAVY_USER, None, 100).expect("sql"),
    );
    let (n_naive, n_stream, n_grep) = p.scan_iters(size);
    let _ = jsonl::streaming(&js.path, &users[0], 100);
    let naive = sample(n_naive, |i| jsonl::naive(&js.path, &users[i], 100));
    let streaming = sample(n_stream, |i| jsonl::streaming(&js.path, &users[i], 100));
    let grep = sample(n_grep, |i| {
        jsonl::external("grep", &js.path, &users[i], 100)
    });
    let rgl = rg.then(|| sample(n_grep, |i| jsonl::external("rg", &js.path, &users[i], 100)));

    let m = |q: &str| format!("newest-100 of one user, {q}, {label} events");
    let n = |l: &Lat| format!("{} samples", l.n);
    rep.row(
        NEWEST_100,
        m("p50"),
        Some(gh.p50_us),
        "SQLite keyset (user, ts) index",
        Some(sq.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&gh),
    );
    rep.row(
        NEWEST_100,
        m("p99"),
        Some(gh.p99_us),
        "SQLite keyset (user, ts) index",
        Some(sq.p99_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        NEWEST_100,
        m("p50"),
        Some(gh.p50_us),
        "SQLite `id < ? ORDER BY id`",
        Some(sq_id.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&sq_id),
    );
    rep.row(
        NEWEST_100,
        m("p50"),
        Some(gh.p50_us),
        "JSONL naive (read all, parse all)",
        Some(naive.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&naive),
    );
    rep.row(
        NEWEST_100,
        m("p99"),
        Some(gh.p99_us),
        "JSONL naive (read all, parse all)",
        Some(naive.p99_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        NEWEST_100,
        m("p50"),
        Some(gh.p50_us),
        "JSONL streaming substring scan",
        Some(streaming.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&streaming),
    );
    rep.row(
        NEWEST_100,
        m("p50"),
        Some(gh.p50_us),
        "grep -F | tail -n 100 (process)",
        Some(grep.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&grep),
    );
    rep.row(
        NEWEST_100,
        format!("newest-100 of `{HEAVY_USER}` (always a full page), p50, {label} events"),
        Some(gh_full.p50_us),
        "SQLite keyset (user, ts) index",
        Some(sq_full.p50_us),
        Unit::Micros,
        Better::Lower,
        format!(
            "p99 gatehouse {}, SQLite {}",
            fmt_us(gh_full.p99_us),
            fmt_us(sq_full.p99_us)
        ),
    );
    rep.full_page.push((size, gh_full.p50_us));
    if let Some(r) = rgl {
        rep.row(
            NEWEST_100,
            m("p50"),
            Some(gh.p50_us),
            "rg -F | tail -n 100 (process)",
            Some(r.p50_us),
            Unit::Micros,
            Better::Lower,
            n(&r),
        );
    }
    if size == 1_000_000 {
        rep.newest_1m = Some((gh.p50_us, gh.p99_us, sq.p50_us));
    }
    if size == p.event_sizes[0] {
        rep.newest_first = Some((gh.p50_us, gh.p99_us));
    }
    [
        gh.p50_us,
        sq.p50_us,
        naive.p50_us,
        streaming.p50_us,
        grep.p50_us,
    ]
}

/// Figure 3 at one size: page 1 and page 1,000 of the heavy user.
pub fn deep_figure(size: usize, store: &Store, sql: &Sql, rep: &mut Report) {
    const PAGE: usize = 100;
    const DEPTH: usize = 1_000;
    let label = short(size);
    let u = HEAVY_USER;

    // Walk to page 1,000 with cursors, timing the walk.
    let t = Instant::now();
    let mut cursor: Option<String> = None;
    let mut gh_last_ids = Vec::new();
    for _ in 0..DEPTH - 1 {
        let (_, next) = gh_newest(store, u, PAGE, cursor.as_deref());
        cursor = Some(next.expect("heavy user has 1,000 pages"));
    }
    let (ids, _) = gh_newest(store, u, PAGE, cursor.as_deref());
    gh_last_ids.extend(ids);
    let gh_walk = t.elapsed();
    let t = Instant::now();
    let mut below: Option<(i64, i64)> = None;
    for _ in 0..DEPTH - 1 {
        let page = sql.page(u, below, PAGE).expect("sql");
        let last = page.last().expect("full page");
        below = Some((last.ts, last.id));
    }
    let sql_page: Vec<u64> = sql
        .page(u, below, PAGE)
        .expect("sql")
        .iter()
        .map(|e| e.id as u64)
        .collect();
    let sql_walk = t.elapsed();
    let off: Vec<u64> = sql
        .page_offset(u, (DEPTH - 1) * PAGE, PAGE)
        .expect("sql")
        .iter()
        .map(|e| e.id as u64)
        .collect();
    assert_eq!(gh_last_ids, sql_page, "page 1,000 differs (keyset)");
    assert_eq!(gh_last_ids, off, "page 1,000 differs (offset)");

    let c = cursor.expect("cursor");
    let (gh1, sq1) = sample2(
        500,
        |_| gh_newest(store, u, PAGE, None),
        |_| sql.page(u, None, PAGE).expect("sql"),
    );
    let (gh1000, sq1000) = sample2(
        500,
        |_| gh_newest(store, u, PAGE, Some(&c)),
        |_| sql.page(u, below, PAGE).expect("sql"),
    );
    let off1000 = sample(30, |_| {
        sql.page_offset(u, (DEPTH - 1) * PAGE, PAGE).expect("sql")
    });
    let m = |w: &str| format!("{w} of `{u}` ({label} events), p50");
    rep.row(
        DEEP_PAGES,
        m("page 1"),
        Some(gh1.p50_us),
        "SQLite keyset",
        Some(sq1.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        DEEP_PAGES,
        m("page 1,000"),
        Some(gh1000.p50_us),
        "SQLite keyset",
        Some(sq1000.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        DEEP_PAGES,
        m("page 1,000"),
        Some(gh1000.p50_us),
        "SQLite OFFSET 99,900",
        Some(off1000.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        DEEP_PAGES,
        format!("walk pages 1 to 1,000 with cursors ({label} events), total"),
        Some(gh_walk.as_secs_f64() * 1e6),
        "SQLite keyset",
        Some(sql_walk.as_secs_f64() * 1e6),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.note(format!(
        "figure {DEEP_PAGES} at {label}: gatehouse page 1,000 / page 1 = {:.2}x; SQLite keyset {:.2}x; SQLite OFFSET page 1,000 / keyset page 1 = {:.0}x",
        gh1000.p50_us / gh1.p50_us,
        sq1000.p50_us / sq1.p50_us,
        off1000.p50_us / sq1.p50_us
    ));
}
