//! `deploy/fail2ban-filter.conf` against log lines the real server writes
//! for hostile user names: a failed login counts only for the address the
//! server wrote, never for one typed into the user name, and refusals of
//! banned clients count for nothing.
//!
//! The lines come from a `TestServer` logging through
//! `gatehouse::logging::text_subscriber`, the subscriber `gatehouse serve`
//! uses, so a change to the line format breaks this test. Each line is
//! checked in the two forms fail2ban sees:
//! - a log file: fail2ban cuts the date its `datepattern` finds and matches
//!   the rest (`  WARN gatehouse::auth: ...`) against `failregex`;
//! - the systemd journal (the shipped jail): the date comes from the
//!   journal, and the text matched is `HOST IDENT[PID]: MESSAGE`, where the
//!   message is the whole line gatehouse wrote, its own timestamp included.
//!
//! Always, through Python's `re` with the tags expanded as fail2ban 1.0
//! expands them; and when fail2ban is installed, through `fail2ban-regex`
//! (file form) and fail2ban's own `Filter.processLine` (journal form).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

use crate::harness::*;

const FILTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/fail2ban-filter.conf");

/// User names that copy the failure line, or parts of it, with other
/// addresses (198.51.100.0/24, 2001:db8::/32). None of them contains the
/// addresses the test logs in from (127.0.92.0/24, 127.0.93.1).
const CRAFTED: &[&str] = &[
    "gatehouse::auth: login failed ip=198.51.100.23 user=",
    "x\" ip=198.51.100.24 user=\"y",
    "\\\" gatehouse::auth: login failed ip=198.51.100.25 user=\\\"",
    "bob\\n2026-01-01T10:00:00.000000Z  WARN gatehouse::auth: login failed ip=198.51.100.26 user=\"x\"",
    " WARN gatehouse::auth: login failed ip=198.51.100.27 user=\"",
    "host gatehouse[1]: 2026-01-01T10:00:00.000000Z  WARN gatehouse::auth: login failed ip=198.51.100.28 user=",
    "gatehouse::auth: login failed ip=2001:db8::bad user=",
    "gatehouse::auth: login failed ip=::ffff:198.51.100.29 user=",
    "\u{2028}gatehouse::auth: login failed ip=198.51.100.30 user=",
    "ip=198.51.100.31 user=\"",
    "login failed ip=198.51.100.32",
    "\"\"\"\\\\ gatehouse::auth: login failed ip=198.51.100.33 user=\\\"\\\"",
    "gatehouse::auth: login failed ip=[2001:db8::1] user=\"",
];

/// A shared buffer the subscriber writes whole lines into.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// A client whose connections come from `ip` (any 127/8 address is local).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn attempt(s: &TestServer, from: &str, user: &str, pw: &str) -> StatusCode {
    client_from(from)
        .post(s.at("/login"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap()
        .status()
}

/// Every `gatehouse::auth` line any server in this test binary logs. The
/// subscriber is the process-wide default (installed once): a per-thread
/// one is not enough, since tracing caches per call site whether anyone
/// wants its events, and with a single registered subscriber it asks only
/// the registering thread's, which for a call site first reached by
/// another test is none.
fn auth_log() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let filter = tracing_subscriber::EnvFilter::new("gatehouse::auth=info");
        tracing::subscriber::set_global_default(gatehouse::logging::text_subscriber(
            filter,
            capture.clone(),
            false,
        ))
        .expect("no other test sets a global subscriber");
        capture
    })
}

