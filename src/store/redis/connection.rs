//! Opening a connection to Redis, for the state and the outbox alike.

use redis::aio::ConnectionManager;

/// Longest wait for Redis when a store opens.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A reconnecting connection to `client`'s Redis, or an error after
/// [`CONNECT_TIMEOUT`]: an open never waits without end.
pub(crate) async fn connect(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    match tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new(client)).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "Redis did not answer in time",
        ))),
    }
}
