//! Opening a connection to Redis, for the state and the outbox alike.

use redis::aio::ConnectionManager;

/// Longest wait for Redis when a store opens.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A reconnecting connection to `client`'s Redis, or an error after
/// [`CONNECT_TIMEOUT`]: an open never waits without end. The manager
/// retries a failed first connection by itself, which would hide why it
/// failed (a refused port, a certificate that does not verify): when it
/// times out, one plain attempt names the cause.
pub(crate) async fn connect(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    match tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new(client.clone())).await {
        Ok(r) => r,
        Err(_) => {
            let why = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                Ok(Err(e)) => format!("Redis did not answer in time: {e}"),
                _ => "Redis did not answer in time".to_string(),
            };
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "connecting",
                why,
            )))
        }
    }
}
