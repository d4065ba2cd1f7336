//! The redb backend's bans, audit trail and whole-store checks
//! ([`BanStore`], [`AuditStore`], [`StoreCheck`]).

use std::future::{Future, ready};

use super::RedbBackend;
use crate::domain::{Ban, BanSubject, Event, EventFilter, EventId, EventPage, NewBan, NewEvent};
use crate::store::contract::{AuditStore, BanStore, StoreCheck};
use crate::store::error::{QueryError, StoreError, WriteError};
use crate::store::redb::ops::{Op, OpOutput};
use crate::store::redb::writer::unreachable_output;
use crate::store::reports::{AuditCounts, CheckReport, PruneReport, StoreStats};

impl BanStore for RedbBackend {
    fn ban(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Ban>, StoreError>> + Send {
        ready(self.store.ban(subject, now_ms))
    }

    #[inline]
    fn ban_now(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> Option<Result<Option<Ban>, StoreError>> {
        self.spot_reads.then(|| self.store.ban_hot(subject, now_ms))
    }

    fn bans(&self, now_ms: u64) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send {
        ready(self.store.bans(now_ms))
    }

    async fn add_ban(&self, ban: NewBan) -> Result<(), WriteError> {
        let op = Op::AddBan {
            subject: ban.subject,
            until_ms: ban.until_ms,
            reason: ban.reason,
            ip: ban.ip,
            now_ms: ban.now_ms,
        };
        match self.submit(op).await? {
            OpOutput::BanAdded => Ok(()),
            other => unreachable_output("add_ban", other),
        }
    }

    async fn lift_ban(
        &self,
        subject: &BanSubject,
        reason: &str,
        actor: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, WriteError> {
        let op = Op::LiftBan {
            subject: subject.clone(),
            reason: reason.to_string(),
            actor: actor.map(str::to_string),
            now_ms,
        };
        match self.submit(op).await? {
            OpOutput::BanLifted(lifted) => Ok(lifted),
            other => unreachable_output("lift_ban", other),
        }
    }
}

impl AuditStore for RedbBackend {
    async fn append(&self, event: NewEvent) -> Result<EventId, WriteError> {
        match self.submit(Op::Append(event)).await? {
            OpOutput::Appended(id) => Ok(id),
            other => unreachable_output("append", other),
        }
    }

    fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<EventPage, QueryError>> + Send {
        let filter = filter.clone();
        let cursor = cursor.map(str::to_string);
        self.blocking(move |s| s.query_events(&filter, limit, cursor.as_deref()))
    }

    fn events_after(
        &self,
        after: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.blocking(move |s| s.events_after(after, limit))
    }

    fn oldest_events(
        &self,
        below: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.blocking(move |s| s.oldest_events(below, limit))
    }

    async fn prune(&self, through: EventId, limit: usize) -> Result<PruneReport, WriteError> {
        match self.submit(Op::Prune { through, limit }).await? {
            OpOutput::Pruned(r) => Ok(r),
            other => unreachable_output("prune", other),
        }
    }

    fn audit_counts(
        &self,
        top: usize,
    ) -> impl Future<Output = Result<AuditCounts, StoreError>> + Send {
        self.blocking(move |s| s.audit_counts(top))
    }
}

impl StoreCheck for RedbBackend {
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send {
        self.blocking(|s| s.stats())
    }

    fn check(&self) -> impl Future<Output = Result<CheckReport, StoreError>> + Send {
        self.blocking(|s| s.check())
    }
}
