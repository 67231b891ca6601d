//! `tracebench demo`: the demo without Docker. The whole pipeline, gentle continuous load and
//! the embedded trace sink in one process, and a page (served from assets compiled into the
//! binary) that shows live scans/s and latency, the recent traces with their verdict, a
//! waterfall per trace with each hop's edge marked (continued, link, broken) and the critical
//! path highlighted, and switches for faults: strip the trace headers at a hop, make the
//! Vision or LLM API fail or slow down, take RabbitMQ (through a fault proxy every connection
//! of the pipeline goes through) or the embedded Kafka broker down and back.
//!
//! Every half second the judge takes the spans that arrived in the sink and judges the scans
//! that completed since (both consumers done) against the seed pipeline's template, as a run
//! does; spans are kept 30 s, long enough for a scan's unit to be whole.
//!
//! | route                  | what                                                        |
//! |------------------------|-------------------------------------------------------------|
//! | `GET /`                | the page                                                    |
//! | `GET /api/state`       | rate, switches, counts, latency and the recent verdicts     |
//! | `GET /api/traces/{id}` | one judged trace with its waterfall                         |
//! | `POST /api/knobs`      | turn switches: `{rate, strip_amqp, strip_http, strip_kafka, vision_error_rate, vision_latency_factor, llm_error_rate, llm_latency_factor, rabbitmq_down, kafka_down}`, any subset |

mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use rand::{RngExt as _, SeedableRng};
use tb_pipeline::{Pipeline, PipelineConfig, SERVICES, Wiring};
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tb_traces::sink::SinkConfig;
use tb_web::{ApiError, Json};

pub use state::KnobsUpdate;
use state::{Demo, Knobs};
use tb_runner::run::target::ScanTarget;

/// The page: HTML, CSS and script in one file, compiled in.
const PAGE: &str = include_str!("page.html");

/// How often the judge looks at what arrived.
const JUDGE_EVERY: Duration = Duration::from_millis(500);

/// The arguments of `tracebench demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the page is served (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Scans per second to start with (Poisson arrivals, 0.1–1000); the page changes it.
    #[arg(long, default_value_t = 5.0, value_parser = state::rate)]
    pub rate: f64,
    /// Multiplies the seed's latencies: 0.05 makes its 5 s scan take about 250 ms.
    #[arg(long, default_value_t = 0.05)]
    pub time_scale: f64,
    /// RabbitMQ URL (the demo's task queue is its own).
    #[arg(long, env = "TB_AMQP_URL", default_value = tb_messaging::amqp::DEFAULT_URL)]
    pub amqp_url: String,
    /// Kafka bootstrap servers; the embedded broker when absent.
    #[arg(long, env = "TB_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Where the services' JSON log lines go; nowhere when absent (the page is the interface).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// Runs the demo until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// Fails when the sink, the telemetry, the pipeline or the page's listener cannot start.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // The page's port first: when it is taken, nothing else has started.
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding the page to {}", args.addr))?;
    let addr = listener.local_addr().context("the page's address")?;
    let sink = tb_traces::sink::start(SinkConfig::ephemeral())
        .await
        .context("starting the embedded trace sink")?;
    let telemetry = telemetry(&args, sink.grpc_endpoint())?;
    let (amqp_url, rabbitmq) = tb_runner::run::faults::proxied(&args.amqp_url)
        .await
        .map_err(|why| anyhow::anyhow!("a fault proxy in front of RabbitMQ: {why}"))?;
    let config = pipeline_config(&args, amqp_url);
    let wiring = config.wiring.clone();
    let knobs = Knobs::of(&config);
    let mut pipeline = Pipeline::start(config)
        .await
        .context("starting the pipeline")?;
    let kafka = pipeline.embedded_kafka().and_then(|k| k.control());
    let knobs = knobs.with_brokers(rabbitmq, kafka);
    let scan_api = pipeline.scan_api.context("the pipeline runs no scan-api")?;
    let demo = Arc::new(Demo::new(knobs, args.rate));
    let target = Arc::new(ScanTarget::at(format!("http://{scan_api}/scan"), 64, false));
    let tasks = [
        tokio::spawn(feed(demo.clone(), target)),
        tokio::spawn(completions(demo.clone(), pipeline.take_processed())),
        tokio::spawn(judge(demo.clone(), sink.store().clone())),
    ];
    let stop = crate::shutdown_signal();
    println!("tracebench demo: http://{addr}/ (Ctrl-C stops)");
    let served = axum::serve(listener, app(demo.clone()))
        .with_graceful_shutdown(stop)
        .await;
    for task in tasks {
        task.abort();
    }
    demo.knobs().restore_brokers();
    let errors = pipeline.shutdown().await;
    // The demo's queue is durable, like a run's: deleted, not left on the broker.
    tb_runner::run::delete_queue(&wiring).await;
    let _ = crate::shut_down_telemetry(telemetry, Some(sink)).await;
    served.context("serving the page")?;
    if let Some((name, e)) = errors.first() {
        anyhow::bail!("{name} stopped with an error: {e}");
    }
    Ok(())
}

