//! The WebAuthn relying party of the public origin, built once at start and
//! held in the shared state.

use std::sync::Arc;

use crate::identity::webauthn::{Passkeys, WebAuthnError};

/// The relying party of the public origin, built once at start: `None`
/// without a public origin, an error when the origin cannot use passkeys.
pub type Relying = Option<Result<Arc<Passkeys>, WebAuthnError>>;

/// [`Relying`] for `config`.
pub fn relying_party(config: &crate::config::Config) -> Relying {
    let origin = config.public_origin.as_ref()?;
    let built = Passkeys::new(origin).map(Arc::new);
    if let Err(e) = &built {
        tracing::warn!(origin = %origin, "passkeys are off: {e}");
    }
    Some(built)
}
