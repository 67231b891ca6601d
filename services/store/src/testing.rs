//! Test support (feature `testing`): a result to store, and dropping a test's schema.

use crate::{PgConfig, ScanResult};

/// A scan result with every field set.
pub fn sample_result() -> ScanResult {
    ScanResult {
        category: "plastic".to_owned(),
        confidence: 0.9,
        rule: "recycle".to_owned(),
        answer: "rinse it".to_owned(),
    }
}

/// Drops `config`'s schema and everything in it (a test's own schema, once it is done).
///
/// # Panics
///
/// When PostgreSQL does not answer or refuses: a test helper, it fails the test.
pub async fn drop_schema(config: &PgConfig) {
    let (client, connection) = tokio_postgres::connect(&config.url, tokio_postgres::NoTls)
        .await
        .expect("postgres answers");
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", config.schema))
        .await
        .expect("schema dropped");
    drop(client);
    let _ = conn.await;
}
