//! [`ServerError`]: why starting or running the server failed.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::server::password;
use crate::store::OpenError;

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The config file could not be read, parsed or written (first start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// A file or directory in the data dir could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why writing failed.
        source: std::io::Error,
    },
    /// The hashing pool could not be built, or the first admin's password
    /// could not be hashed.
    #[error("password hashing: {0}")]
    Hash(#[from] password::HashError),
    /// The key that seals second-factor secrets could not be read or made.
    #[error(transparent)]
    Secrets(#[from] crate::identity::secret_box::SecretBoxError),
    /// The TLS certificate could not be read, or the TLS settings built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// No users are configured on a node of a distributed store, where a
    /// first admin made by each node would differ from node to node.
    #[error(
        "no users are configured in {0}; on the distributed store every node needs the same \
         users, so none is made at start: run `gatehouse users add NAME --admin` once, then \
         copy the config file to every node"
    )]
    NoUsers(PathBuf),
    /// The OpenID Connect provider's signing keys could not be loaded or made.
    #[error("OpenID Connect signing keys: {0}")]
    Oidc(String),
}
