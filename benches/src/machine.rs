//! Facts about the machine a run measured on: CPU, cores, memory, kernel and
//! the load average, which shows how much other work shared the box.

use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Total memory, in GiB.
pub fn memory() -> String {
    read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1_048_576.0))
        .unwrap_or_else(|| "unknown".into())
}

/// The kernel release.
pub fn kernel() -> String {
    read("/proc/sys/kernel/osrelease").trim().to_string()
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line a command prints ("unknown" when it cannot run).
pub fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The facts every report lists, as (name, value): UTC date, cores, CPU,
/// memory and kernel.
pub fn facts() -> Vec<(String, String)> {
    vec![
        (
            "date".into(),
            command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        ),
        ("nproc".into(), cores().to_string()),
        ("CPU".into(), cpu()),
        ("memory".into(), memory()),
        ("kernel".into(), kernel()),
    ]
}

/// One line: "2 cores, <CPU>, Linux <release>".
pub fn summary() -> String {
    format!("{} cores, {}, Linux {}", cores(), cpu(), kernel())
}
