//! The sign-in state machine: which step a person is at, and what each
//! answer leads to. Pure: plain values in, decisions out; handlers only
//! translate HTTP to it and back, and the store keeps the pending state.
//!
//! ```text
//!  password ok ──┬─ no factor, none required ───────────────> session [password]
//!                ├─ a factor enrolled ──> Pending(SecondFactor) ──ok──> session [password, method]
//!                └─ none, but required ──> Pending(Enroll) ──enrolled──> session [password, method]
//!  Pending past its deadline ──> Expired (start again)
//! ```
//!
//! A pending state never counts as signed in: it is not a session.

use crate::domain::FactorSet;
pub use crate::domain::Method;

/// The second factors a user has enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    pub totp: bool,
    /// Passkeys or security keys registered.
    pub webauthn: bool,
    /// Unused recovery codes.
    pub recovery_codes: usize,
}

impl From<&FactorSet> for Factors {
    fn from(f: &FactorSet) -> Self {
        Factors {
            totp: f.totp.is_some(),
            webauthn: !f.passkeys.is_empty(),
            recovery_codes: f.recovery.len(),
        }
    }
}

impl Factors {
    /// Whether any factor is enrolled (recovery codes alone do not count:
    /// they back up a factor, they are not one).
    pub fn any(&self) -> bool {
        self.totp || self.webauthn
    }

    /// The methods a second step may use, in the order pages offer them.
    pub fn methods(&self) -> Vec<Method> {
        let mut m = Vec::new();
        if self.webauthn {
            m.push(Method::WebAuthn);
        }
        if self.totp {
            m.push(Method::Totp);
        }
        if self.any() && self.recovery_codes > 0 {
            m.push(Method::Recovery);
        }
        m
    }
}

/// What the pending state waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// One of these methods.
    SecondFactor(Vec<Method>),
    /// A factor must be enrolled before anything else.
    Enrollment,
}

/// A password step passed, the rest not yet: bound to one browser by its
/// own cookie, short-lived, never a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub user: String,
    pub need: Need,
    pub remember_me: bool,
    /// Milliseconds since the epoch after which the state is void.
    pub expires_ms: u64,
}

/// Where a correct password leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPassword {
    /// A session at once, signed in with these methods.
    Session(Vec<Method>),
    /// A second step first.
    Pending(Pending),
}

/// The outcome of a second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Create the session, recording these methods.
    Session(Vec<Method>),
    /// Wrong answer: the pending state stays; the failure is counted
    /// against the user like a wrong password.
    Retry,
    /// The pending state is past its deadline: start again.
    Expired,
    /// This method is not one the pending state accepts.
    NotOffered,
}

/// A correct password for `user` with `factors`, at `now_ms`. `required`:
/// the user must have a second factor (global or per-user policy).
pub fn after_password(
    user: &str,
    factors: Factors,
    required: bool,
    remember_me: bool,
    now_ms: u64,
    pending_ttl_ms: u64,
) -> AfterPassword {
    let need = if factors.any() {
        Need::SecondFactor(factors.methods())
    } else if required {
        Need::Enrollment
    } else {
        return AfterPassword::Session(vec![Method::Password]);
    };
    AfterPassword::Pending(Pending {
        user: user.to_string(),
        need,
        remember_me,
        expires_ms: now_ms.saturating_add(pending_ttl_ms),
    })
}

