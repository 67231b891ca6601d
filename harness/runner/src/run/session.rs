//! The pipeline of one run: started on a task queue of its own (in process or as children),
//! followed to completion, probed, and stopped after it drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tb_consumers::{Completions, Processed};
use tb_load::{Target as _, Tracker};
use tb_pipeline::{Pipeline, Wiring};
use tb_report::{Machine, ProcessUsage, SpanSummary};
use tb_scenario::Scenario;
use tokio::sync::mpsc;

use super::target::{PROBE, ScanTarget};
use super::{RunError, RunOptions, Services, faults};
use crate::children::Children;
use crate::infra::Provisioned;

/// The pipeline of one run, started, probed and ready for load.
pub(super) struct Session {
    pub(super) wiring: Wiring,
    pub(super) running: Running,
    pub(super) trackers: Arc<CurrentTracker>,
    pub(super) feed: tokio::task::JoinHandle<()>,
    pub(super) target: Arc<ScanTarget>,
    /// The fault proxies in front of RabbitMQ and the APIs the fault schedule touches.
    pub(super) proxies: faults::Rig,
    pub(super) machine: Machine,
}

/// Starts the scenario's services on a task queue of their own (so a run never takes tasks
/// left by another, or leaves any behind), follows their completions, and sends the probe.
pub(super) async fn open(
    scenario: &Scenario,
    infra: &Provisioned,
    options: &RunOptions,
) -> Result<Session, RunError> {
    // Measured before anything of the run's own competes for the CPUs.
    let machine = crate::machine::measure().await;
    let queue = tb_messaging::amqp::scoped_queue(tb_messaging::amqp::SCAN_TASKS, "run");
    let (amqp_url, proxy) = faults::rabbitmq(&scenario.faults, &infra.amqp_url).await?;
    let mut wiring = Wiring::ephemeral(amqp_url, infra.kafka.clone(), queue);
    let (vision, llm) = faults::apis(&scenario.faults, &mut wiring).await?;
    let (running, scan_api, processed) = start(scenario, &wiring, options).await?;
    let trackers = Arc::new(CurrentTracker::default());
    let feed = tokio::spawn(count_completions(processed, trackers.clone()));
    let target = Arc::new(ScanTarget::new(scan_api, scenario.load.connections));
    probe(&target, &trackers.get()).await;
    Ok(Session {
        wiring,
        running,
        trackers,
        feed,
        target,
        proxies: faults::Rig {
            rabbitmq: proxy,
            vision,
            llm,
            ..faults::Rig::default()
        },
        machine,
    })
}

/// Stops the services (each drains first), then the fault proxies they drained through (see
/// [`faults::Playing::stop`]), the completion feed and the run's queue; returns the span counts
/// the children reported.
pub(super) async fn stop(
    running: Running,
    feed: tokio::task::JoinHandle<()>,
    wiring: &Wiring,
    proxies: faults::Rig,
) -> SpanSummary {
    let (errors, children_spans) = running.shutdown().await;
    drop(proxies);
    for (service, e) in errors {
        eprintln!("tracebench: {service} stopped with an error: {e}");
    }
    feed.abort();
    delete_queue(wiring).await;
    children_spans
}

/// The services of a run, however they run.
pub(super) enum Running {
    InProcess(Pipeline),
    Children(Children),
}

impl Running {
    /// What each process of the services has used so far, per accepted scan.
    pub(super) fn usage(&self, scans: u64) -> Vec<ProcessUsage> {
        let measured: Vec<(&str, f64, u64)> = match self {
            Self::InProcess(_) => crate::usage::of("self")
                .map(|(cpu, rss)| vec![("tracebench", cpu, rss)])
                .unwrap_or_default(),
            Self::Children(children) => children.usage(),
        };
        let threads = self.cpu();
        let per_scan = |n: f64| n / scans.max(1) as f64;
        measured
            .into_iter()
            .map(|(process, cpu_s, peak_rss_kb)| ProcessUsage {
                process: process.to_owned(),
                cpu_s,
                cpu_us_per_scan: per_scan(cpu_s * 1e6),
                switches_per_scan: threads.iter().find(|(n, _)| *n == process).map(|(_, t)| {
                    per_scan(t.switches_since(&crate::usage::CpuSnapshot::default()) as f64)
                }),
                peak_rss_kb,
                rss_settled_kb: None,
                rss_end_kb: None,
                rss_growth: None,
                rss_samples_kb: Vec::new(),
                rss_sample_every_s: None,
            })
            .collect()
    }

    /// The children, to kill and restart and to read memory from; `None` in process.
    pub(super) fn children(&self) -> Option<crate::children::ChildControl> {
        match self {
            Self::InProcess(_) => None,
            Self::Children(children) => Some(children.control()),
        }
    }

