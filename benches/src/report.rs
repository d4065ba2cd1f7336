//! The report every bench prints and writes: number formatting, the one
//! Markdown table layout of the suite, and the `bench-results/` directory at
//! the workspace root.

use std::path::PathBuf;

use serde::Serialize;

/// Human form of a latency in microseconds.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "n/a".into()
    } else if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} us")
    }
}

/// Human form of a rate.
pub fn fmt_rate(per_s: f64, unit: &str) -> String {
    if !per_s.is_finite() {
        return "n/a".into();
    }
    let s = if per_s >= 100.0 {
        group(per_s.round() as u64)
    } else {
        format!("{per_s:.1}")
    };
    format!("{s} {unit}/s")
}

/// A ratio as "0.89x", or "-" when there is none.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into())
}

/// Kibibytes (as `/proc/<pid>/status` gives them) in MiB.
pub fn fmt_mib_kb(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Compact count: 100000 -> "100k", 1000000 -> "1M".
pub fn short(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// One printed line of a results table, already formatted.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The suite-wide figure number (see [`crate::figure`]).
    pub figure: u8,
    pub measure: String,
    pub gatehouse: String,
    pub competitor: String,
    pub ratio: Option<f64>,
}

/// The table's header, as printed before the first line.
pub const TABLE_HEAD: &str =
    "| # | figure | gatehouse | competitor | ratio |\n| --- | --- | --- | --- | --- |";

impl Line {
    /// The line as a Markdown table row.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} |",
            self.figure,
            self.measure,
            self.gatehouse,
            self.competitor,
            fmt_ratio(self.ratio)
        )
    }
}

/// The Markdown table of some lines.
pub fn table<'a>(lines: impl IntoIterator<Item = &'a Line>) -> String {
    let mut s = format!("{TABLE_HEAD}\n");
    for l in lines {
        s.push_str(&l.markdown());
        s.push('\n');
    }
    s
}

/// `bench-results/` at the workspace root, where every bench writes.
pub fn results_dir() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .unwrap_or(crate_dir)
        .join("bench-results")
}

/// Writes `<stem>.md` and `<stem>.json` into [`results_dir`]; returns the
/// Markdown file's path.
pub fn write_results(
    stem: &str,
    markdown: &str,
    json: &impl Serialize,
) -> std::io::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let md = dir.join(format!("{stem}.md"));
    std::fs::write(&md, markdown)?;
    let text = serde_json::to_string_pretty(json).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("{stem}.json")), text)?;
    Ok(md)
}