/// A second step with `method` at `now_ms`; `ok` is whether its check
/// passed (a right code, a valid assertion, an unused recovery code, or for
/// enrollment a confirmed new factor).
pub fn second_step(pending: &Pending, method: Method, ok: bool, now_ms: u64) -> Next {
    if now_ms >= pending.expires_ms {
        return Next::Expired;
    }
    let offered = match &pending.need {
        Need::SecondFactor(methods) => methods.contains(&method),
        // Enrollment is of a factor, never of a recovery code.
        Need::Enrollment => matches!(method, Method::Totp | Method::WebAuthn),
    };
    if !offered || !method.is_second_factor() {
        return Next::NotOffered;
    }
    if !ok {
        return Next::Retry;
    }
    Next::Session(vec![Method::Password, method])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: u64 = 300_000;

    fn factors(totp: bool, webauthn: bool, codes: usize) -> Factors {
        Factors {
            totp,
            webauthn,
            recovery_codes: codes,
        }
    }

    #[test]
    fn table() {
        let none = factors(false, false, 0);
        assert_eq!(
            after_password("a", none, false, false, 0, TTL),
            AfterPassword::Session(vec![Method::Password])
        );
        let AfterPassword::Pending(p) = after_password("a", none, true, true, 10, TTL) else {
            panic!("a required factor must be enrolled first");
        };
        assert_eq!(
            (p.need.clone(), p.expires_ms, p.remember_me),
            (Need::Enrollment, 10 + TTL, true)
        );
        assert_eq!(
            second_step(&p, Method::Recovery, true, 11),
            Next::NotOffered
        );
        assert_eq!(
            second_step(&p, Method::Totp, true, 11),
            Next::Session(vec![Method::Password, Method::Totp])
        );

        let AfterPassword::Pending(p) =
            after_password("a", factors(true, false, 10), false, false, 0, TTL)
        else {
            panic!("an enrolled factor is always asked for");
        };
        assert_eq!(
            p.need,
            Need::SecondFactor(vec![Method::Totp, Method::Recovery])
        );
        assert_eq!(second_step(&p, Method::WebAuthn, true, 1), Next::NotOffered);
        assert_eq!(second_step(&p, Method::Password, true, 1), Next::NotOffered);
        assert_eq!(second_step(&p, Method::Totp, false, 1), Next::Retry);
        assert_eq!(
            second_step(&p, Method::Recovery, true, 1),
            Next::Session(vec![Method::Password, Method::Recovery])
        );
        assert_eq!(second_step(&p, Method::Totp, true, TTL), Next::Expired);
        // Recovery codes alone are not a factor.
        assert_eq!(
            after_password("a", factors(false, false, 10), false, false, 0, TTL),
            AfterPassword::Session(vec![Method::Password])
        );
    }

    fn method() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::Password),
            Just(Method::Totp),
            Just(Method::WebAuthn),
            Just(Method::Recovery)
        ]
    }

    proptest! {
        /// Model: for any factors, policy and sequence of second steps, a
        /// session appears only (a) at once when no factor is enrolled or
        /// required, or (b) after a passing step, before the deadline, with
        /// a method the user has; and it records the password and exactly
        /// that method. Nothing after the deadline ever succeeds.
        #[test]
        fn sessions_only_through_a_passing_offered_step(
            totp in any::<bool>(), webauthn in any::<bool>(), codes in 0usize..11,
            required in any::<bool>(), start in 0u64..1_000_000,
            steps in proptest::collection::vec((method(), any::<bool>(), 0u64..400_000), 0..12),
        ) {
            let f = factors(totp, webauthn, codes);
            match after_password("u", f, required, false, start, TTL) {
                AfterPassword::Session(m) => {
                    prop_assert!(!f.any() && !required);
                    prop_assert_eq!(m, vec![Method::Password]);
                }
                AfterPassword::Pending(p) => {
                    prop_assert!(f.any() || required);
                    for (m, ok, later) in steps {
                        let now = start + later;
                        let next = second_step(&p, m, ok, now);
                        let has = match m {
                            Method::Totp => totp || !f.any(),
                            Method::WebAuthn => webauthn || !f.any(),
                            Method::Recovery => f.any() && codes > 0,
                            Method::Password => false,
                        };
                        let want = if now >= p.expires_ms {
                            Next::Expired
                        } else if !has {
                            Next::NotOffered
                        } else if !ok {
                            Next::Retry
                        } else {
                            Next::Session(vec![Method::Password, m])
                        };
                        prop_assert_eq!(next, want);
                    }
                }
            }
        }
    }
}
