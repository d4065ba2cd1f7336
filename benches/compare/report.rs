//! The report: rows of (figure, gatehouse, competitor, ratio), target checks,
//! notes and machine facts, written as Markdown and JSON and printed.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stats::{fmt_rate, fmt_us};

/// Whether a bigger or a smaller number is better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

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
    /// Figure number (1-8).
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
        let (g, c) = (self.gatehouse?, self.competitor?);
        if g <= 0.0 || c <= 0.0 || !g.is_finite() || !c.is_finite() {
            return None;
        }
        Some(match self.better {
            Better::Higher => g / c,
            Better::Lower => c / g,
        })
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
        println!("{}", table_line(&row));
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
        s.push_str(&table(&self.rows));
        let _ = writeln!(
            s,
            "\nFigures 6, 7 and the server's memory (HTTP, whole process): \
             `cargo bench --bench http` (docs/benchmarks-http.md).\n"
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

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let json = serde_json::to_string_pretty(self).expect("report serializes");
        std::fs::write(dir.join("report.json"), json)?;
        Ok(())
    }
}

fn table_line(r: &Row) -> String {
    let g = r
        .gatehouse
        .map(|v| r.unit.fmt(v))
        .unwrap_or_else(|| "-".into());
    let c = r
        .competitor
        .map(|v| r.unit.fmt(v))
        .unwrap_or_else(|| "-".into());
    let ratio = r
        .ratio()
        .map(|x| format!("{x:.2}x"))
        .unwrap_or_else(|| "-".into());
    let note = if r.note.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.note)
    };
    format!(
        "| {} | {}{} | {} | {}: {} | {} |",
        r.figure, r.measure, note, g, r.competitor_name, c, ratio
    )
}

/// The Markdown table of all rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| # | figure | gatehouse | competitor | ratio |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&table_line(r));
        s.push('\n');
    }
    s
}
