//! The PostgreSQL schema: `gatehouse_schema` holds the version reached,
//! and the steps of `gatehouse_migrations::postgres` a database lacks run
//! in one transaction, under a transaction-scoped advisory lock so that
//! nodes starting together apply each step once.

use gatehouse_migrations::postgres::{LATEST, SCHEMA_LOCK, STEPS};

use super::pg_error;
use crate::store::error::StoreError;

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub(super) enum SchemaError {
    /// The database was written by a newer gatehouse.
    Newer {
        found: u32,
        supported: u32,
    },
    Store(StoreError),
}

impl From<tokio_postgres::Error> for SchemaError {
    fn from(e: tokio_postgres::Error) -> Self {
        SchemaError::Store(pg_error(e))
    }
}

/// Applies the missing steps; returns the version the database had.
pub(super) async fn apply(client: &mut deadpool_postgres::Object) -> Result<u32, SchemaError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gatehouse_schema (\
             singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), \
             version INTEGER NOT NULL)",
    )
    .await?;
    let found: u32 = tx
        .query_opt("SELECT version FROM gatehouse_schema", &[])
        .await?
        .map_or(0, |r| r.get::<_, i32>(0).max(0) as u32);
    if found > LATEST {
        return Err(SchemaError::Newer {
            found,
            supported: LATEST,
        });
    }
    for step in STEPS.iter().filter(|s| s.version > found) {
        tx.batch_execute(step.sql).await?;
        tracing::info!(version = step.version, "PostgreSQL schema step applied");
    }
    if found < LATEST {
        tx.execute(
            "INSERT INTO gatehouse_schema (singleton, version) VALUES (TRUE, $1) \
             ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
            &[&(LATEST as i32)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
