//! Latency samples and their summary (p50, p99, mean), and small timing helpers.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Summary of a set of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Lat {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

impl Lat {
    pub fn of(samples: &mut [Duration]) -> Lat {
        if samples.is_empty() {
            return Lat {
                n: 0,
                p50_us: f64::NAN,
                p99_us: f64::NAN,
                mean_us: f64::NAN,
                max_us: f64::NAN,
            };
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let pick = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            us(samples[i])
        };
        let sum: Duration = samples.iter().sum();
        Lat {
            n: samples.len(),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            mean_us: us(sum) / samples.len() as f64,
            max_us: us(*samples.last().expect("non-empty")),
        }
    }
}

/// Runs `f` `n` times and summarises the latency of each call. `f` gets the
/// iteration number.
pub fn sample<T>(n: usize, mut f: impl FnMut(usize) -> T) -> Lat {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        std::hint::black_box(f(i));
        v.push(t.elapsed());
    }
    Lat::of(&mut v)
}

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

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Compact count: 100000 -> "100k", 1000000 -> "1M".
pub fn short(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Runs `f` and `g` alternately `n` times each and summarises each one's
/// latency. Alternating call by call makes both see the same machine: on a
/// box shared with other work, a burst of load hits both sides alike.
pub fn sample2<A, B>(
    n: usize,
    mut f: impl FnMut(usize) -> A,
    mut g: impl FnMut(usize) -> B,
) -> (Lat, Lat) {
    let mut a = Vec::with_capacity(n);
    let mut b = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        std::hint::black_box(f(i));
        a.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(g(i));
        b.push(t.elapsed());
    }
    (Lat::of(&mut a), Lat::of(&mut b))
}

/// The median of some numbers (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
