//! The JSONL competitor: an append-only log file, one compact JSON event per
//! line, queried the ways a server without an index does it.
//!
//! - naive: read the whole file, parse every line, filter, sort, slice;
//! - streaming: `BufRead` line by line, parse only lines that contain the
//!   user's `"user":"NAME"` substring, keep the last `limit` matches;
//! - `grep -F` (and `rg -F` when installed) as an external process piped into
//!   `tail -n LIMIT`, whose lines are then parsed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::data::{GenEvent, JsonEvent};

/// An append-only JSONL audit file.
pub struct Jsonl {
    pub path: PathBuf,
    out: BufWriter<File>,
}

impl Jsonl {
    pub fn create(path: &Path) -> Jsonl {
        let f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("create jsonl");
        Jsonl {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
        }
    }

    pub fn append(&mut self, events: &[GenEvent]) {
        for e in events {
            self.out
                .write_all(e.to_json_line().as_bytes())
                .expect("write jsonl");
            self.out.write_all(b"\n").expect("write jsonl");
        }
    }

    /// Flushes buffered lines so scans see them.
    pub fn flush(&mut self) {
        self.out.flush().expect("flush jsonl");
    }

    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

fn needle(user: &str) -> String {
    format!("\"user\":\"{user}\"")
}

/// Reads and parses the whole file, filters, sorts newest first, slices.
pub fn naive(path: &Path, user: &str, limit: usize) -> Vec<JsonEvent> {
    let text = std::fs::read_to_string(path).expect("read jsonl");
    let all: Vec<JsonEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("parse jsonl"))
        .collect();
    let mut mine: Vec<JsonEvent> = all
        .into_iter()
        .filter(|e| e.user.as_deref() == Some(user))
        .collect();
    mine.sort_by_key(|e| std::cmp::Reverse(e.id));
    mine.truncate(limit);
    mine
}

/// Streams lines, parses only those containing the user's substring, keeps
/// the last `limit` (the file is in time order).
pub fn streaming(path: &Path, user: &str, limit: usize) -> Vec<JsonEvent> {
    let pat = needle(user);
    let mut r = BufReader::with_capacity(1 << 16, File::open(path).expect("open jsonl"));
    let mut line = String::new();
    let mut last: VecDeque<JsonEvent> = VecDeque::with_capacity(limit + 1);
    loop {
        line.clear();
        if r.read_line(&mut line).expect("read line") == 0 {
            break;
        }
        if !line.contains(&pat) {
            continue;
        }
        let e: JsonEvent = serde_json::from_str(line.trim_end()).expect("parse jsonl");
        if e.user.as_deref() != Some(user) {
            continue;
        }
        if last.len() == limit {
            last.pop_front();
        }
        last.push_back(e);
    }
    last.into_iter().rev().collect()
}

/// Whether a program can be run (by looking it up on PATH).
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// `PROGRAM -F '"user":"NAME"' FILE | tail -n LIMIT`, then parses those lines.
pub fn external(program: &str, path: &Path, user: &str, limit: usize) -> Vec<JsonEvent> {
    let mut grep = Command::new(program)
        .arg("-F")
        .arg("--")
        .arg(needle(user))
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn grep");
    let tail = Command::new("tail")
        .arg("-n")
        .arg(limit.to_string())
        .stdin(grep.stdout.take().expect("grep stdout"))
        .output()
        .expect("run tail");
    grep.wait().expect("wait grep");
    let text = String::from_utf8(tail.stdout).expect("utf-8 lines");
    let mut out: Vec<JsonEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("parse jsonl"))
        .collect();
    out.reverse();
    out
}
