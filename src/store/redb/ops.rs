//! The write operations the writer applies, and what each returns. A batch of
//! them shares one write transaction and one fsync.

use std::net::IpAddr;

use super::oidc_ops::{OidcOp, OidcOutput};
use super::txn::Tx;
use crate::domain::*;
use crate::store::credentials::HeldCheck;
use crate::store::error::StoreError;
use crate::store::reports::PruneReport;
use crate::store::reports::SweepReport;

/// One write operation.
#[derive(Debug, Clone)]
pub enum Op {
    Append(NewEvent),
    CreateSession(NewSession),
    /// Creates a session and appends `event` (given the new session's public
    /// id) in the same transaction: a sign-in is acknowledged only when both
    /// its session and its audit record are durable, never one without the
    /// other.
    ///
    /// With a `check`, nothing is created (the output is
    /// [`OpOutput::CredentialsChanged`]) when the user's credentials changed
    /// since the password was checked: the check is read inside the same
    /// transaction, after every operation queued before this one.
    CreateSessionAudited {
        // Boxed: keeps `Op`, and so every queue slot, small.
        new: Box<NewSession>,
        event: NewEvent,
        check: Option<Box<HeldCheck>>,
    },
    Touch {
        hash: TokenHash,
        now_ms: u64,
    },
    RevokeByToken {
        hash: TokenHash,
        reason: RevokeReason,
        ip: Option<IpAddr>,
        now_ms: u64,
    },
    RevokeById {
        user: String,
        id: PublicId,
        reason: RevokeReason,
        actor: Option<String>,
        ip: Option<IpAddr>,
        now_ms: u64,
    },
    RevokeUser {
        user: String,
        keep: Option<PublicId>,
        reason: RevokeReason,
        actor: Option<String>,
        ip: Option<IpAddr>,
        now_ms: u64,
    },
    /// Removes up to `limit` of each: expired sessions, ran-out bans,
    /// expired pending sign-ins, access tokens, OpenID Connect codes and
    /// grants.
    Sweep {
        now_ms: u64,
        limit: usize,
    },
    AddBan {
        subject: BanSubject,
        until_ms: u64,
        reason: String,
        ip: Option<IpAddr>,
        now_ms: u64,
    },
    LiftBan {
        subject: BanSubject,
        reason: String,
        actor: Option<String>,
        now_ms: u64,
    },
    /// Applies a change to a user's second factors and, when it is made,
    /// appends `event` in the same transaction.
    ChangeFactors {
        user: String,
        // Boxed: a passkey is large, and every queue slot is an `Op`.
        change: Box<FactorChange>,
        event: Option<NewEvent>,
        now_ms: u64,
    },
    /// A pending sign-in, and the most its user may hold.
    CreatePending(Box<PendingSignIn>, usize),
    TakePending {
        hash: TokenHash,
        now_ms: u64,
    },
    /// Ends a pending sign-in and creates its session in one transaction:
    /// a pending state becomes a session at most once. Nothing is created
    /// when it is gone, expired, or of another user.
    CompletePending {
        hash: TokenHash,
        new: Box<NewSession>,
        event: NewEvent,
        check: Option<Box<HeldCheck>>,
    },
    StepUp {
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    },
    /// Removes up to `limit` of the oldest audit events with ids at or below
    /// `through` (retention), moving the hash-chain anchor forward.
    Prune {
        through: EventId,
        limit: usize,
    },
    /// Creates an access token and appends `token.created`; refused while
    /// `session` (the one asking) is not live, or at the user's cap.
    CreateToken {
        // Boxed: keeps `Op` small.
        new: Box<NewAccessToken>,
        session: Option<TokenHash>,
    },
    /// Records a use of an access token (coalesced like session touches).
    TouchToken {
        hash: TokenHash,
        now_ms: u64,
        ip: Option<IpAddr>,
    },
    RevokeToken {
        user: String,
        id: PublicId,
        how: Revocation,
    },
    RevokeUserTokens {
        user: String,
        how: Revocation,
    },
    /// An OpenID Connect write (boxed: keeps `Op` small).
    Oidc(Box<OidcOp>),
}

/// What an operation returned.
#[derive(Debug)]
pub enum OpOutput {
    Appended(EventId),
    Created(CreatedSession),
    /// A checked session creation found the user's credentials changed;
    /// nothing was written.
    CredentialsChanged,
    Touched(bool),
    RevokedOne(Option<PublicId>),
    Revoked(Vec<PublicId>),
    Swept(SweepReport),
    BanAdded,
    BanLifted(bool),
    Pruned(PruneReport),
    Factors(Result<Applied, FactorRefusal>),
    PendingCreated(SessionToken),
    Pending(Option<PendingSignIn>),
    /// A pending sign-in completed (`Some`), or it was not there (`None`).
    Completed(Option<CreatedSession>),
    TokenCreated(Result<CreatedAccessToken, TokenRefusal>),
    TokenTouched(bool),
    TokenRevoked(bool),
    TokensRevoked(Vec<PublicId>),
    Oidc(OidcOutput),
}