    /// What the fault schedule acts through: `proxies` (RabbitMQ's and the APIs'), the
    /// collector's, and the embedded Kafka broker's controls when the services run on one.
    pub(super) fn rig(
        &self,
        proxies: faults::Rig,
        collector: Option<Arc<tb_faults::Proxy>>,
    ) -> faults::Rig {
        let kafka = match self {
            Self::InProcess(pipeline) => pipeline
                .embedded_kafka()
                .and_then(tb_messaging::kafka::EmbeddedKafka::control),
            Self::Children(children) => children.kafka_control(),
        };
        faults::Rig {
            collector,
            kafka,
            control: self.children(),
            ..proxies
        }
    }

    /// Each process's CPU time now (see [`crate::usage::CpuSnapshot`]).
    pub(super) fn cpu(&self) -> Vec<(&'static str, crate::usage::CpuSnapshot)> {
        match self {
            Self::InProcess(_) => crate::usage::cpu_snapshot("self")
                .map(|s| vec![("tracebench", s)])
                .unwrap_or_default(),
            Self::Children(children) => children.cpu(),
        }
    }

    /// Stops every service after it drained; returns the ones that ended with an error,
    /// described, and the span counts the children reported (none in process: this
    /// process's provider counts those).
    pub(super) async fn shutdown(self) -> (Vec<(&'static str, String)>, SpanSummary) {
        fn described<E: std::fmt::Display>(
            errors: Vec<(&'static str, E)>,
        ) -> Vec<(&'static str, String)> {
            errors
                .into_iter()
                .map(|(n, e)| (n, e.to_string()))
                .collect()
        }
        match self {
            Self::InProcess(pipeline) => {
                (described(pipeline.shutdown().await), SpanSummary::default())
            }
            Self::Children(children) => {
                // The children's counts as they reported them at exit.
                let (errors, c, killed) = children.shutdown().await;
                let spans = SpanSummary {
                    ended: c.ended,
                    exported: c.exported,
                    dropped: c.dropped,
                    evicted: 0,
                    killed_processes: killed,
                };
                (described(errors), spans)
            }
        }
    }
}

/// Starts the scenario's pipeline on `wiring`, here or as child processes; returns it with
/// scan-api's address and the stream of scan events the consumers finished.
async fn start(
    scenario: &Scenario,
    wiring: &Wiring,
    options: &RunOptions,
) -> Result<(Running, SocketAddr, mpsc::UnboundedReceiver<Processed>), RunError> {
    match &options.services {
        Services::InProcess => {
            let mut config = scenario.pipeline.clone();
            config.wiring = wiring.clone();
            let mut pipeline = Pipeline::start(config).await?;
            let scan_api = pipeline.scan_api.ok_or(RunError::NoScanApi)?;
            let processed = pipeline.take_processed();
            Ok((Running::InProcess(pipeline), scan_api, processed))
        }
        Services::Process { exe, otlp_endpoint } => {
            let mut children = Children::spawn(
                exe,
                &tb_scenario::ServiceSpec::of(scenario),
                wiring,
                otlp_endpoint.as_deref(),
                options.out.as_deref(),
            )
            .await?;
            let processed = children.take_processed();
            let scan_api = children.scan_api;
            Ok((Running::Children(children), scan_api, processed))
        }
    }
}

/// The tracker completions go to: one per load, so a saturation search measures each step
/// apart (a straggler of an earlier step is simply never matched).
#[derive(Default)]
pub(crate) struct CurrentTracker(std::sync::Mutex<Arc<Tracker>>);

impl CurrentTracker {
    pub(crate) fn get(&self) -> Arc<Tracker> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a fresh tracker and returns it.
    pub(crate) fn renew(&self) -> Arc<Tracker> {
        let fresh = Arc::new(Tracker::default());
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        fresh
    }
}

/// Marks a scan complete once both consumers have processed it ([`Completions`]).
async fn count_completions(
    mut processed: mpsc::UnboundedReceiver<Processed>,
    tracker: Arc<CurrentTracker>,
) {
    let mut completions = Completions::default();
    while let Some(p) = processed.recv().await {
        if completions.complete(&p) {
            tracker.get().complete(&p.task_id, p.at);
        }
    }
}

/// One probe scan first, followed until both consumers have it: the consumer groups have
/// joined and every connection is up before the first measured arrival.
async fn probe(target: &ScanTarget, tracker: &Tracker) {
    let deadline = Instant::now() + Duration::from_secs(60);
    match target.send(PROBE).await {
        Ok(Some(id)) => {
            tracker.follow_unmeasured(id);
            while tracker.outstanding() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if tracker.outstanding() > 0 {
                eprintln!(
                    "tracebench: the probe scan did not complete within 60 s; starting anyway"
                );
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("tracebench: the probe scan failed: {e}; starting anyway"),
    }
}

/// Deletes the run's task queue (durable, so it would otherwise outlive the run).
pub async fn delete_queue(wiring: &Wiring) {
    if let Ok(connection) = tb_messaging::amqp::connect(&wiring.amqp_url).await
        && let Ok(channel) = connection.create_channel().await
    {
        let _ = channel
            .queue_delete(
                wiring.queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
}
