//! Second factors as the store keeps them: each user's enrolled factors ([`FactorSet`]), the
//! changes made to them ([`FactorChange`], applied by one pure function that
//! every backend and the conformance model share), and a sign-in waiting for
//! its second step ([`PendingSignIn`]).
//!
//! Secrets never sit here in the clear: a TOTP secret is sealed
//! (`identity::secret_box`) before it reaches a `FactorSet`, recovery codes
//! are SHA-256 hashes, and a passkey is a public key.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

use super::method::Method;

/// Most passkeys one user may register.
pub const MAX_PASSKEYS: usize = 16;

/// Longest passkey name kept.
pub const MAX_PASSKEY_NAME: usize = 64;

/// An enrolled TOTP factor.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    /// The secret, sealed with the data directory's key.
    pub sealed: Vec<u8>,
    pub enrolled_ms: u64,
    /// Step of the last accepted code: only later steps are accepted.
    pub last_step: Option<u64>,
}

/// Who is adding a factor: a session, named by its public id (which a
/// step-up keeps), or a pending sign-in, named by the hash of its token.
/// An unconfirmed TOTP secret belongs to the one that began it: only it
/// sees the secret and may confirm it, so another sign-in with the same
/// password never learns a secret someone else is enrolling.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollerId {
    Session([u8; 16]),
    Pending([u8; 32]),
}

impl fmt::Debug for EnrollerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pending hash is not a credential, but it names one: show
        // only which kind of enroller this is.
        f.write_str(match self {
            EnrollerId::Session(_) => "EnrollerId::Session",
            EnrollerId::Pending(_) => "EnrollerId::Pending",
        })
    }
}

/// A TOTP secret shown to the user and not yet confirmed with a code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrollment {
    pub sealed: Vec<u8>,
    pub started_ms: u64,
    /// The session or pending sign-in that began it (schema 7).
    pub by: EnrollerId,
}

/// A registered passkey or security key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passkey {
    /// Our id for it, used in URLs to rename or remove it.
    pub id: [u8; 16],
    pub name: String,
    /// The authenticator's credential id (indexed: a passkey sign-in names
    /// only this).
    pub credential_id: Vec<u8>,
    /// The public key and its signature counter, as the WebAuthn library
    /// serialises them.
    pub credential: Vec<u8>,
    pub created_ms: u64,
    pub last_used_ms: Option<u64>,
}

/// Every factor of one user. Stored as one row per user; a user with
/// nothing enrolled has no row.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorSet {
    pub totp: Option<TotpFactor>,
    pub totp_enrollment: Option<TotpEnrollment>,
    /// SHA-256 of each unused recovery code.
    pub recovery: Vec<[u8; 32]>,
    pub passkeys: Vec<Passkey>,
}

impl fmt::Debug for FactorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorSet")
            .field("totp", &self.totp.is_some())
            .field("totp_enrollment", &self.totp_enrollment.is_some())
            .field("recovery_codes", &self.recovery.len())
            .field("passkeys", &self.passkeys.len())
            .finish()
    }
}

/// One change to a user's factors.
#[derive(Clone, PartialEq, Eq)]
pub enum FactorChange {
    /// Starts TOTP enrollment by `by` with a fresh sealed secret (replacing
    /// one not yet confirmed, whoever began it). Refused when TOTP is
    /// already enrolled.
    BeginTotp {
        sealed: Vec<u8>,
        by: EnrollerId,
    },
    /// Confirms the secret `by` began with a code that matched at `step`.
    /// `recovery` is stored when the user has no recovery codes yet.
    ConfirmTotp {
        step: u64,
        recovery: Vec<[u8; 32]>,
        by: EnrollerId,
    },
    /// A TOTP code that matched at `step`: accepted once, later steps only.
    UseTotp {
        step: u64,
    },
    RemoveTotp,
    /// Spends the recovery code with this hash.
    UseRecovery {
        hash: [u8; 32],
    },
    /// Replaces every recovery code.
    SetRecovery {
        hashes: Vec<[u8; 32]>,
    },
    /// Registers a passkey for `by`; `recovery` as for `ConfirmTotp`.
    AddPasskey {
        passkey: Passkey,
        recovery: Vec<[u8; 32]>,
        by: EnrollerId,
    },
    RenamePasskey {
        id: [u8; 16],
        name: String,
    },
    RemovePasskey {
        id: [u8; 16],
    },
    /// A passkey signed in: its updated credential (signature counter).
    UsePasskey {
        credential_id: Vec<u8>,
        credential: Vec<u8>,
    },
    /// Removes everything (an administrator's reset).
    Reset,
}

