//! The PostgreSQL schema steps: numbered SQL files under `sql/postgres/`,
//! embedded in the build. The server applies the ones a database lacks at
//! start, in one transaction under an advisory lock, and records the
//! version reached in `gatehouse_schema`. Like the redb steps, a step never
//! changes after it has shipped.

/// One schema step: the version it brings the database to, and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub version: u32,
    pub sql: &'static str,
}

/// Every step, oldest first.
pub const STEPS: &[Step] = &[Step {
    version: 1,
    sql: include_str!("../sql/postgres/0001_events.sql"),
}];

/// The newest PostgreSQL schema this build understands.
pub const LATEST: u32 = 1;

/// The advisory lock key that serialises schema upgrades (and the chain
/// leader's election uses the next one): "gh" and a step number.
pub const SCHEMA_LOCK: i64 = 0x6768_0000_0000_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_latest_is_the_last() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.version as usize, i + 1);
            assert!(!s.sql.trim().is_empty());
        }
        assert_eq!(STEPS.last().map(|s| s.version), Some(LATEST));
    }
}
