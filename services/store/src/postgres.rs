//! State in PostgreSQL: one schema holding `scans`, `rewards` and `history`, created on first
//! use, shared by every process that opens it and kept across restarts.
//!
//! A [`PgStore`] holds a few connections (tokio-postgres pipelines concurrent statements on
//! each) with every statement prepared once per connection. A connection that dies is opened
//! again on its next use; until then its calls fail with [`StoreError::Unavailable`], which the
//! services treat as "try again later" (the worker requeues, the consumers retry).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tb_telemetry::spans::{self, DbTarget};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};
use tracing::Instrument as _;

use crate::{
    EventStore, HistoryStore, Reward, RewardStore, ScanRecord, ScanResult, ScanState, StoreError,
    StoreFuture,
};

/// The database tracebench uses when neither the scenario nor [`URL_ENV`] names one: the
/// `postgres` database every installation has, on the local server, as user `postgres`.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The environment variable that names the database when the scenario does not.
pub const URL_ENV: &str = "TB_POSTGRES_URL";
/// The schema tracebench's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "tracebench";

/// Connections a store keeps open.
const CONNECTIONS: usize = 4;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database and schema.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgConfig {
    /// A `postgres://` URL (or a key=value connection string).
    pub url: String,
    /// The schema: lower-case letters, digits and `_`, starting with a letter or `_`.
    pub schema: String,
}

impl PgConfig {
    /// `url`, else [`URL_ENV`], else [`DEFAULT_URL`]; `schema`, else [`DEFAULT_SCHEMA`].
    pub fn resolve(url: Option<String>, schema: Option<String>) -> Self {
        Self {
            url: url
                .or_else(|| std::env::var(URL_ENV).ok().filter(|u| !u.is_empty()))
                .unwrap_or_else(|| DEFAULT_URL.to_owned()),
            schema: schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
        }
    }
}

impl PgConfig {
    /// Checks both fields without connecting: the name of the bad one (`url` or `schema`) and
    /// what is wrong with it.
    ///
    /// # Errors
    ///
    /// A URL tokio-postgres cannot parse, or a schema [`valid_schema`] refuses.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            return Err(("url", format!("not a PostgreSQL URL: {e}")));
        }
        if !valid_schema(&self.schema) {
            return Err((
                "schema",
                format!(
                    "{:?}: expected 1 to 63 of [a-z0-9_], not starting with a digit or pg_",
                    self.schema
                ),
            ));
        }
        Ok(())
    }
}

/// Whether `schema` is a name this store uses unquoted in its DDL: 1 to 63 characters of
/// `[a-z0-9_]`, not starting with a digit, and not PostgreSQL's own `pg_` prefix.
pub fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
        && !schema.starts_with("pg_")
}

/// The statements, in the order [`Statements::prepare`] prepares them.
const SQL: [&str; 12] = [
    // 0 create
    "INSERT INTO scans (task_id, user_id, image_url, state, attempts, announced) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO NOTHING",
    // 1 get
    "SELECT task_id, user_id, image_url, state, attempts, category, confidence, rule, answer, \
     error, announced FROM scans WHERE task_id = $1",
    // 2 start_attempt
    "INSERT INTO scans AS s (task_id, user_id, image_url, state, attempts) \
     VALUES ($1, $2, $3, 'processing', 1) \
     ON CONFLICT (task_id) DO UPDATE SET attempts = s.attempts + 1, updated_at = now() \
     RETURNING task_id, user_id, image_url, state, attempts, category, confidence, rule, \
     answer, error, announced",
    // 3 complete
    "UPDATE scans SET state = 'completed', category = $2, confidence = $3, rule = $4, \
     answer = $5, error = NULL, updated_at = now() WHERE task_id = $1",
    // 4 mark_announced
    "UPDATE scans SET announced = true, updated_at = now() WHERE task_id = $1",
    // 5 fail
    "UPDATE scans SET state = 'failed', error = $2, updated_at = now() WHERE task_id = $1",
    // 6 has_reward
    "SELECT 1 FROM rewards WHERE task_id = $1",
    // 7 record_reward
    "INSERT INTO rewards (task_id, user_id, character_name) VALUES ($1, $2, $3) \
     ON CONFLICT (task_id) DO NOTHING",
    // 8 reward
    "SELECT task_id, user_id, character_name FROM rewards WHERE task_id = $1",
    // 9 reward_count
    "SELECT count(*) FROM rewards",
    // 10 record_scan
    "INSERT INTO history (task_id, user_id) VALUES ($1, $2) ON CONFLICT (task_id) DO NOTHING",
    // 11 history
    "SELECT task_id FROM history WHERE user_id = $1 ORDER BY seq",
];

#[derive(Clone, Copy)]
enum Sql {
    Create,
    Get,
    StartAttempt,
    Complete,
    MarkAnnounced,
    Fail,
    HasReward,
    RecordReward,
    Reward,
    RewardCount,
    RecordScan,
    History,
}

