//! `tracebench run --services process`: every service of the pipeline as its own
//! `tracebench service <name>` child process, for overhead and fault runs where sharing one
//! process (one runtime, one allocator, one telemetry pipeline) would blur the picture.
//!
//! Children get the plan's knobs as one [`ServiceSpec`] file (so every knob matches the
//! in-process run) and the run's [`Wiring`] on their command line; they export spans over OTLP
//! to the harness's sink. End-to-end completion comes
//! from the consumers' structured [`ProcessedLine`]s on their stdout, not from their logs, so
//! it holds at any log level. Children are killed when the handle is dropped, so an error or
//! Ctrl-C in the harness never leaves one behind; a normal shutdown asks each to stop (SIGINT)
//! so it drains, acks, commits and flushes its spans first.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tb_consumers::Processed;
use tb_messaging::kafka::EmbeddedKafka;
use tb_pipeline::events::SpanCounts;
use tb_pipeline::{KafkaChoice, ProcessedLine, SERVICES, SpansLine, Wiring};
use tb_scenario::{ServiceSpec, SpecError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Why the children could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChildrenError {
    /// A process could not be spawned, or a port found.
    #[error("starting {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    /// The embedded Kafka broker did not start.
    #[error("kafka: {0}")]
    Kafka(#[from] tb_messaging::kafka::KafkaSetupError),
    /// The spec file could not be written.
    #[error("the services' spec: {0}")]
    Spec(#[from] SpecError),
    /// scan-api never accepted connections.
    #[error("scan-api did not listen on {0} within 60 s (see its log)")]
    NotReady(SocketAddr),
}

/// How a child ended other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ChildExit {
    /// It exited with a failure status.
    #[error("exited with {0}")]
    Failed(std::process::ExitStatus),
    /// Waiting for it failed.
    #[error(transparent)]
    Wait(std::io::Error),
    /// It did not stop within the grace period and was killed.
    #[error("did not stop within 30 s; killed")]
    Killed,
}

/// A child's output stream: copied line by line into its log file, with every processed
/// line also sent to `tx`.
async fn pump(
    stream: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    tx: mpsc::UnboundedSender<Processed>,
    spans: Arc<Mutex<SpanCounts>>,
    log: Option<PathBuf>,
) {
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
        if let Some((consumer, task_id)) = ProcessedLine::parse(&line) {
            let _ = tx.send(Processed {
                consumer,
                task_id,
                at: Instant::now(),
            });
        } else if let Some(counts) = SpansLine::parse(&line) {
            let mut sum = spans.lock().unwrap_or_else(PoisonError::into_inner);
            sum.ended += counts.ended;
            sum.exported += counts.exported;
            sum.dropped += counts.dropped;
        }
        if let Some(f) = &mut file {
            let _ = f.write_all(line.as_bytes()).await;
            let _ = f.write_all(b"\n").await;
        }
    }
}

/// Starts one child: its stdout and stderr copied into its log, its processed lines sent on,
/// its span counts summed. Kept, so a killed child can be started again the same way.
#[derive(Clone)]
struct Launcher {
    exe: PathBuf,
    tx: mpsc::UnboundedSender<Processed>,
    spans: Arc<Mutex<SpanCounts>>,
    log_dir: Option<PathBuf>,
}

impl Launcher {
    fn launch(
        &self,
        name: &'static str,
        args: &[OsString],
    ) -> Result<(Child, Vec<tokio::task::JoinHandle<()>>), ChildrenError> {
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| ChildrenError::Spawn(name, e))?;
        let log: Option<PathBuf> = self.log_dir.as_ref().map(|d| d.join(format!("{name}.log")));
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
        let pumps = streams
            .into_iter()
            .flatten()
            .map(|stream| {
                tokio::spawn(pump(
                    stream,
                    self.tx.clone(),
                    self.spans.clone(),
                    log.clone(),
                ))
            })
            .collect();
        Ok((child, pumps))
    }
}

/// One service's process: how to start it, and the process while it runs (`None` while a
/// `worker_crash` keeps it dead).
struct Proc {
    name: &'static str,
    args: Vec<OsString>,
    child: Option<Child>,
}

