//! The PostgreSQL store against a real server: `TB_POSTGRES_URL`, else the local one
//! (`.ci/run` makes sure it answers). Each test works in a schema of its own and drops it.

use std::time::{Duration, Instant};

use tb_store::testing::{drop_schema, sample_result as result};
use tb_store::{
    EventStore, HistoryStore, PgConfig, PgStore, Reward, RewardStore, ScanRecord, ScanState,
    StoreError,
};

/// A fresh schema name, and the config that uses it.
fn config() -> PgConfig {
    let schema = format!("tb_test_{}", uuid_like());
    PgConfig::resolve(None, Some(schema))
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn open(config: &PgConfig) -> PgStore {
    PgStore::open(config).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} must answer (set TB_POSTGRES_URL; .ci/run starts the local one): {e}",
            config.url
        )
    })
}

#[tokio::test]
async fn a_scan_moves_through_its_states_and_unknown_tasks_are_errors() {
    let config = config();
    let store = open(&config).await;
    store
        .create(ScanRecord::new("t1", "u1", "http://x/a.jpg"))
        .await
        .expect("created");
    // A second create of the same task keeps the first.
    store
        .create(ScanRecord::new("t1", "u2", "http://x/b.jpg"))
        .await
        .expect("kept");
    let first = store
        .start_attempt(ScanRecord::new("t1", "ignored", "ignored"))
        .await
        .expect("attempt");
    assert_eq!((first.attempts, first.user_id.as_str()), (1, "u1"));
    let second = store
        .start_attempt(ScanRecord::new("t1", "ignored", "ignored"))
        .await
        .expect("attempt");
    assert_eq!(second.attempts, 2);
    // A task scan-api never saw (a Python client's) is created by its first attempt.
    let foreign = store
        .start_attempt(ScanRecord::new("t2", "u9", "http://x/c.jpg"))
        .await
        .expect("attempt");
    assert_eq!(
        (foreign.attempts, foreign.state),
        (1, ScanState::Processing)
    );

    store.complete("t1", result()).await.expect("completed");
    store.mark_announced("t1").await.expect("announced");
    store.fail("t2", "vision timed out").await.expect("failed");
    let t1 = store.get("t1").await.expect("get").expect("t1 exists");
    assert_eq!(t1.state, ScanState::Completed);
    assert!(t1.announced);
    assert_eq!(t1.result, Some(result()));
    assert_eq!(t1.image_url, "http://x/a.jpg");
    let t2 = store.get("t2").await.expect("get").expect("t2 exists");
    assert_eq!(
        (t2.state, t2.error.as_deref()),
        (ScanState::Failed, Some("vision timed out"))
    );

    assert_eq!(store.get("nope").await, Ok(None));
    assert_eq!(
        store.complete("nope", result()).await,
        Err(StoreError::Unknown("nope".to_owned()))
    );
    assert_eq!(
        store.mark_announced("nope").await,
        Err(StoreError::Unknown("nope".to_owned()))
    );
    drop_schema(&config).await;
}

#[tokio::test]
async fn rewards_and_histories_survive_a_restart_and_never_count_twice() {
    let config = config();
    let reward = |task: &str| Reward {
        task_id: task.to_owned(),
        user_id: "u1".to_owned(),
        character: "glass-guardian".to_owned(),
    };
    {
        let store = open(&config).await;
        assert_eq!(store.has_reward("t1").await, Ok(false));
        assert_eq!(store.record_reward(reward("t1")).await, Ok(true));
        assert_eq!(store.record_reward(reward("t1")).await, Ok(false));
        assert_eq!(store.record_scan("u1", "t1").await, Ok(true));
        assert_eq!(store.record_scan("u1", "t2").await, Ok(true));
        assert_eq!(store.record_scan("u1", "t1").await, Ok(false));
    }
    // A restarted consumer opens the same schema: what was granted stays granted.
    let store = open(&config).await;
    assert_eq!(store.has_reward("t1").await, Ok(true));
    assert_eq!(store.record_reward(reward("t1")).await, Ok(false));
    assert_eq!(store.record_reward(reward("t2")).await, Ok(true));
    assert_eq!(store.reward_count().await, Ok(2));
    assert_eq!(store.reward("t1").await, Ok(Some(reward("t1"))));
    assert_eq!(store.reward("t9").await, Ok(None));
    assert_eq!(
        store.history("u1").await,
        Ok(vec!["t1".to_owned(), "t2".to_owned()])
    );
    assert_eq!(store.history("u2").await, Ok(vec![]));
    drop_schema(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_one_new_schema_at_once_all_succeed() {
    // The six services of a run start together, each creating the tables if missing.
    let config = config();
    let opens = (0..6).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { PgStore::open(&config).await.map(drop) })
    });
    for open in opens.collect::<Vec<_>>() {
        open.await.expect("joins").expect("opens");
    }
    drop_schema(&config).await;
}

#[tokio::test]
async fn a_bad_config_or_an_absent_server_is_a_clear_error_not_a_hang() {
    let bad_schema = PgConfig {
        schema: "Robert'); DROP TABLE students;--".to_owned(),
        ..config()
    };
    assert!(matches!(
        PgStore::open(&bad_schema).await,
        Err(StoreError::Config(e)) if e.starts_with("schema")
    ));
    let bad_url = PgConfig {
        url: "postgres://[::1".to_owned(),
        ..config()
    };
    assert!(matches!(
        PgStore::open(&bad_url).await,
        Err(StoreError::Config(e)) if e.starts_with("url")
    ));
    // Nothing listens on port 1.
    let absent = PgConfig {
        url: "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
        ..config()
    };
    let started = Instant::now();
    assert!(matches!(
        PgStore::open(&absent).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
}
