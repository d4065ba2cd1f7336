//! Which refusals to record in the audit trail: at most one `access.denied`
//! event per user, rule and minute, so that a flood of refused requests
//! (a script retrying, a page polling) cannot fill the trail. Every refusal
//! is still counted in the metrics and logged at debug level.
//!
//! The memory is a bounded set of (user, rule, minute) keys. When it is
//! full, keys of past minutes go first; if every key is of this minute, the
//! refusal is not recorded (it is still counted): the bound holds whatever
//! the number of users and rules.

use std::collections::HashSet;
use std::sync::Mutex;

/// Length of a recording window.
const WINDOW_MS: u64 = 60_000;

/// Refusals already recorded this minute.
pub struct Denials {
    max: usize,
    seen: Mutex<HashSet<(String, Option<usize>, u64)>>,
}

impl Denials {
    /// At most `max` keys remembered.
    pub fn new(max: usize) -> Denials {
        Denials {
            max: max.max(1),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Whether a refusal of `user` by `rule` (`None`: the default policy) at
    /// `now_ms` should become an audit event.
    pub fn should_record(&self, user: &str, rule: Option<usize>, now_ms: u64) -> bool {
        let minute = now_ms / WINDOW_MS;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&(user.to_string(), rule, minute)) {
            return false;
        }
        if seen.len() >= self.max {
            seen.retain(|k| k.2 == minute);
            if seen.len() >= self.max {
                return false;
            }
        }
        seen.insert((user.to_string(), rule, minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_user_rule_and_minute() {
        let d = Denials::new(100);
        let t = 1_800_000_000_000;
        assert!(d.should_record("bob", Some(2), t));
        for i in 1..1000 {
            assert!(!d.should_record("bob", Some(2), t + i * 10));
        }
        assert!(d.should_record("bob", Some(3), t), "another rule");
        assert!(d.should_record("bob", None, t), "the default policy");
        assert!(d.should_record("eve", Some(2), t), "another user");
        assert!(
            d.should_record("bob", Some(2), t + WINDOW_MS),
            "the next minute"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let d = Denials::new(10);
        let t = 1_800_000_000_000;
        let recorded = (0..1000)
            .filter(|i| d.should_record(&format!("u{i}"), Some(0), t))
            .count();
        assert_eq!(recorded, 10, "at most `max` records a minute");
        assert!(d.seen.lock().unwrap().len() <= 10);
        // A new minute frees the memory.
        assert!(d.should_record("u0", Some(0), t + WINDOW_MS));
        assert!(d.seen.lock().unwrap().len() <= 10);
    }
}
