//! Schema 4: the audit event kind `access.denied` (code 16), recorded when
//! an access rule refuses a signed-in user. No table changes shape and no
//! row is rewritten; the step exists so that a build that does not know
//! code 16 refuses a file that may hold it, with the clear "newer schema"
//! error, instead of reporting such events as damaged.

use redb::WriteTransaction;

use crate::MigrationError;

/// The kind names and codes schema 4 adds to [`crate::KIND_CODES`].
pub const NEW_KIND_CODES: [(&str, u8); 1] = [("access.denied", 16)];

pub fn apply(_tx: &WriteTransaction) -> Result<(), MigrationError> {
    Ok(())
}
