//! The guards' part of the store's interface: the failure counters behind
//! bans ([`RegulationStore`]) and passkey ceremonies in flight
//! ([`CeremonyStore`]). Both are state every node must share, kept in
//! process by the redb backend.

use crate::domain::{BanSubject, EnrollerId, RegulationSettings, SessionToken, TokenHash};
use crate::store::ceremonies::{Busy, Entry as Ceremony, Purpose};
use crate::store::error::StoreError;
use crate::store::regulation::{AtLimit, Lease};
use std::future::Future;

/// The failure counters behind bans: every node counts against the same
/// ones. An attempt reserves its place before its check (attempts in flight
/// count toward the limit), then its [`Lease`] is settled once, as a
/// failure or a success, or released. A backend that shares the counters
/// gives a lease a deadline, so one whose holder died stops counting by
/// itself: a release never waits. The limits come with every call.
pub trait RegulationStore: Send + Sync {
    /// Reserves one attempt against each of `subjects` (the user name, the
    /// client's IP); `configured`: the name is a configured user, whose
    /// counter is never pushed out. `Ok(Err(AtLimit))`: a subject's
    /// failures in the window and attempts in flight already reach the
    /// limit, and nothing was reserved.
    fn reserve(
        &self,
        limits: &RegulationSettings,
        subjects: &[BanSubject],
        configured: bool,
        now_ms: u64,
    ) -> impl Future<Output = Result<Result<Lease, AtLimit>, StoreError>> + Send;

    /// The attempt failed: counted against every subject. Returns the
    /// subjects whose failures reached the limit with the end of their
    /// ban, for the caller to store ([`BanStore::add_ban`]); their counters
    /// start again.
    fn fail(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<(BanSubject, u64)>, StoreError>> + Send;

    /// The attempt succeeded: released, and the user name's failures
    /// forgotten (the IP's stay).
    fn succeed(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases `lease` uncounted, without waiting. A backend that shares
    /// its counters may apply it a moment later, but always before this
    /// handle's next counter operation answers (a barrier the conformance
    /// suite relies on); an unsettled lease ends by its deadline anyway.
    fn release(&self, limits: &RegulationSettings, lease: Lease, now_ms: u64);

    /// Whether a replayed TOTP code of `user` at `step` is to count as a
    /// failure: only the first replay of each step is.
    fn first_replay(
        &self,
        limits: &RegulationSettings,
        user: &str,
        step: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Passkey ceremonies in flight: each is kept under a fresh token between
/// its two requests and taken exactly once, by whichever node the finish
/// reaches. Bounded: a user has one per purpose; anonymous ones (a passkey
/// alone) have a quota per client and a cap in all, and a flood from a few
/// clients never pushes out another's.
pub trait CeremonyStore: Send + Sync {
    /// Keeps `user`'s ceremony of `purpose`, started by `by` (for a
    /// registration), ending the user's earlier one of that purpose; the
    /// token its cookie carries.
    fn put_ceremony(
        &self,
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now_ms: u64,
    ) -> impl Future<Output = Result<SessionToken, StoreError>> + Send;

    /// Keeps an anonymous ceremony started by a client at `ip`, which may
    /// have `quota` open; `Ok(Err(Busy))` when it may not have another.
    fn put_anonymous_ceremony(
        &self,
        ip: Option<std::net::IpAddr>,
        quota: usize,
        state: Vec<u8>,
        now_ms: u64,
    ) -> impl Future<Output = Result<Result<SessionToken, Busy>, StoreError>> + Send;

    /// Takes the live ceremony `hash` of `purpose`, once: a second take, a
    /// take for another purpose (which burns it) or a take past its life
    /// finds nothing.
    fn take_ceremony(
        &self,
        hash: TokenHash,
        purpose: Purpose,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Ceremony>, StoreError>> + Send;
}
