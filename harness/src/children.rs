//! `tracebench run --services process`: every service of the pipeline as its own
//! `tracebench service <name>` child process, for overhead and fault runs where sharing one
//! process (one runtime, one allocator, one telemetry pipeline) would blur the picture.
//!
//! Children get the scenario file (so every knob matches the in-process run), their addresses
//! and the brokers; they export spans over OTLP to the harness's sink. End-to-end completion is
//! read from the consumers' JSON log lines on their stdout ("reward granted", "history
//! recorded"). Children are killed when the handle is dropped, so an error or Ctrl-C in the
//! harness never leaves one behind; a normal shutdown asks each to stop (SIGINT) so it drains,
//! acks, commits and flushes its spans first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tb_consumers::{CHARACTER, MY, Processed};
use tb_messaging::kafka::EmbeddedKafka;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::pipeline::{KafkaChoice, PipelineConfig, SERVICES};

/// Why the children could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChildrenError {
    /// A process could not be spawned, or a port found.
    #[error("starting {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    /// The embedded Kafka broker did not start.
    #[error("kafka: {0}")]
    Kafka(#[from] tb_messaging::kafka::KafkaSetupError),
    /// scan-api never accepted connections.
    #[error("scan-api did not listen on {0} within 60 s (see its log)")]
    NotReady(SocketAddr),
}

/// The running children.
pub struct Children {
    procs: Vec<(&'static str, Child)>,
    /// scan-api's address.
    pub scan_api: SocketAddr,
    /// Scan events the consumers finished, from their logs.
    pub processed: mpsc::UnboundedReceiver<Processed>,
    _kafka: Option<EmbeddedKafka>,
}

fn free_port(name: &'static str) -> Result<SocketAddr, ChildrenError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| ChildrenError::Spawn(name, e))
}

/// Which consumer finished a scan, judged from one of its log lines.
fn completion(line: &str) -> Option<(&'static str, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let consumer = match v["message"].as_str()? {
        "reward granted" | "reward already granted" => CHARACTER,
        "history recorded" => MY,
        _ => return None,
    };
    Some((consumer, v["task.id"].as_str()?.to_owned()))
}

impl Children {
    /// Spawns one `exe service <name>` per service with `scenario`'s knobs, `config`'s brokers
    /// and queue, exporting to `otlp`; each child's output goes to `log_dir/<name>.log`.
    ///
    /// # Errors
    ///
    /// Fails when a child cannot be spawned, the embedded broker does not start, or scan-api
    /// does not come up.
    pub async fn spawn(
        exe: &Path,
        scenario: &Path,
        config: &PipelineConfig,
        otlp: Option<&str>,
        log_dir: Option<&Path>,
    ) -> Result<Self, ChildrenError> {
        let (kafka, brokers) = match &config.kafka {
            KafkaChoice::Embedded => {
                // The mock cluster is a real broker on a local port: children connect to it.
                let k = EmbeddedKafka::start()?;
                let b = k.bootstrap_servers().to_owned();
                (Some(k), b)
            }
            KafkaChoice::External(b) => (None, b.clone()),
        };
        let scan_api = free_port("scan-api")?;
        let vision = free_port("vision-api")?;
        let llm = free_port("llm-api")?;
        let (tx, processed) = mpsc::unbounded_channel();
        let mut procs = Vec::new();
        for name in SERVICES {
            let mut command = Command::new(exe);
            command
                .args(["service", name])
                .arg("--scenario")
                .arg(scenario)
                .args(["--queue", &config.worker.queue])
                .args(["--amqp-url", &config.amqp_url])
                .args(["--kafka-brokers", &brokers])
                .args(["--scan-api-addr", &scan_api.to_string()])
                .args(["--vision-addr", &vision.to_string()])
                .args(["--llm-addr", &llm.to_string()])
                .args(["--vision-url", &format!("http://{vision}")])
                .args(["--llm-url", &format!("http://{llm}")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if let Some(endpoint) = otlp {
                command.args(["--otlp-endpoint", endpoint]);
            }
            let mut child = command.spawn().map_err(|e| ChildrenError::Spawn(name, e))?;
            let log: Option<PathBuf> = log_dir.map(|d| d.join(format!("{name}.log")));
            let streams = [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ];
            for stream in streams.into_iter().flatten() {
                let (tx, log) = (tx.clone(), log.clone());
                tokio::spawn(async move {
                    let mut file = match &log {
                        Some(path) => tokio::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                            .await
                            .ok(),
                        None => None,
                    };
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some((consumer, task_id)) = completion(&line) {
                            let _ = tx.send(Processed {
                                consumer,
                                task_id,
                                at: Instant::now(),
                            });
                        }
                        if let Some(f) = &mut file {
                            let _ = f.write_all(line.as_bytes()).await;
                            let _ = f.write_all(b"\n").await;
                        }
                    }
                });
            }
            procs.push((name, child));
        }
        let children = Self {
            procs,
            scan_api,
            processed,
            _kafka: kafka,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(scan_api).await.is_err() {
            if Instant::now() > deadline {
                return Err(ChildrenError::NotReady(scan_api));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(children)
    }

    /// Asks every child to stop (SIGINT, as Ctrl-C would), waits up to 30 s each, kills what
    /// is left, and returns the services that did not exit cleanly.
    pub async fn shutdown(mut self) -> Vec<(&'static str, String)> {
        for (_, child) in &self.procs {
            if let Some(pid) = child.id() {
                // `kill -INT` keeps this crate free of unsafe signal calls.
                let _ = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let mut errors = Vec::new();
        for (name, child) in &mut self.procs {
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => errors.push((*name, format!("exited with {status}"))),
                Ok(Err(e)) => errors.push((*name, e.to_string())),
                Err(_) => {
                    let _ = child.start_kill();
                    errors.push((*name, "did not stop within 30 s; killed".to_owned()));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_read_from_the_consumers_log_lines() {
        let line = r#"{"level":"INFO","task.id":"t1","character":"x","message":"reward granted"}"#;
        assert_eq!(completion(line), Some((CHARACTER, "t1".to_owned())));
        let line = r#"{"level":"INFO","task.id":"t2","message":"history recorded"}"#;
        assert_eq!(completion(line), Some((MY, "t2".to_owned())));
        assert_eq!(
            completion(r#"{"message":"processing scan","task.id":"t3"}"#),
            None
        );
        assert_eq!(completion("not json"), None);
    }
}
