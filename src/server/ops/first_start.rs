//! Preparing the data dir before the store opens: the owner-only data dir,
//! the first admin when no users are configured (its password in an
//! owner-only file; not on the distributed store, where each node would
//! make another), and a warning about a database others can read.
//!
//! Every file gatehouse creates in the data dir is created owner-only
//! (mode 0600; the directory 0700) with the mode given at creation, so no
//! umask can leave a moment in which another local user could read it.

use std::path::Path;

use crate::config::{self, Config, Overrides, UserEntry};
use crate::server::error::ServerError;
use crate::server::password;

/// File holding the generated admin password on first start.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Creates the data dir (owner-only) and, when the config has no users,
/// the first admin; returns the config to run with.
pub(crate) fn prepare(mut config: Config, overrides: &Overrides) -> Result<Config, ServerError> {
    create_private_dir(&config.data_dir)?;
    if config.policy().is_empty() {
        if config.storage.is_some() {
            return Err(ServerError::NoUsers(config.path.clone()));
        }
        config = create_first_admin(config, overrides)?;
    }
    Ok(config)
}

/// Creates the `admin` user with a random password: its hash goes into the
/// config file, the password into `<data-dir>/admin-password` (mode 0600).
/// The password itself is never logged.
fn create_first_admin(config: Config, overrides: &Overrides) -> Result<Config, ServerError> {
    let password = password::random_password();
    let hash = password::hash_password(&password, &config.argon2)?;
    let pw_path = config.data_dir.join(ADMIN_PASSWORD_FILE);
    write_private(&pw_path, format!("{password}\n").as_bytes())?;
    config::append_user(
        &config.path,
        &UserEntry {
            name: "admin".into(),
            password_hash: hash,
            admin: true,
            ..UserEntry::default()
        },
    )?;
    tracing::warn!(
        config = %config.path.display(),
        password_file = %pw_path.display(),
        "no users configured: created user \"admin\"; its password is in the password file"
    );
    // Load again so that what runs is exactly what the file now says.
    let mut ov = overrides.clone();
    ov.config = Some(config.path.clone());
    ov.data_dir = Some(config.data_dir.clone());
    Ok(Config::load(&ov)?)
}

/// Creates the data dir, owner-only, if it does not exist yet (an existing
/// one keeps the mode its owner gave it).
fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| ServerError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Warns when a file made before files were created owner-only (or
/// loosened by hand) can be read by other local users.
pub(crate) fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "the database can be read by other users; `chmod 600` it"
            );
        }
    }
}

/// Writes a file only its owner can read, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let err = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(err)?;
    // An existing file keeps its mode through `open`: narrow it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Writes a file only its owner can read (created 0600), without syncing:
/// for files rewritten often whose loss costs nothing (the heartbeat).
pub(crate) async fn write_private_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).await?;
    f.write_all(bytes).await?;
    f.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        write_private(&path, b"x\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"y\n").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"y\n");
        let fresh = dir.path().join("fresh");
        create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
