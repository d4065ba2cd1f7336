//! The TLS handshake of a connection on a TLS listener, bounded by the
//! connection's deadline: a client that opens a connection and never
//! finishes its handshake holds its slot at most `head_timeout`. A
//! handshake that chose `acme-tls/1` (an ACME CA's check) ends the
//! connection there.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::ACME_TLS_ALPN;

/// The handshake on `stream`, done within `limit`; `None` when it failed,
/// the time ran out or the client closed (each logged at debug: a failed
/// handshake is the client's business).
pub(super) async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    limit: Duration,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
            // An ACME CA's TLS-ALPN-01 check: the certificate was the
            // answer, and nothing else is said on such a connection.
            tracing::debug!(%peer, "ACME TLS-ALPN-01 check answered; closing");
            None
        }
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed; closing");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "no TLS handshake in time; closing");
            None
        }
    }
}