/// The tables, created once per schema under an advisory lock (processes of one run start
/// together, and `CREATE … IF NOT EXISTS` alone races).
fn schema_ddl(schema: &str) -> String {
    format!(
        "SELECT pg_advisory_xact_lock(7243184261);
         CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.scans (
             task_id text PRIMARY KEY,
             user_id text NOT NULL,
             image_url text NOT NULL,
             state text NOT NULL,
             attempts integer NOT NULL DEFAULT 0,
             category text,
             confidence double precision,
             rule text,
             answer text,
             error text,
             announced boolean NOT NULL DEFAULT false,
             updated_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {schema}.rewards (
             task_id text PRIMARY KEY,
             user_id text NOT NULL,
             character_name text NOT NULL,
             granted_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {schema}.history (
             seq bigserial PRIMARY KEY,
             task_id text NOT NULL UNIQUE,
             user_id text NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX IF NOT EXISTS history_by_user ON {schema}.history (user_id, seq);"
    )
}

fn unavailable(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// One open connection and its prepared statements.
struct Conn {
    client: Client,
    statements: Vec<Statement>,
}

impl Conn {
    async fn open(config: &tokio_postgres::Config) -> Result<Self, StoreError> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| unavailable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        let mut statements = Vec::with_capacity(SQL.len());
        for sql in SQL {
            statements.push(client.prepare(sql).await.map_err(|e| unavailable(&e))?);
        }
        Ok(Self { client, statements })
    }

    fn statement(&self, sql: Sql) -> &Statement {
        &self.statements[sql as usize]
    }
}

/// The pipeline's state in PostgreSQL (see the module docs).
pub struct PgStore {
    config: tokio_postgres::Config,
    target: DbTarget,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `config.url`, creates the schema and its tables when missing, and opens
    /// the connections.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a bad URL or schema name; [`StoreError::Unavailable`] when
    /// the server cannot be reached or refuses the tables.
    pub async fn open(config: &PgConfig) -> Result<Self, StoreError> {
        config
            .check()
            .map_err(|(field, e)| StoreError::Config(format!("{field}: {e}")))?;
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(format!("url: {e}")))?;
        pg.connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = pg.connect(NoTls).await.map_err(|e| unavailable(&e))?;
        let setup = tokio::spawn(connection);
        let created = client.batch_execute(&schema_ddl(&config.schema)).await;
        drop(client);
        let _ = setup.await;
        created.map_err(|e| unavailable(&e))?;
        pg.options(format!("-c search_path={}", config.schema));
        let target = target(&pg, &config.schema);
        let store = Self {
            config: pg,
            target,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        // Open one now, so a store that opened is a store that answers.
        store.conn().await?;
        Ok(store)
    }

    /// A live connection: the next slot's, opened (again) when it has none or it closed.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.client.is_closed()
        {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Conn::open(&self.config).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn execute(&self, sql: Sql, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        conn.client
            .execute(conn.statement(sql), params)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn query(
        &self,
        sql: Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        conn.client
            .query(conn.statement(sql), params)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// An UPDATE of `task_id`'s scan (the first parameter), which must find it.
    async fn update(
        &self,
        sql: Sql,
        task_id: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        match self.execute(sql, params).await? {
            0 => Err(StoreError::Unknown(task_id.to_owned())),
            _ => Ok(()),
        }
    }

    /// The result write, under a CLIENT span with the database conventions' attributes:
    /// `save_to_event_store`'s real database call.
    async fn save_result(&self, task_id: &str, result: &ScanResult) -> Result<(), StoreError> {
        let span = spans::db_client(&self.target, "UPDATE", "scans", SQL[Sql::Complete as usize]);
        let params: [&(dyn ToSql + Sync); 5] = [
            &task_id,
            &result.category,
            &result.confidence,
            &result.rule,
            &result.answer,
        ];
        let written = async {
            let conn = self.conn().await.inspect_err(|_| {
                spans::record_error(&tracing::Span::current(), "connection");
            })?;
            conn.client
                .execute(conn.statement(Sql::Complete), &params)
                .await
                .map_err(|e| {
                    let code = e.code().map(tokio_postgres::error::SqlState::code);
                    spans::record_db_error(
                        &tracing::Span::current(),
                        code,
                        code.unwrap_or("connection"),
                    );
                    unavailable(&e)
                })
        }
        .instrument(span)
        .await?;
        match written {
            0 => Err(StoreError::Unknown(task_id.to_owned())),
            _ => Ok(()),
        }
    }
}

/// Where the store's statements go, for their spans.
fn target(config: &tokio_postgres::Config, schema: &str) -> DbTarget {
    let address = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    DbTarget {
        system: "postgresql",
        namespace: format!("{database}|{schema}"),
        address,
        port: config.get_ports().first().copied().unwrap_or(5432),
    }
}

fn state_name(state: ScanState) -> &'static str {
    match state {
        ScanState::Processing => "processing",
        ScanState::Completed => "completed",
        ScanState::Failed => "failed",
    }
}

fn record_of(row: &Row) -> Result<ScanRecord, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Unavailable(format!("reading a scan: {e}"));
    let state = match row.try_get::<_, &str>(3).map_err(bad)? {
        "completed" => ScanState::Completed,
        "failed" => ScanState::Failed,
        _ => ScanState::Processing,
    };
    let category: Option<String> = row.try_get(5).map_err(bad)?;
    let result = match category {
        Some(category) => Some(ScanResult {
            category,
            confidence: row
                .try_get::<_, Option<f64>>(6)
                .map_err(bad)?
                .unwrap_or(0.0),
            rule: row
                .try_get::<_, Option<String>>(7)
                .map_err(bad)?
                .unwrap_or_default(),
            answer: row
                .try_get::<_, Option<String>>(8)
                .map_err(bad)?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(ScanRecord {
        task_id: row.try_get(0).map_err(bad)?,
        user_id: row.try_get(1).map_err(bad)?,
        image_url: row.try_get(2).map_err(bad)?,
        state,
        attempts: u32::try_from(row.try_get::<_, i32>(4).map_err(bad)?).unwrap_or(0),
        result,
        error: row.try_get(9).map_err(bad)?,
        announced: row.try_get(10).map_err(bad)?,
    })
}

impl EventStore for PgStore {
    fn create(&self, record: ScanRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let attempts = i32::try_from(record.attempts).unwrap_or(i32::MAX);
            self.execute(
                Sql::Create,
                &[
                    &record.task_id,
                    &record.user_id,
                    &record.image_url,
                    &state_name(record.state),
                    &attempts,
                    &record.announced,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn get(&self, task_id: &str) -> StoreFuture<'_, Option<ScanRecord>> {
        let task_id = task_id.to_owned();
        Box::pin(async move {
            let rows = self.query(Sql::Get, &[&task_id]).await?;
            rows.first().map(record_of).transpose()
        })
    }

    fn start_attempt(&self, record: ScanRecord) -> StoreFuture<'_, ScanRecord> {
        Box::pin(async move {
            let rows = self
                .query(
                    Sql::StartAttempt,
                    &[&record.task_id, &record.user_id, &record.image_url],
                )
                .await?;
            match rows.first() {
                Some(row) => record_of(row),
                None => Err(StoreError::Unavailable(
                    "the upsert returned no row".to_owned(),
                )),
            }
        })
    }

    fn complete(&self, task_id: &str, result: ScanResult) -> StoreFuture<'_, ()> {
        let task_id = task_id.to_owned();
        Box::pin(async move { self.save_result(&task_id, &result).await })
    }

    fn mark_announced(&self, task_id: &str) -> StoreFuture<'_, ()> {
        let task_id = task_id.to_owned();
        Box::pin(async move { self.update(Sql::MarkAnnounced, &task_id, &[&task_id]).await })
    }

    fn fail(&self, task_id: &str, error: &str) -> StoreFuture<'_, ()> {
        let (task_id, error) = (task_id.to_owned(), error.to_owned());
        Box::pin(async move { self.update(Sql::Fail, &task_id, &[&task_id, &error]).await })
    }
}

impl RewardStore for PgStore {
    fn has_reward(&self, task_id: &str) -> StoreFuture<'_, bool> {
        let task_id = task_id.to_owned();
        Box::pin(async move { Ok(!self.query(Sql::HasReward, &[&task_id]).await?.is_empty()) })
    }

    fn record_reward(&self, reward: Reward) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let params: [&(dyn ToSql + Sync); 3] =
                [&reward.task_id, &reward.user_id, &reward.character];
            Ok(self.execute(Sql::RecordReward, &params).await? == 1)
        })
    }

    fn reward(&self, task_id: &str) -> StoreFuture<'_, Option<Reward>> {
        let task_id = task_id.to_owned();
        Box::pin(async move {
            let rows = self.query(Sql::Reward, &[&task_id]).await?;
            let bad = |e: tokio_postgres::Error| StoreError::Unavailable(e.to_string());
            rows.first()
                .map(|row| {
                    Ok(Reward {
                        task_id: row.try_get(0).map_err(bad)?,
                        user_id: row.try_get(1).map_err(bad)?,
                        character: row.try_get(2).map_err(bad)?,
                    })
                })
                .transpose()
        })
    }

    fn reward_count(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let rows = self.query(Sql::RewardCount, &[]).await?;
            let n: i64 = rows
                .first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(|e| unavailable(&e))?
                .unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

impl HistoryStore for PgStore {
    fn record_scan(&self, user_id: &str, task_id: &str) -> StoreFuture<'_, bool> {
        let (user_id, task_id) = (user_id.to_owned(), task_id.to_owned());
        Box::pin(
            async move { Ok(self.execute(Sql::RecordScan, &[&task_id, &user_id]).await? == 1) },
        )
    }

    fn history(&self, user_id: &str) -> StoreFuture<'_, Vec<String>> {
        let user_id = user_id.to_owned();
        Box::pin(async move {
            let rows = self.query(Sql::History, &[&user_id]).await?;
            rows.iter()
                .map(|r| r.try_get(0).map_err(|e| unavailable(&e)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked_before_they_reach_ddl() {
        for good in ["tracebench", "_x", "tb_run_42"] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "9a",
            "Tb",
            "a-b",
            "a;drop",
            "pg_catalog",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
