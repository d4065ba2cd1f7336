//! Time as the domain counts it: milliseconds (sessions, bans) and
//! microseconds (audit events) since the Unix epoch, from the system clock.

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    now_us() / 1_000
}

/// Microseconds since the Unix epoch, from the system clock. A clock set
/// before 1970 reads as 0 rather than failing.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A source of the current time, so that code depending on "now" can be
/// driven by a fixed or simulated clock in tests.
pub trait Clock: Send + Sync {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> u64;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.now_us() / 1_000
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        now_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_follow_microseconds() {
        let us = SystemClock.now_us();
        let ms = SystemClock.now_ms();
        assert!(ms >= us / 1_000 && ms <= us / 1_000 + 60_000);
    }
}