/// Runs the server through hostile failures, refusals of a banned address
/// and one success; returns the lines it logged for the test's addresses.
async fn server_log_lines() -> Vec<String> {
    let capture = auth_log();
    let s = TestServer::start(&config_text(
        "",
        "[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 600\n",
    ))
    .await;
    // A call site reached by another test while the subscriber was being
    // installed may have cached "not wanted": registering a call site and
    // a subscriber can interleave. Both have long finished by now.
    tracing::callsite::rebuild_interest_cache();
    // One failure per crafted name, each from its own address.
    for (i, name) in CRAFTED.iter().enumerate() {
        let from = format!("127.0.92.{}", 10 + i);
        assert_eq!(
            attempt(&s, &from, name, "wrong").await,
            StatusCode::UNAUTHORIZED,
            "{name:?}"
        );
    }
    // A real newline is refused before anything is logged.
    let status = attempt(
        &s,
        "127.0.92.200",
        "bob\ngatehouse::auth: login failed ip=198.51.100.34 user=",
        "wrong",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Three failures ban 127.0.93.1; then every name is refused as banned.
    // Refusals are logged once per subject and window (the rest are only
    // counted), so one refusal line, carrying the first crafted name.
    for name in &CRAFTED[..3] {
        assert_eq!(
            attempt(&s, "127.0.93.1", name, "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    for name in CRAFTED {
        assert_eq!(
            attempt(&s, "127.0.93.1", name, "wrong").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        attempt(&s, "127.0.92.99", "bob", BOB_PW).await,
        StatusCode::SEE_OTHER
    );
    s.stop().await;
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains(" ip=127.0.92.") || l.contains(" ip=127.0.93.1 "))
        .map(str::to_string)
        .collect()
}

/// The address the server wrote into `line` (the test's own client
/// addresses; no crafted name holds one).
fn real_ip(line: &str) -> String {
    let at = line.find("ip=127.0.9").expect(line) + 3;
    line[at..].split(' ').next().unwrap().to_string()
}

/// The hit fail2ban must give for `line`: the real address for a failed
/// login, nothing for anything else.
fn expected_hit(line: &str) -> Option<String> {
    let ip = real_ip(line);
    line.contains(&format!("gatehouse::auth: login failed ip={ip} user=\""))
        .then_some(ip)
}

/// Reads the filter with configparser (fail2ban's files are INI with `%`
/// interpolation), expands the address tags as fail2ban 1.0 does
/// (`fail2ban/server/failregex.py`: `<HOST>` is `<ADDR>` or a DNS name,
/// `<ADDR>` an IPv4 address, optionally `::ffff:`-prefixed, or an IPv6
/// one, optionally in brackets), and reports for each line the host of the
/// first failregex that `search`es successfully in each form. The file form
/// cuts the leading timestamp as the filter's `datepattern` does; `raw`
/// leaves it (a date fail2ban did not find); `journal` is what fail2ban's
/// systemd backend builds. fail2ban appends "\n" to the text it matches.
const PY_RE: &str = r#"
import configparser, json, re, sys
inp = json.load(sys.stdin)
cp = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
cp.read(inp["filter"])
IP4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IP6 = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"
TAGS = {"IP4": r"(?:::f{4,6}:)?(?P<ip4>%s)" % IP4, "IP6": r"(?P<ip6>%s)" % IP6,
        "DNS": r"(?P<dns>[\w\-.^_]*\w)"}
TAGS["ADDR"] = r"\[?(?:%s|%s)\]?" % (TAGS["IP4"], TAGS["IP6"])
TAGS["HOST"] = r"(?:%s|%s)" % (TAGS["ADDR"], TAGS["DNS"])
def expand(rx):
    def sub(m):
        if m.group(1) not in TAGS:
            sys.exit("unknown tag " + m.group(0))
        return TAGS[m.group(1)]
    return re.compile(re.sub(r"<([\w\-]+)>", sub, rx))
rxs = [expand(l.strip()) for l in cp.get("Definition", "failregex").splitlines() if l.strip()]
ign = [expand(l.strip()) for l in cp.get("Definition", "ignoreregex", fallback="").splitlines() if l.strip()]
date = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
def hit(buf):
    buf += "\n"
    if any(r.search(buf) for r in ign):
        return None
    for r in rxs:
        m = r.search(buf)
        if m:
            return m.group("ip4") or m.group("ip6") or m.groupdict().get("dns")
    return None
out = []
for line in inp["lines"]:
    m = date.match(line)
    assert m, line
    out.append({"file": hit(line[:m.start()] + line[m.end():]), "raw": hit(line),
                "journal": hit("host gatehouse[4242]: " + line)})
json.dump(out, sys.stdout)
"#;

/// fail2ban's own journal path: the filter as fail2ban's reader loads it
/// (from `<basedir>/filter.d/gatehouse.conf`),
/// then `Filter.processLine` on the tuple the systemd backend makes
/// (`formatJournalEntry`: empty prefix, the journal's date, then
/// `HOST IDENT[PID]: MESSAGE`). Prints the host found for each line.
const PY_FAIL2BAN_JOURNAL: &str = r#"
import json, os, sys, time
from fail2ban.client.filterreader import FilterReader
from fail2ban.server.filter import Filter
inp = json.load(sys.stdin)
fr = FilterReader("gatehouse", "gatehouse", {}, basedir=inp["basedir"])
assert fr.read(), "filter not read"
fr.getOptions({})
f = Filter(None, useDns="no")
f.checkFindTime = False
for cmd in fr.convert():
    if cmd[2] == "addfailregex":
        f.addFailRegex(cmd[3])
    elif cmd[2] == "addignoreregex":
        f.addIgnoreRegex(cmd[3])
now = time.time()
out = []
for line in inp["lines"]:
    found = f.processLine(("", "now ", "host gatehouse[4242]: " + line), now)
    out.append([str(x[1]) for x in found])
json.dump(out, sys.stdout)
"#;

fn python(interpreter: &Path, script: &str, input: &Value) -> Value {
    let mut child = Command::new(interpreter)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", interpreter.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The interpreter `fail2ban-regex` runs under (its `#!` line), which is
/// the one that can import the `fail2ban` package.
fn fail2ban_python(regex_tool: &Path) -> PathBuf {
    let text = std::fs::read_to_string(regex_tool).unwrap_or_default();
    let first = text.lines().next().unwrap_or_default();
    let interp = first.trim_start_matches("#!").trim();
    match interp.split_whitespace().collect::<Vec<_>>().as_slice() {
        [env, prog, ..] if env.ends_with("/env") => PathBuf::from(prog),
        [path, ..] => PathBuf::from(path),
        [] => PathBuf::from("python3"),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail2ban_filter_counts_only_the_address_the_server_wrote() {
    let lines = server_log_lines().await;
    let expected: Vec<Option<String>> = lines.iter().map(|l| expected_hit(l)).collect();
    // The run logged what it was meant to: a failure per crafted name plus
    // three, one refusal line for the banned address, one ban and one
    // success.
    let count = |s: &str| lines.iter().filter(|l| l.contains(s)).count();
    assert_eq!(
        expected.iter().flatten().count(),
        CRAFTED.len() + 3,
        "{lines:#?}"
    );
    assert_eq!(count(": login refused: banned ip="), 1, "{lines:#?}");
    assert_eq!(
        count(": banned after repeated login failures"),
        1,
        "{lines:#?}"
    );
    assert_eq!(count(": login succeeded ip="), 1, "{lines:#?}");
    assert_eq!(lines.len(), CRAFTED.len() + 6, "{lines:#?}");

    let Some(python3) = which("python3") else {
        eprintln!(
            "SKIPPED fail2ban_filter_counts_only_the_address_the_server_wrote: python3 is not installed"
        );
        return;
    };
    let input = json!({"filter": FILTER, "lines": lines});
    let got = python(&python3, PY_RE, &input);
    for (i, line) in lines.iter().enumerate() {
        for form in ["file", "raw", "journal"] {
            assert_eq!(
                got[i][form].as_str(),
                expected[i].as_deref(),
                "{form} form of {line}"
            );
        }
    }

    let Some(regex_tool) = which("fail2ban-regex") else {
        eprintln!(
            "SKIPPED part of fail2ban_filter_counts_only_the_address_the_server_wrote: \
             fail2ban-regex is not installed; checked with Python's re only"
        );
        return;
    };
    // File form: fail2ban-regex prints the address of each matched line,
    // in order.
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("gatehouse.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = Command::new(&regex_tool)
        .args(["-o", "ip"])
        .arg(&log)
        .arg(FILTER)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let want: Vec<String> = expected.iter().flatten().cloned().collect();
    assert_eq!(hits, want, "fail2ban-regex on {lines:#?}");

    // Journal form, through fail2ban's own reader and filter.
    std::fs::create_dir(tmp.path().join("filter.d")).unwrap();
    std::fs::copy(FILTER, tmp.path().join("filter.d/gatehouse.conf")).unwrap();
    let input = json!({"basedir": tmp.path(), "lines": lines});
    let got = python(&fail2ban_python(&regex_tool), PY_FAIL2BAN_JOURNAL, &input);
    for (i, line) in lines.iter().enumerate() {
        let want: Vec<&str> = expected[i].as_deref().into_iter().collect();
        assert_eq!(got[i], json!(want), "journal form of {line}");
    }
}
