//! The comparison's report: rows of (figure, gatehouse, competitor, ratio)
//! with their numbers and units, the project's targets judged on them, notes
//! and machine facts, written as `bench-results/report.md` and `.json` and
//! printed as each row is measured.

use std::fmt::Write as _;
use std::path::PathBuf;

use gatehouse_benches::figure;
use gatehouse_benches::report::{Line, fmt_rate, fmt_us, short, table, write_results};
use gatehouse_benches::stats::{Better, advantage};
use serde::Serialize;

use crate::data::HEAVY_USER;

/// What a number measures, for formatting.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Microseconds of latency or time.
    Micros,
    /// Operations per second; the string names the operation.
    Rate(String),
    /// Bytes per event.
    BytesPerEvent,
    /// A dimensionless factor.
    Factor,
}

impl Unit {
    pub fn fmt(&self, v: f64) -> String {
        match self {
            Unit::Micros => fmt_us(v),
            Unit::Rate(what) => fmt_rate(v, what),
            Unit::BytesPerEvent => format!("{v:.0} B/event"),
            Unit::Factor => format!("{v:.2}x"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The suite-wide figure number (see `gatehouse_benches::figure`).
    pub figure: u8,
    pub measure: String,
    pub gatehouse: Option<f64>,
    pub competitor_name: String,
    pub competitor: Option<f64>,
    pub unit: Unit,
    pub better: Better,
    pub note: String,
    /// gatehouse's advantage (see [`Row::ratio`]), stored for JSON readers.
    pub ratio: Option<f64>,
}

impl Row {
    /// gatehouse's advantage: >1 means gatehouse is better by that factor.
    pub fn ratio(&self) -> Option<f64> {
        advantage(self.gatehouse?, self.competitor?, self.better)
    }

    /// The row as the suite's table prints it.
    pub fn line(&self) -> Line {
        let fmt = |v: Option<f64>| v.map(|v| self.unit.fmt(v)).unwrap_or_else(|| "-".into());
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.note)
        };
        Line {
            figure: self.figure,
            measure: format!("{}{note}", self.measure),
            gatehouse: fmt(self.gatehouse),
            competitor: format!("{}: {}", self.competitor_name, fmt(self.competitor)),
            ratio: self.ratio(),
        }
    }
}

/// A project target and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// Everything the run produced.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub command: String,
    pub machine: Vec<(String, String)>,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    pub total_seconds: f64,
    /// Figures the targets are judged on, filled as they are measured.
    #[serde(skip)]
    pub newest_1m: Option<(f64, f64, f64)>,
    #[serde(skip)]
    pub newest_first: Option<(f64, f64)>,
    #[serde(skip)]
    pub flat: Option<(f64, f64)>,
    #[serde(skip)]
    pub gh_append_best: Option<f64>,
    #[serde(skip)]
    pub gh_append_256: Option<(f64, f64)>,
    #[serde(skip)]
    pub bytes_1m: Option<(f64, f64)>,
    /// (size, p50) of the always-full newest-100 page.
    #[serde(skip)]
    pub full_page: Vec<(usize, f64)>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &mut self,
        figure: u8,
        measure: impl Into<String>,
        gatehouse: Option<f64>,
        competitor_name: impl Into<String>,
        competitor: Option<f64>,
        unit: Unit,
        better: Better,
        note: impl Into<String>,
    ) {
        let mut row = Row {
            figure,
            measure: measure.into(),
            gatehouse,
            competitor_name: competitor_name.into(),
            competitor,
            unit,
            better,
            note: note.into(),
            ratio: None,
        };
        row.ratio = row.ratio();
        println!("{}", row.line().markdown());
        self.rows.push(row);
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("note: {s}");
        self.notes.push(s);
    }

    pub fn target(&mut self, target: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.targets.push(Target {
            target: target.into(),
            measured: measured.into(),
            met,
        });
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# gatehouse store vs competitors ({} mode)\n", self.mode);
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        for (k, v) in &self.machine {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let _ = writeln!(
            s,
            "\nRatio is gatehouse's advantage: above 1 gatehouse is better by that factor \
             (throughput: gatehouse / competitor; latency, time and size: competitor / gatehouse).\n"
        );
        let lines: Vec<Line> = self.rows.iter().map(Row::line).collect();
        s.push_str(&table(&lines));
        let _ = writeln!(
            s,
            "\nFigures {}, {} and {} (HTTP, whole process): \
             `cargo bench --bench http` (docs/benchmarks-http.md).\n",
            figure::VERIFY,
            figure::LOGIN_FLOOD,
            figure::MEMORY
        );
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "## Targets\n\n| target | measured | met |\n| --- | --- | --- |"
            );
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    t.target,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let _ = writeln!(s, "\nTotal run time: {:.0} s", self.total_seconds);
        s
    }

    /// Writes `report.md` and `report.json`; returns the Markdown file's path.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        write_results("report", &self.markdown(), self)
    }
}

/// Judges the project's targets on the figures measured.
pub fn targets(rep: &mut Report) {
    if let Some((p50, p99, _)) = rep.newest_1m {
        rep.target(
            "newest-100 for one user under 100 us in-process (p50 at 1M)",
            format!("p50 {}, p99 {}", fmt_us(p50), fmt_us(p99)),
            p50 < 100.0,
        );
    }
    if let Some((a, b)) = rep.flat {
        rep.target(
            "newest-100 no slower at 1M than at 100k (p50 within 10%)",
            format!("{} at 100k, {} at 1M ({:.2}x)", fmt_us(a), fmt_us(b), b / a),
            b <= a * 1.10,
        );
    }
    if let (Some(&(s0, a)), Some(&(s1, b))) = (rep.full_page.first(), rep.full_page.get(1)) {
        rep.target(
            format!(
                "newest-100 of `{HEAVY_USER}` (always 100 rows) no slower at {} than at {} (p50 within 10%)",
                short(s1),
                short(s0)
            ),
            format!("{} vs {} ({:.2}x)", fmt_us(a), fmt_us(b), b / a),
            b <= a * 1.10,
        );
    }
    if let Some(best) = rep.gh_append_best {
        rep.target(
            "durable append at least 50k events/s with group commit (best of 1/16/256 writers)",
            fmt_rate(best, "events"),
            best >= 50_000.0,
        );
    }
    if let Some((g, _, s)) = rep.newest_1m {
        rep.target(
            "newest-100 at least 5x faster than SQLite keyset (p50 at 1M)",
            format!("{:.2}x ({} vs {})", s / g, fmt_us(g), fmt_us(s)),
            s / g >= 5.0,
        );
    }
    if let Some((g, s)) = rep.gh_append_256 {
        rep.target(
            "durable append at least 2x SQLite FULL with batching (256 writers)",
            format!(
                "{:.2}x ({} vs {})",
                g / s,
                fmt_rate(g, "events"),
                fmt_rate(s, "events")
            ),
            g / s >= 2.0,
        );
    }
    if let Some((g, s)) = rep.bytes_1m {
        rep.target(
            "file no larger than SQLite's (1M events)",
            format!("{g:.0} vs {s:.0} bytes/event"),
            g <= s,
        );
    }
}