fn telemetry(args: &DemoArgs, endpoint: String) -> anyhow::Result<tb_telemetry::TelemetryGuard> {
    let config = TelemetryConfig {
        sampling: Sampling::AlwaysOn,
        exporter: Exporter::Otlp {
            protocol: Protocol::Grpc,
            endpoint: Some(endpoint),
            timeout: Duration::from_secs(10),
        },
        log_filter: Some("info".to_owned()),
        ..TelemetryConfig::default()
    };
    let guard = match &args.log_file {
        Some(path) => {
            tb_telemetry::init_services_with_writer(&SERVICES, config, crate::append_log(path)?)
        }
        None => tb_telemetry::init_services_with_writer(&SERVICES, config, std::io::sink),
    };
    guard.context("setting up telemetry")
}

/// The seed pipeline at `--time-scale`, on a task queue of its own and free ports, reaching
/// RabbitMQ at `amqp_url`.
fn pipeline_config(args: &DemoArgs, amqp_url: String) -> PipelineConfig {
    let kafka = match &args.kafka_brokers {
        Some(b) => tb_pipeline::KafkaChoice::External(b.clone()),
        None => tb_pipeline::KafkaChoice::Embedded,
    };
    let queue = tb_messaging::amqp::scoped_queue(tb_messaging::amqp::SCAN_TASKS, "demo");
    let mut config = PipelineConfig::seed(args.time_scale);
    config.wiring = Wiring::ephemeral(amqp_url, kafka, queue);
    config
}

/// Requests in flight at most; an arrival beyond it is skipped (and counted), so a stalled
/// scan-api holds a bounded number of sockets and tasks.
const MAX_REQUESTS: usize = 256;

/// The longest single wait: a rate turned up on the page takes effect within it.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// Offers scans at the demo's current rate (Poisson arrivals), each sent on a task of its own.
async fn feed(demo: Arc<Demo>, target: Arc<ScanTarget>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let requests = Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS));
    let mut next = Instant::now();
    let mut seq = 0u64;
    loop {
        let u: f64 = rng.random();
        let gap = Duration::from_secs_f64(-(1.0 - u).ln() / demo.rate());
        // Exponential gaps are memoryless: a wait cut at MAX_WAIT and drawn afresh at the
        // (perhaps new) rate is the same process, and a new rate applies at once.
        next += gap.min(MAX_WAIT);
        // After a stall, start afresh rather than fire a burst.
        let now = Instant::now();
        if next + Duration::from_secs(1) < now {
            next = now;
        }
        tokio::time::sleep_until(next.into()).await;
        if gap > MAX_WAIT {
            continue;
        }
        let Ok(permit) = requests.clone().try_acquire_owned() else {
            demo.skipped();
            continue;
        };
        if demo.saturated() {
            demo.skipped();
            continue;
        }
        seq += 1;
        let (demo, target) = (demo.clone(), target.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let result = target.post(seq).await;
            drop(permit);
            demo.answered(result, sent);
        });
    }
}

/// Marks scans complete as the consumers finish them ([`tb_consumers::Completions`]).
async fn completions(
    demo: Arc<Demo>,
    mut processed: tokio::sync::mpsc::UnboundedReceiver<tb_consumers::Processed>,
) {
    let mut completions = tb_consumers::Completions::default();
    let mut swept = Instant::now();
    while let Some(p) = processed.recv().await {
        if completions.complete(&p) {
            demo.completed(&p.task_id, p.at);
        }
        // A scan one consumer finished and the other never will is given up when the request
        // table gives its request up.
        if swept.elapsed() >= JUDGE_EVERY {
            completions.forget_older_than(state::GIVE_UP, Instant::now());
            swept = Instant::now();
        }
    }
}

/// Every [`JUDGE_EVERY`], judges the scans whose spans have had time to arrive.
async fn judge(demo: Arc<Demo>, store: Arc<tb_traces::sink::TraceStore>) {
    let mut tick = tokio::time::interval(JUDGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (demo, store) = (demo.clone(), store.clone());
        // Decoding and judging are CPU work: off the async threads, one round at a time.
        let _ = tokio::task::spawn_blocking(move || demo.judge(store.take_all())).await;
    }
}

fn app(demo: Arc<Demo>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/state", get(state_json))
        .route("/api/traces/{trace_id}", get(trace_json))
        .route("/api/knobs", post(set_knobs))
        .with_state(demo)
}

async fn state_json(State(demo): State<Arc<Demo>>) -> Response {
    axum::Json(demo.state()).into_response()
}

async fn trace_json(State(demo): State<Arc<Demo>>, Path(trace_id): Path<String>) -> Response {
    match demo.trace(&trace_id) {
        Some(trace) => axum::Json(trace).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_trace",
            "no recent judged trace has that id",
        )
        .into_response(),
    }
}

async fn set_knobs(State(demo): State<Arc<Demo>>, Json(update): Json<KnobsUpdate>) -> Response {
    match demo.turn(&update) {
        Ok(()) => axum::Json(demo.state()).into_response(),
        Err(detail) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_knob", detail).into_response()
        }
    }
}