/// What the children share with the fault schedule, which kills and restarts them.
struct Shared {
    procs: Mutex<Vec<Proc>>,
    /// The tasks copying the children's output: done once every child exited.
    pumps: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// CPU seconds and peak RSS (KiB) of processes killed so far, by service.
    retired: Mutex<Vec<(&'static str, f64, u64)>>,
    /// Processes killed: their unexported spans are lost, and they never report counts.
    killed: std::sync::atomic::AtomicU64,
    launcher: Launcher,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The children, shared: kills one and starts it again on the fault schedule's command
/// (`worker_crash`), and reads their memory while the load runs.
#[derive(Clone)]
pub struct ChildControl(Arc<Shared>);

impl ChildControl {
    /// Each running child's resident memory now, KiB.
    pub fn rss_kb(&self) -> Vec<(&'static str, u64)> {
        lock(&self.0.procs)
            .iter()
            .filter_map(|p| {
                let pid = p.child.as_ref()?.id()?;
                Some((p.name, crate::usage::rss_kb(&pid.to_string())?))
            })
            .collect()
    }

    /// Kills service `name` with SIGKILL, as an OOM kill or a power cut would: no drain, no
    /// ack, no flush. Its CPU time and peak RSS so far stay counted. False when it is not
    /// running.
    pub fn kill(&self, name: &str) -> bool {
        let mut procs = lock(&self.0.procs);
        let Some(proc) = procs.iter_mut().find(|p| p.name == name) else {
            return false;
        };
        let Some(mut child) = proc.child.take() else {
            return false;
        };
        if let Some((cpu, rss)) = child
            .id()
            .and_then(|pid| crate::usage::of(&pid.to_string()))
        {
            lock(&self.0.retired).push((proc.name, cpu, rss));
        }
        let _ = child.start_kill();
        self.0
            .killed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Reaped in the background: nothing waits for a killed process.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        true
    }

    /// Starts service `name` again, as it was started first, unless it runs.
    ///
    /// # Errors
    ///
    /// When the process cannot be spawned.
    pub fn restart(&self, name: &str) -> Result<(), ChildrenError> {
        let mut procs = lock(&self.0.procs);
        let Some(proc) = procs
            .iter_mut()
            .find(|p| p.name == name && p.child.is_none())
        else {
            return Ok(());
        };
        let (child, pumps) = self.0.launcher.launch(proc.name, &proc.args)?;
        proc.child = Some(child);
        lock(&self.0.pumps).extend(pumps);
        Ok(())
    }
}

/// The running children.
pub struct Children {
    shared: Arc<Shared>,
    /// scan-api's address.
    pub scan_api: SocketAddr,
    /// Scan events the consumers finished, from their logs.
    pub processed: mpsc::UnboundedReceiver<Processed>,
    _kafka: Option<EmbeddedKafka>,
    _spec: SpecFile,
}

/// The file the children read their [`ServiceSpec`] from: `spec.json` beside their logs, or a
/// temporary file removed with the children (a restarted child reads it again).
struct SpecFile {
    path: PathBuf,
    temporary: bool,
}

impl SpecFile {
    fn write(spec: &ServiceSpec, log_dir: Option<&Path>) -> Result<Self, ChildrenError> {
        let (path, temporary) = match log_dir {
            Some(dir) => (dir.join("spec.json"), false),
            None => {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("tracebench-spec-{}-{n}.json", std::process::id());
                (std::env::temp_dir().join(name), true)
            }
        };
        spec.write(&path)?;
        Ok(Self { path, temporary })
    }
}

impl Drop for SpecFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(crate) fn free_port(name: &'static str) -> Result<SocketAddr, ChildrenError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| ChildrenError::Spawn(name, e))
}

/// `addr` when its port is fixed, else a free loopback port for `name`.
fn fixed_or_free(addr: SocketAddr, name: &'static str) -> Result<SocketAddr, ChildrenError> {
    if addr.port() == 0 {
        free_port(name)
    } else {
        Ok(addr)
    }
}

impl Children {
    /// Takes the embedded Kafka broker down and up, when the children run on one.
    pub fn kafka_control(&self) -> Option<tb_messaging::kafka::KafkaControl> {
        self._kafka.as_ref().and_then(EmbeddedKafka::control)
    }

    /// Kills and restarts children on command, and reads their memory.
    pub fn control(&self) -> ChildControl {
        ChildControl(self.shared.clone())
    }

    /// Spawns one `exe service <name>` per service with `spec`'s knobs and `wiring`'s
    /// brokers and queue (its listen addresses are replaced by free ports), exporting to
    /// `otlp`; each child's output goes to `log_dir/<name>.log`.
    ///
    /// # Errors
    ///
    /// Fails when a child cannot be spawned, the embedded broker does not start, or scan-api
    /// does not come up.
    pub async fn spawn(
        exe: &Path,
        spec: &ServiceSpec,
        wiring: &Wiring,
        otlp: Option<&str>,
        log_dir: Option<&Path>,
    ) -> Result<Self, ChildrenError> {
        let spec = SpecFile::write(spec, log_dir)?;
        let (kafka, brokers) = match &wiring.kafka {
            KafkaChoice::Embedded => {
                // The mock cluster is a real broker on a local port: children connect to it.
                let k = EmbeddedKafka::start()?;
                let b = k.bootstrap_servers().to_owned();
                (Some(k), b)
            }
            KafkaChoice::External(b) => (None, b.clone()),
        };
        let scan_api = free_port("scan-api")?;
        // A fixed port stays (a fault proxy in front of the API targets it).
        let vision = fixed_or_free(wiring.vision_addr, "vision-api")?;
        let llm = fixed_or_free(wiring.llm_addr, "llm-api")?;
        let wiring = Wiring {
            kafka: KafkaChoice::External(brokers),
            scan_api_addr: scan_api,
            vision_addr: vision,
            llm_addr: llm,
            vision_url: wiring.worker_vision_url(Some(vision)),
            llm_url: wiring.worker_llm_url(Some(llm)),
            ..wiring.clone()
        };
        let (tx, processed) = mpsc::unbounded_channel();
        let launcher = Launcher {
            exe: exe.to_owned(),
            tx,
            spans: Arc::new(Mutex::new(SpanCounts::default())),
            log_dir: log_dir.map(Path::to_owned),
        };
        let mut pumps = Vec::new();
        let mut procs = Vec::new();
        for name in SERVICES {
            let args = command_line(name, &wiring, &spec.path, otlp);
            let (child, more) = launcher.launch(name, &args)?;
            pumps.extend(more);
            procs.push(Proc {
                name,
                args,
                child: Some(child),
            });
        }
        let children = Self {
            shared: Arc::new(Shared {
                procs: Mutex::new(procs),
                pumps: Mutex::new(pumps),
                retired: Mutex::default(),
                killed: std::sync::atomic::AtomicU64::new(0),
                launcher,
            }),
            scan_api,
            processed,
            _kafka: kafka,
            _spec: spec,
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

    /// Each service's CPU seconds and peak RSS so far (see [`crate::usage`]), the processes
    /// of it that were killed included.
    pub fn usage(&self) -> Vec<(&'static str, f64, u64)> {
        let retired = lock(&self.shared.retired).clone();
        lock(&self.shared.procs)
            .iter()
            .filter_map(|p| {
                let (mut cpu, mut rss) = crate::usage::of(&p.child.as_ref()?.id()?.to_string())?;
                for (_, c, r) in retired.iter().filter(|(n, _, _)| *n == p.name) {
                    cpu += c;
                    rss = rss.max(*r);
                }
                Some((p.name, cpu, rss))
            })
            .collect()
    }

    /// Each child's CPU time now (see [`crate::usage::CpuSnapshot`]).
    pub fn cpu(&self) -> Vec<(&'static str, crate::usage::CpuSnapshot)> {
        lock(&self.shared.procs)
            .iter()
            .filter_map(|p| {
                let pid = p.child.as_ref()?.id()?;
                Some((p.name, crate::usage::cpu_snapshot(&pid.to_string())?))
            })
            .collect()
    }

    /// Takes the stream of finished scan events, leaving an empty one.
    pub fn take_processed(&mut self) -> mpsc::UnboundedReceiver<Processed> {
        std::mem::replace(&mut self.processed, mpsc::unbounded_channel().1)
    }

    /// Asks every child to stop (SIGINT, as Ctrl-C would), waits up to 30 s each, kills what
    /// is left, and returns the services that did not exit cleanly, the span counts the
    /// children reported, summed, and how many processes were killed by `worker_crash` (they
    /// reported nothing).
    pub async fn shutdown(self) -> (Vec<(&'static str, ChildExit)>, SpanCounts, u64) {
        let mut procs = std::mem::take(&mut *lock(&self.shared.procs));
        for child in procs.iter().filter_map(|p| p.child.as_ref()) {
            if let Some(pid) = child.id() {
                // `kill -INT` keeps this crate free of unsafe signal calls.
                let _ = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let mut errors = Vec::new();
        for p in &mut procs {
            let Some(child) = p.child.as_mut() else {
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => errors.push((p.name, ChildExit::Failed(status))),
                Ok(Err(e)) => errors.push((p.name, ChildExit::Wait(e))),
                Err(_) => {
                    let _ = child.start_kill();
                    errors.push((p.name, ChildExit::Killed));
                }
            }
        }
        // Every child is gone, so its output ends: the last lines (the span counts) are read.
        let pumps = std::mem::take(&mut *lock(&self.shared.pumps));
        for pump in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
        let spans = *lock(&self.shared.launcher.spans);
        let killed = self
            .shared
            .killed
            .load(std::sync::atomic::Ordering::Relaxed);
        (errors, spans, killed)
    }
}
/// The command line (after the executable) that runs service `name` as a child of a run: the
/// knobs of the [`ServiceSpec`] at `spec`, `wiring`'s brokers, queue and addresses, spans to
/// `otlp`, and processed scans reported on stdout.
pub fn command_line(name: &str, wiring: &Wiring, spec: &Path, otlp: Option<&str>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["service".into(), name.into(), "--spec".into()];
    args.push(spec.as_os_str().to_owned());
    let mut flag = |name: &str, value: String| {
        args.push(name.into());
        args.push(value.into());
    };
    flag("--queue", wiring.queue.clone());
    flag("--amqp-url", wiring.amqp_url.clone());
    if let KafkaChoice::External(brokers) = &wiring.kafka {
        flag("--kafka-brokers", brokers.clone());
    }
    flag("--scan-api-addr", wiring.scan_api_addr.to_string());
    flag("--vision-addr", wiring.vision_addr.to_string());
    flag("--llm-addr", wiring.llm_addr.to_string());
    flag("--vision-url", wiring.vision_url.clone());
    flag("--llm-url", wiring.llm_url.clone());
    if let Some(endpoint) = otlp {
        flag("--otlp-endpoint", endpoint.to_owned());
    }
    args.push("--report-processed".into());
    args
}