impl fmt::Debug for FactorChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FactorChange::BeginTotp { .. } => "BeginTotp",
            FactorChange::ConfirmTotp { .. } => "ConfirmTotp",
            FactorChange::UseTotp { .. } => "UseTotp",
            FactorChange::RemoveTotp => "RemoveTotp",
            FactorChange::UseRecovery { .. } => "UseRecovery",
            FactorChange::SetRecovery { .. } => "SetRecovery",
            FactorChange::AddPasskey { .. } => "AddPasskey",
            FactorChange::RenamePasskey { .. } => "RenamePasskey",
            FactorChange::RemovePasskey { .. } => "RemovePasskey",
            FactorChange::UsePasskey { .. } => "UsePasskey",
            FactorChange::Reset => "Reset",
        })
    }
}

/// Why a change was not made. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactorRefusal {
    #[error("an authenticator app is already enrolled")]
    TotpEnrolled,
    #[error("no authenticator app enrollment was started")]
    NoEnrollment,
    #[error("no authenticator app is enrolled")]
    NoTotp,
    #[error("that code was already used")]
    Replayed,
    #[error("that recovery code is not valid")]
    NoSuchCode,
    #[error("no such passkey")]
    NoSuchPasskey,
    #[error("that passkey is already registered")]
    PasskeyExists,
    #[error("too many passkeys")]
    TooManyPasskeys,
    /// A pending sign-in may enroll only a user's first factor: once one
    /// exists, the sign-in must pass it instead.
    #[error("a second factor is already set up: sign in with it")]
    NotFirstFactor,
}

/// What an applied change leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Recovery codes were stored by this change (the first factor).
    pub recovery_set: bool,
    /// Unused recovery codes after the change.
    pub recovery_left: usize,
}

impl FactorSet {
    /// Whether a second factor is enrolled (recovery codes back one up;
    /// they are not one).
    pub fn any(&self) -> bool {
        self.totp.is_some() || !self.passkeys.is_empty()
    }

    /// Whether nothing at all is stored (the row can go).
    pub fn is_empty(&self) -> bool {
        self.totp.is_none()
            && self.totp_enrollment.is_none()
            && self.recovery.is_empty()
            && self.passkeys.is_empty()
    }

    /// The second-step methods this user can use, in the order pages offer
    /// them.
    pub fn methods(&self) -> Vec<Method> {
        let mut m = Vec::new();
        if !self.passkeys.is_empty() {
            m.push(Method::WebAuthn);
        }
        if self.totp.is_some() {
            m.push(Method::Totp);
        }
        if self.any() && !self.recovery.is_empty() {
            m.push(Method::Recovery);
        }
        m
    }

