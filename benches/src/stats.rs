//! Latency samples and their summaries, percentiles, medians and ratios: the
//! one definition of each that every figure of the suite uses.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The nearest-rank percentile of sorted samples: the smallest sample with at
/// least a fraction `q` of all samples at or below it. `None` when empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Percentile `q` (0 to 1) of latencies in whole microseconds, in any order
/// (NaN when empty).
pub fn percentile_us(samples_us: &[u32], q: f64) -> f64 {
    let mut s = samples_us.to_vec();
    s.sort_unstable();
    nearest_rank(&s, q).map_or(f64::NAN, f64::from)
}

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
        let pick = |q: f64| us(nearest_rank(samples, q).expect("non-empty"));
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

/// `a / b`, or `None` unless both are finite and positive (a missing or
/// failed measurement has no ratio).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0).then(|| a / b)
}

/// Whether a bigger or a smaller number is better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// gatehouse's advantage over a competitor: above 1 gatehouse is better by
/// that factor (throughput: gatehouse / competitor; latency, time and size:
/// competitor / gatehouse).
pub fn advantage(gatehouse: f64, competitor: f64, better: Better) -> Option<f64> {
    match better {
        Better::Higher => ratio(gatehouse, competitor),
        Better::Lower => ratio(competitor, gatehouse),
    }
}
