//! Secrets at rest: TOTP secrets are sealed with XChaCha20-Poly1305 under
//! a key kept in its own file in the data dir (mode 0600), created on first
//! start. Backups copy the database, never the key, so a copied backup holds
//! no readable secret; the key is backed up separately, by hand.
//!
//! The key file must be its owner's alone: a key that other local users
//! can read or replace is refused at start ([`SecretBoxError::Exposed`]),
//! with the command that fixes it, rather than used in silence.
//!
//! A sealed value is `version (1) || nonce (24) || ciphertext+tag`. The
//! associated data names the purpose and the user, so a value copied to
//! another user's row, or used for another purpose, does not open.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "secrets.key";
const VERSION: u8 = 1;
const NONCE: usize = 24;

/// Errors of the key file and of sealing.
#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("reading or creating the key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {0} is not 32 bytes; restore it from your backup of the key")]
    BadKey(String),
    /// The key file can be read or written by its group or by others:
    /// anyone who can read it can open every sealed TOTP secret in the
    /// database (and in its backups), and anyone who can write it can
    /// make them unreadable.
    #[error(
        "the key file {path} can be read or written by other users (mode {mode:o}); \
         run `chmod 600 {path}` and start again"
    )]
    Exposed { path: String, mode: u32 },
    /// A value that does not open under this key (another key, damaged,
    /// moved to another user or purpose).
    #[error("a sealed secret does not open with this key")]
    Unopenable,
}

/// The sealing key. `Debug` never prints it.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// [`SecretBox::fingerprint`], computed once.
    fingerprint: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key redacted>)")
    }
}

impl SecretBox {
    /// Opens the key file in `dir`, creating it (0600, 256 random bits,
    /// fsynced) when it does not exist. An existing file whose mode lets its
    /// group or others read or write it is refused
    /// ([`SecretBoxError::Exposed`]): its mode is read from the opened file,
    /// so what is checked is what is read.
    pub fn open_or_create(dir: &Path) -> Result<SecretBox, SecretBoxError> {
        let path = dir.join(KEY_FILE);
        let shown = || path.display().to_string();
        let io = |source| SecretBoxError::Io {
            path: shown(),
            source,
        };
        match std::fs::File::open(&path) {
            Ok(f) => {
                let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretBoxError::Exposed {
                        path: shown(),
                        mode,
                    });
                }
                // One byte more than a key, so a longer file is seen as such.
                let mut bytes = Vec::with_capacity(33);
                f.take(33).read_to_end(&mut bytes).map_err(io)?;
                Self::from_key(&bytes).ok_or(SecretBoxError::BadKey(shown()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).expect("the OS random source failed");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(&key).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Self::from_key(&key).expect("32 bytes"))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A box around a 32-byte key.
    pub fn from_key(key: &[u8]) -> Option<SecretBox> {
        (key.len() == 32).then(|| SecretBox {
            cipher: XChaCha20Poly1305::new_from_slice(key).expect("32-byte key"),
            fingerprint: fingerprint(key),
        })
    }

    /// A name of this key that does not reveal it: 128 bits of
    /// HMAC-SHA256 under the key, in hex. Nodes of one deployment compare
    /// fingerprints to find one started with another key file.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals `secret` for `purpose` and `user`.
    pub fn seal(&self, purpose: &str, user: &str, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random source failed");
        let aad = aad(purpose, user);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .expect("sealing cannot fail for bounded input");
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value sealed for `purpose` and `user`.
    pub fn open(
        &self,
        purpose: &str,
        user: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretBoxError> {
        if sealed.len() < 1 + NONCE || sealed[0] != VERSION {
            return Err(SecretBoxError::Unopenable);
        }
        let aad = aad(purpose, user);
        self.cipher
            .decrypt(
                &XNonce::try_from(&sealed[1..1 + NONCE]).expect("checked length"),
                Payload {
                    msg: &sealed[1 + NONCE..],
                    aad: &aad,
                },
            )
            .map_err(|_| SecretBoxError::Unopenable)
    }
}

/// HMAC-SHA256(key, a fixed label), its first 16 bytes in hex: one-way, so
/// it can be stored where the key may not be.
fn fingerprint(key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(b"gatehouse secrets.key fingerprint v1");
    let tag = mac.finalize().into_bytes();
    tag[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Length-prefixed purpose and user, so no two pairs give the same bytes.
fn aad(purpose: &str, user: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(8 + purpose.len() + user.len());
    a.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
    a.extend_from_slice(purpose.as_bytes());
    a.extend_from_slice(&(user.len() as u32).to_be_bytes());
    a.extend_from_slice(user.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::open_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = a.seal("totp", "alice", b"12345678901234567890");
        let b = SecretBox::open_or_create(dir.path()).unwrap();
        assert_eq!(
            b.open("totp", "alice", &sealed).unwrap(),
            b"12345678901234567890"
        );
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::open_or_create(dir.path()),
            Err(SecretBoxError::BadKey(_))
        ));
    }

    #[test]
    fn a_key_file_others_can_read_or_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SecretBox::open_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = SecretBox::open_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(e, SecretBoxError::Exposed { mode: m, .. } if m == mode),
                "{mode:o}: {e:?}"
            );
            // The message names the file and the fix.
            let shown = e.to_string();
            let fix = format!("chmod 600 {}", path.display());
            assert!(shown.contains(&fix), "{shown}");
        }
        // The owner's own bits do not matter; the fix works.
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            SecretBox::open_or_create(dir.path()).unwrap();
        }
    }

    #[test]
    fn sealed_values_open_only_where_they_belong() {
        let k = SecretBox::from_key(&[7; 32]).unwrap();
        let sealed = k.seal("totp", "alice", b"secret-bytes-here");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "plaintext visible"
        );
        assert!(
            k.open("totp", "bob", &sealed).is_err(),
            "moved to another user"
        );
        assert!(
            k.open("other", "alice", &sealed).is_err(),
            "another purpose"
        );
        let other = SecretBox::from_key(&[8; 32]).unwrap();
        assert!(other.open("totp", "alice", &sealed).is_err(), "another key");
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(k.open("totp", "alice", &damaged).is_err(), "damaged");
        assert!(k.open("totp", "alice", &sealed[..10]).is_err(), "truncated");
        assert_ne!(
            k.seal("totp", "alice", b"x"),
            k.seal("totp", "alice", b"x"),
            "nonces repeat"
        );
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_stay_put() {
        let a = SecretBox::from_key(&[7; 32]).unwrap();
        let again = SecretBox::from_key(&[7; 32]).unwrap();
        let b = SecretBox::from_key(&[8; 32]).unwrap();
        assert_eq!(a.fingerprint(), again.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 32);
        // Neither the key nor its hex appears in the fingerprint.
        assert!(!a.fingerprint().contains("0707"));
    }
}
