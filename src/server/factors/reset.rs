//! Removing every second factor of a user at once: the admin command and a
//! reload that removes or adds a name both do it.

use crate::store::now_ms;

/// Removes every second factor of `user` (TOTP, passkeys, recovery codes)
/// with an `mfa.reset` event naming `actor`. The message says what was done.
pub async fn reset_factors(
    store: &crate::store::Backend,
    user: &str,
    actor: &str,
) -> Result<String, crate::store::WriteError> {
    use crate::store::{EventKind, FactorChange, FactorStore, NewEvent};
    let event = NewEvent::now(EventKind::MfaReset)
        .user(user.to_string())
        .detail("method", "all")
        .detail("actor", actor);
    Ok(
        match store
            .change_factors(user, FactorChange::Reset, Some(event), now_ms())
            .await?
        {
            Ok(_) => format!(
                "removed every second factor of {}; they sign in with their password (and enroll again if one is required)\n",
                crate::terminal::escape(user)
            ),
            // A reset has nothing to refuse; said as it is all the same.
            Err(r) => format!("{r}\n"),
        },
    )
}
