//! What the redb backend keeps in this process, as one node holds the file:
//! the failure counters ([`RegulationStore`]) and the passkey ceremonies
//! ([`CeremonyStore`]).

use super::RedbBackend;
use crate::domain::{BanSubject, EnrollerId, RegulationSettings, SessionToken, TokenHash};
use crate::store::ceremonies::{Busy, Entry as Ceremony, Purpose};
use crate::store::contract::{CeremonyStore, RegulationStore};
use crate::store::error::StoreError;
use crate::store::regulation::{AtLimit, Lease};

/// In process: the counters answer at once, so no future ever waits.
impl RegulationStore for RedbBackend {
    async fn reserve(
        &self,
        limits: &RegulationSettings,
        subjects: &[BanSubject],
        configured: bool,
        now_ms: u64,
    ) -> Result<Result<Lease, AtLimit>, StoreError> {
        Ok(self.regulator.reserve(limits, subjects, configured, now_ms))
    }

    async fn fail(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Result<Vec<(BanSubject, u64)>, StoreError> {
        Ok(self.regulator.fail(limits, lease, now_ms))
    }

    async fn succeed(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.regulator.succeed(limits, lease, now_ms);
        Ok(())
    }

    fn release(&self, limits: &RegulationSettings, lease: Lease, now_ms: u64) {
        self.regulator.release(limits, lease, now_ms);
    }

    async fn first_replay(
        &self,
        limits: &RegulationSettings,
        user: &str,
        step: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.regulator.first_replay(limits, user, step))
    }
}

/// In process: answered at once, so no future ever waits.
impl CeremonyStore for RedbBackend {
    async fn put_ceremony(
        &self,
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<SessionToken, StoreError> {
        Ok(self.ceremonies.put(purpose, user, by, state, now_ms))
    }

    async fn put_anonymous_ceremony(
        &self,
        ip: Option<std::net::IpAddr>,
        quota: usize,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<Result<SessionToken, Busy>, StoreError> {
        Ok(self.ceremonies.put_anonymous(ip, quota, state, now_ms))
    }

    async fn take_ceremony(
        &self,
        hash: TokenHash,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<Option<Ceremony>, StoreError> {
        Ok(self.ceremonies.take(hash, purpose, now_ms))
    }
}