impl Op {
    /// Whether a batch may become durable through the commit log: appends,
    /// which the log records, and session touches, which may be lost (a
    /// lost touch only moves the idle deadline at the next one).
    pub fn loggable(&self) -> bool {
        matches!(self, Op::Append(_) | Op::Touch { .. })
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Append(_) => "append",
            Op::CreateSession(_) => "create_session",
            Op::CreateSessionAudited { .. } => "create_session_audited",
            Op::Touch { .. } => "touch",
            Op::RevokeByToken { .. } => "revoke_by_token",
            Op::RevokeById { .. } => "revoke_by_id",
            Op::RevokeUser { .. } => "revoke_user",
            Op::Sweep { .. } => "sweep",
            Op::AddBan { .. } => "add_ban",
            Op::LiftBan { .. } => "lift_ban",
            Op::Prune { .. } => "prune",
            Op::ChangeFactors { .. } => "change_factors",
            Op::CreatePending(..) => "create_pending",
            Op::TakePending { .. } => "take_pending",
            Op::CompletePending { .. } => "complete_pending",
            Op::StepUp { .. } => "step_up",
            Op::CreateToken { .. } => "create_token",
            Op::TouchToken { .. } => "touch_token",
            Op::RevokeToken { .. } => "revoke_token",
            Op::RevokeUserTokens { .. } => "revoke_user_tokens",
            Op::Oidc(op) => op.name(),
        }
    }

    pub(crate) fn apply(self, tx: &mut Tx<'_>) -> Result<OpOutput, StoreError> {
        Ok(match self {
            Op::Append(ev) => OpOutput::Appended(tx.append_event(ev)?),
            Op::CreateSession(new) => OpOutput::Created(tx.create_session(new)?),
            Op::CreateSessionAudited { new, event, check } => {
                if check.is_some_and(|c| !c.holds(&new.user)) {
                    return Ok(OpOutput::CredentialsChanged);
                }
                let created = tx.create_session(*new)?;
                tx.append_event(event.session(created.session.id))?;
                OpOutput::Created(created)
            }
            Op::Touch { hash, now_ms } => OpOutput::Touched(tx.touch_session(hash, now_ms)?),
            Op::RevokeByToken {
                hash,
                reason,
                ip,
                now_ms,
            } => OpOutput::RevokedOne(tx.revoke_by_token(hash, reason, ip, now_ms)?),
            Op::RevokeById {
                user,
                id,
                reason,
                actor,
                ip,
                now_ms,
            } => {
                let done = tx.revoke_by_id(&user, id, reason, actor.as_deref(), ip, now_ms)?;
                OpOutput::RevokedOne(done.then_some(id))
            }
            Op::RevokeUser {
                user,
                keep,
                reason,
                actor,
                ip,
                now_ms,
            } => OpOutput::Revoked(tx.revoke_user(
                &user,
                keep,
                reason,
                actor.as_deref(),
                ip,
                now_ms,
            )?),
            Op::Sweep { now_ms, limit } => {
                let mut report = tx.sweep_sessions(now_ms, limit)?;
                report.bans_lifted = tx.sweep_bans(now_ms, limit)?;
                let (pending, more) = tx.sweep_pending(now_ms, limit)?;
                report.pending = pending;
                report.more |= more;
                let (tokens, more) = tx.sweep_tokens(now_ms, limit)?;
                report.tokens_expired = tokens;
                report.more |= more;
                let (codes, grants, more) = tx.sweep_oidc(now_ms, limit)?;
                report.oidc_codes = codes;
                report.oidc_grants = grants;
                report.more |= more;
                OpOutput::Swept(report)
            }
            Op::AddBan {
                subject,
                until_ms,
                reason,
                ip,
                now_ms,
            } => {
                tx.add_ban(&subject, until_ms, &reason, ip, now_ms)?;
                OpOutput::BanAdded
            }
            Op::LiftBan {
                subject,
                reason,
                actor,
                now_ms,
            } => OpOutput::BanLifted(tx.lift_ban(&subject, &reason, actor.as_deref(), now_ms)?),
            Op::Prune { through, limit } => OpOutput::Pruned(tx.prune_events(through, limit)?),
            Op::ChangeFactors {
                user,
                change,
                event,
                now_ms,
            } => OpOutput::Factors(tx.change_factors(&user, *change, event, now_ms)?),
            Op::CreatePending(p, max) => OpOutput::PendingCreated(tx.create_pending(*p, max)?),
            Op::TakePending { hash, now_ms } => OpOutput::Pending(tx.take_pending(hash, now_ms)?),
            Op::CompletePending {
                hash,
                new,
                event,
                check,
            } => {
                let now = new.now_ms;
                match tx.take_pending(hash, now)? {
                    Some(p) if p.user == new.user => {
                        if check.is_some_and(|c| !c.holds(&new.user)) {
                            return Ok(OpOutput::CredentialsChanged);
                        }
                        let created = tx.create_session(*new)?;
                        tx.append_event(event.session(created.session.id))?;
                        OpOutput::Completed(Some(created))
                    }
                    _ => OpOutput::Completed(None),
                }
            }
            Op::StepUp {
                hash,
                method,
                event,
                now_ms,
            } => OpOutput::Completed(tx.step_up_session(hash, method, event, now_ms)?),
            Op::CreateToken { new, session } => {
                OpOutput::TokenCreated(tx.create_token(*new, session)?)
            }
            Op::TouchToken { hash, now_ms, ip } => {
                OpOutput::TokenTouched(tx.touch_token(hash, now_ms, ip)?)
            }
            Op::RevokeToken { user, id, how } => {
                OpOutput::TokenRevoked(tx.revoke_token_by_id(&user, id, &how)?)
            }
            Op::RevokeUserTokens { user, how } => {
                OpOutput::TokensRevoked(tx.revoke_user_tokens(&user, &how)?)
            }
            Op::Oidc(op) => OpOutput::Oidc(op.apply(tx)?),
        })
    }
}
