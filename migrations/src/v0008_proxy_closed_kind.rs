//! Schema 8: the audit event kind `proxy.closed` (code 27), recorded when
//! the built-in proxy cuts a WebSocket (its session ended, the server
//! stopped, or it sat idle). No table changes shape and no row is
//! rewritten; the step exists so that a build that does not know code 27
//! refuses a file that may hold it, with the clear "newer schema" error,
//! instead of reporting such events as damaged.

use redb::WriteTransaction;

use crate::MigrationError;

/// The kind names and codes schema 8 adds to [`crate::KIND_CODES`].
pub const NEW_KIND_CODES: [(&str, u8); 1] = [("proxy.closed", 27)];

pub fn apply(_tx: &WriteTransaction) -> Result<(), MigrationError> {
    Ok(())
}