    /// Applies `change` at `now_ms`; on refusal `self` is unchanged.
    pub fn apply(&mut self, change: FactorChange, now_ms: u64) -> Result<Applied, FactorRefusal> {
        let mut recovery_set = false;
        if let FactorChange::BeginTotp { by, .. }
        | FactorChange::ConfirmTotp { by, .. }
        | FactorChange::AddPasskey { by, .. } = &change
            && matches!(by, EnrollerId::Pending(_))
            && self.any()
        {
            return Err(FactorRefusal::NotFirstFactor);
        }
        match change {
            FactorChange::BeginTotp { sealed, by } => {
                if self.totp.is_some() {
                    return Err(FactorRefusal::TotpEnrolled);
                }
                self.totp_enrollment = Some(TotpEnrollment {
                    sealed,
                    started_ms: now_ms,
                    by,
                });
            }
            FactorChange::ConfirmTotp { step, recovery, by } => {
                if self.totp.is_some() {
                    return Err(FactorRefusal::TotpEnrolled);
                }
                if self.totp_enrollment.as_ref().is_none_or(|e| e.by != by) {
                    return Err(FactorRefusal::NoEnrollment);
                }
                let e = self
                    .totp_enrollment
                    .take()
                    .ok_or(FactorRefusal::NoEnrollment)?;
                self.totp = Some(TotpFactor {
                    sealed: e.sealed,
                    enrolled_ms: now_ms,
                    last_step: Some(step),
                });
                recovery_set = self.first_recovery(recovery);
            }
            FactorChange::UseTotp { step } => {
                let t = self.totp.as_mut().ok_or(FactorRefusal::NoTotp)?;
                if t.last_step.is_some_and(|last| step <= last) {
                    return Err(FactorRefusal::Replayed);
                }
                t.last_step = Some(step);
            }
            FactorChange::RemoveTotp => {
                if self.totp.take().is_none() && self.totp_enrollment.take().is_none() {
                    return Err(FactorRefusal::NoTotp);
                }
                self.totp_enrollment = None;
                self.drop_orphan_recovery();
            }
            FactorChange::UseRecovery { hash } => {
                // Every stored hash is compared, in constant time each.
                let at = self.recovery.iter().fold(None, |found, h| {
                    let eq: bool = subtle::ConstantTimeEq::ct_eq(&h[..], &hash[..]).into();
                    found.or(eq.then_some(*h))
                });
                let Some(h) = at.filter(|_| self.any()) else {
                    return Err(FactorRefusal::NoSuchCode);
                };
                self.recovery.retain(|x| *x != h);
            }
            FactorChange::SetRecovery { hashes } => {
                self.recovery = hashes;
                recovery_set = true;
            }
            FactorChange::AddPasskey {
                passkey, recovery, ..
            } => {
                if self.passkeys.len() >= MAX_PASSKEYS {
                    return Err(FactorRefusal::TooManyPasskeys);
                }
                if self
                    .passkeys
                    .iter()
                    .any(|p| p.credential_id == passkey.credential_id || p.id == passkey.id)
                {
                    return Err(FactorRefusal::PasskeyExists);
                }
                self.passkeys.push(passkey);
                recovery_set = self.first_recovery(recovery);
            }
            FactorChange::RenamePasskey { id, name } => {
                let p = self
                    .passkeys
                    .iter_mut()
                    .find(|p| p.id == id)
                    .ok_or(FactorRefusal::NoSuchPasskey)?;
                p.name = name;
            }
            FactorChange::RemovePasskey { id } => {
                let before = self.passkeys.len();
                self.passkeys.retain(|p| p.id != id);
                if self.passkeys.len() == before {
                    return Err(FactorRefusal::NoSuchPasskey);
                }
                self.drop_orphan_recovery();
            }
            FactorChange::UsePasskey {
                credential_id,
                credential,
            } => {
                let p = self
                    .passkeys
                    .iter_mut()
                    .find(|p| p.credential_id == credential_id)
                    .ok_or(FactorRefusal::NoSuchPasskey)?;
                p.credential = credential;
                p.last_used_ms = Some(now_ms);
            }
            FactorChange::Reset => *self = FactorSet::default(),
        }
        Ok(Applied {
            recovery_set,
            recovery_left: self.recovery.len(),
        })
    }

    /// Stores `codes` when the user has none (the first factor enrolled).
    fn first_recovery(&mut self, codes: Vec<[u8; 32]>) -> bool {
        if self.recovery.is_empty() && !codes.is_empty() {
            self.recovery = codes;
            true
        } else {
            false
        }
    }

    /// Recovery codes back up a factor: with the last factor gone they go
    /// too, so that they cannot outlive what they stand in for.
    fn drop_orphan_recovery(&mut self) {
        if !self.any() {
            self.recovery.clear();
        }
    }
}

