//! Whole-store facts and verification on the distributed backend: the
//! chain's walk in PostgreSQL, the live-state counts from Redis's indexes,
//! and what Redis can tell cheaply (its durability settings now, entries
//! set aside from the outbox). No check scans Redis's keys: that would
//! block every node.

use super::Distributed;
use crate::store::contract::{SessionStore, StoreCheck, TokenStore};
use crate::store::error::StoreError;
use crate::store::reports::{CheckReport, StoreStats};

impl StoreCheck for Distributed {
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = self.audit.stats().await?;
        stats.sessions = self.redis.session_count().await?;
        stats.bans = self.redis.ban_count().await?;
        stats.tokens = self.redis.token_count().await?;
        Ok(stats)
    }

    async fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = self.audit.check().await?.into_report();
        report.sessions = self.redis.session_count().await?;
        report.bans = self.redis.ban_count().await?;
        report.tokens = self.redis.token_count().await?;
        report.pending_signins = self.redis.pending_count().await?;
        report.users_with_factors = self.redis.users_with_factors().await?;
        if let Some(why) = self.redis.durability_now().await? {
            report.problem(why);
        }
        let aside = self
            .outbox
            .set_aside_count()
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?;
        if aside > 0 {
            report.problem(format!(
                "{aside} outbox entries were set aside as unreadable and are not in the chain \
                 (see the stream `<prefix>:outbox:unreadable`)"
            ));
        }
        Ok(report)
    }
}