/// A sign-in whose password step passed and whose second step has not:
/// bound to one browser by its own cookie, short-lived, never a session.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub user: String,
    /// The user has no factor and must enroll one before anything else.
    pub enroll: bool,
    pub remember_me: bool,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("user", &self.user)
            .field("enroll", &self.enroll)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: EnrollerId = EnrollerId::Session([7; 16]);

    fn key(n: u8) -> Passkey {
        Passkey {
            id: [n; 16],
            name: format!("key {n}"),
            credential_id: vec![n; 8],
            credential: vec![],
            created_ms: 0,
            last_used_ms: None,
        }
    }

    #[test]
    fn totp_enrolls_once_and_refuses_replay() {
        let mut f = FactorSet::default();
        assert_eq!(
            f.apply(
                FactorChange::ConfirmTotp {
                    step: 1,
                    recovery: vec![],
                    by: ME,
                },
                0
            ),
            Err(FactorRefusal::NoEnrollment)
        );
        f.apply(
            FactorChange::BeginTotp {
                sealed: vec![1],
                by: ME,
            },
            0,
        )
        .unwrap();
        let a = f
            .apply(
                FactorChange::ConfirmTotp {
                    step: 5,
                    recovery: vec![[1; 32], [2; 32]],
                    by: ME,
                },
                1,
            )
            .unwrap();
        assert!(a.recovery_set && a.recovery_left == 2 && f.any());
        assert_eq!(
            f.apply(FactorChange::UseTotp { step: 5 }, 2),
            Err(FactorRefusal::Replayed)
        );
        f.apply(FactorChange::UseTotp { step: 6 }, 2).unwrap();
        assert_eq!(
            f.apply(
                FactorChange::BeginTotp {
                    sealed: vec![2],
                    by: ME
                },
                3
            ),
            Err(FactorRefusal::TotpEnrolled)
        );
    }

    #[test]
    fn recovery_codes_are_spent_once_and_go_with_the_last_factor() {
        let mut f = FactorSet::default();
        f.apply(
            FactorChange::AddPasskey {
                passkey: key(1),
                recovery: vec![[1; 32], [2; 32]],
                by: ME,
            },
            0,
        )
        .unwrap();
        assert_eq!(
            f.apply(FactorChange::UseRecovery { hash: [1; 32] }, 1)
                .unwrap()
                .recovery_left,
            1
        );
        assert_eq!(
            f.apply(FactorChange::UseRecovery { hash: [1; 32] }, 1),
            Err(FactorRefusal::NoSuchCode)
        );
        f.apply(FactorChange::RemovePasskey { id: [1; 16] }, 2)
            .unwrap();
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn passkeys_are_unique_and_capped() {
        let mut f = FactorSet::default();
        for n in 0..MAX_PASSKEYS as u8 {
            f.apply(
                FactorChange::AddPasskey {
                    passkey: key(n),
                    recovery: vec![],
                    by: ME,
                },
                0,
            )
            .unwrap();
        }
        assert_eq!(
            f.apply(
                FactorChange::AddPasskey {
                    passkey: key(0),
                    recovery: vec![],
                    by: ME,
                },
                0
            ),
            Err(FactorRefusal::TooManyPasskeys)
        );
        f.apply(FactorChange::RemovePasskey { id: [3; 16] }, 0)
            .unwrap();
        assert_eq!(
            f.apply(
                FactorChange::AddPasskey {
                    passkey: key(0),
                    recovery: vec![],
                    by: ME,
                },
                0
            ),
            Err(FactorRefusal::PasskeyExists)
        );
    }

    /// An unconfirmed secret is confirmed only by the one that began it,
    /// and a pending sign-in enrolls only a first factor.
    #[test]
    fn enrollment_belongs_to_its_enroller() {
        let other = EnrollerId::Session([8; 16]);
        let pending = EnrollerId::Pending([9; 32]);
        let mut f = FactorSet::default();
        f.apply(
            FactorChange::BeginTotp {
                sealed: vec![1],
                by: ME,
            },
            0,
        )
        .unwrap();
        let confirm = |by| FactorChange::ConfirmTotp {
            step: 1,
            recovery: vec![],
            by,
        };
        assert_eq!(f.apply(confirm(other), 1), Err(FactorRefusal::NoEnrollment));
        assert_eq!(
            f.apply(confirm(pending), 1),
            Err(FactorRefusal::NoEnrollment)
        );
        f.apply(confirm(ME), 1).unwrap();
        // Now the user has a factor: a pending sign-in cannot add another.
        let add = |by| FactorChange::AddPasskey {
            passkey: key(1),
            recovery: vec![],
            by,
        };
        assert_eq!(f.apply(add(pending), 2), Err(FactorRefusal::NotFirstFactor));
        f.apply(add(ME), 2).unwrap();
        let mut g = FactorSet::default();
        g.apply(add(pending), 3).unwrap();
        assert_eq!(
            g.apply(
                FactorChange::BeginTotp {
                    sealed: vec![2],
                    by: pending
                },
                4
            ),
            Err(FactorRefusal::NotFirstFactor)
        );
    }
}
