//! What the demo knows: its switches, the scans in flight, counts per second, end-to-end
//! latencies, the spans waiting to be judged and the recent verdicts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tb_pipeline::PipelineConfig;
use tb_telemetry::fault::Strip;
use tb_traces::model::Span;
use tb_verify::{Problem, Scan, Template, Waterfall};

use tb_runner::run::target::ScanError;

/// Recent verdicts kept for the page.
const RECENT: usize = 40;
/// End-to-end samples the percentiles are taken over.
const SAMPLES: usize = 500;
/// How long spans wait for the rest of their scan's unit: as long as a scan may take before it
/// is given up, so that the first spans of a slow scan (the page can make one take minutes) are
/// still there when its last arrive.
const SPAN_KEEP: Duration = GIVE_UP.saturating_add(Duration::from_secs(5));
/// How long after its completion a scan is judged: its last spans leave the batch processor
/// within its 200 ms delay, and the sink has them a moment later.
const SETTLE: Duration = Duration::from_millis(800);
/// A scan not complete after this long is counted lost and forgotten.
pub(super) const GIVE_UP: Duration = Duration::from_secs(60);
/// Scans in flight beyond which arrivals are skipped (a stalled pipeline must not grow this).
const MAX_IN_FLIGHT: usize = 5000;

/// The switches the page turns, held by the running services.
pub(crate) struct Knobs {
    strip_amqp: Arc<Strip>,
    strip_http: Arc<Strip>,
    strip_kafka: Arc<Strip>,
    vision: Arc<tb_mocks::Knobs>,
    llm: Arc<tb_mocks::Knobs>,
    /// The fault proxy every RabbitMQ connection of the pipeline goes through.
    rabbitmq: Option<Arc<tb_faults::Proxy>>,
    rabbitmq_down: AtomicBool,
    /// The embedded Kafka broker's controls (none with an external Kafka).
    kafka: Option<tb_messaging::kafka::KafkaControl>,
    kafka_down: AtomicBool,
}

impl Knobs {
    /// The switches of the pipeline `config` will start.
    pub(crate) fn of(config: &PipelineConfig) -> Self {
        Self {
            strip_amqp: config.strip_amqp.clone(),
            strip_http: config.worker.strip_http.clone(),
            strip_kafka: config.worker.strip_kafka.clone(),
            vision: config.vision.knobs.clone(),
            llm: config.llm.knobs.clone(),
            rabbitmq: None,
            rabbitmq_down: AtomicBool::new(false),
            kafka: None,
            kafka_down: AtomicBool::new(false),
        }
    }

    /// With the brokers' switches: the proxy in front of RabbitMQ, the embedded Kafka's
    /// controls.
    pub(crate) fn with_brokers(
        mut self,
        rabbitmq: Arc<tb_faults::Proxy>,
        kafka: Option<tb_messaging::kafka::KafkaControl>,
    ) -> Self {
        self.rabbitmq = Some(rabbitmq);
        self.kafka = kafka;
        self
    }

    /// Brings both brokers back (before the pipeline stops, so that it stops quickly).
    pub(crate) fn restore_brokers(&self) {
        if let Some(proxy) = &self.rabbitmq {
            proxy.set(tb_faults::Fault::None);
        }
        if let Some(kafka) = &self.kafka {
            let _ = kafka.set_down(false);
        }
    }
}

/// A `POST /api/knobs` body: the switches to turn, any subset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobsUpdate {
    /// Scans per second offered.
    pub rate: Option<f64>,
    /// Share of tasks scan-api publishes without trace headers.
    pub strip_amqp: Option<f64>,
    /// Share of Vision/LLM calls the worker sends without trace headers.
    pub strip_http: Option<f64>,
    /// Share of `scan.completed` events the worker sends without trace headers.
    pub strip_kafka: Option<f64>,
    /// Share of Vision requests answered 500.
    pub vision_error_rate: Option<f64>,
    /// Factor on Vision's latency.
    pub vision_latency_factor: Option<f64>,
    /// Share of LLM requests answered 500.
    pub llm_error_rate: Option<f64>,
    /// Factor on the LLM's latency.
    pub llm_latency_factor: Option<f64>,
    /// RabbitMQ away (every connection reset) or back.
    pub rabbitmq_down: Option<bool>,
    /// The embedded Kafka broker down or back.
    pub kafka_down: Option<bool>,
}

/// The switches as the page shows them.
#[derive(Debug, Serialize)]
struct KnobsView {
    rate: f64,
    strip_amqp: f64,
    strip_http: f64,
    strip_kafka: f64,
    vision_error_rate: f64,
    vision_latency_factor: f64,
    llm_error_rate: f64,
    llm_latency_factor: f64,
    rabbitmq_down: bool,
    kafka_down: bool,
    /// Whether `kafka_down` can be turned (the embedded broker runs here).
    kafka_switchable: bool,
}

/// One judged scan.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Judged {
    trace_id: String,
    task_id: String,
    /// `complete`, `broken` (a hop lost the context) or `incomplete` (anything else).
    verdict: &'static str,
    problems: Vec<Problem>,
    e2e_ms: f64,
    /// Unix milliseconds of its completion.
    completed_at_ms: u64,
    waterfall: Waterfall,
}

/// A judged scan in the list, without its waterfall.
#[derive(Debug, Serialize)]
struct JudgedRow<'a> {
    trace_id: &'a str,
    task_id: &'a str,
    verdict: &'static str,
    problems: &'a [Problem],
    e2e_ms: f64,
    completed_at_ms: u64,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    sent: u64,
    accepted: u64,
    failed: u64,
    skipped: u64,
    completed: u64,
    lost: u64,
    in_flight: usize,
}

/// `GET /api/state`.
#[derive(Debug, Serialize)]
pub(crate) struct StateView<'a> {
    knobs: KnobsView,
    totals: &'a Totals,
    /// Over the last 5 s.
    accepted_per_s: f64,
    completed_per_s: f64,
    failed_per_s: f64,
    /// End to end (answer sent → both consumers done), over the last samples.
    e2e_p50_ms: f64,
    e2e_p99_ms: f64,
    traces: Vec<JudgedRow<'a>>,
}

/// A scan between its 202 and its completion.
struct InFlight {
    trace_id: Option<String>,
    sent: Instant,
}

#[derive(Default)]
struct Inner {
    totals: Totals,
    in_flight: HashMap<String, InFlight>,
    /// Completions that came before the 202 was read (the pipeline is that fast).
    early: HashMap<String, Instant>,
    /// (second since start, accepted, completed, failed), the last 10 s.
    seconds: VecDeque<(u64, u64, u64, u64)>,
    e2e_ms: VecDeque<f64>,
    /// Complete scans waiting for their spans: the scan, when it completed, e2e ms.
    ready: VecDeque<(Scan, Instant, f64)>,
    recent: VecDeque<Judged>,
}

/// The spans of the last [`SPAN_KEEP`], oldest first, with when each arrived: read only by the
/// judge, so judging borrows them instead of copying them out of [`Inner`].
#[derive(Default)]
struct Spans {
    arrived: Vec<Instant>,
    spans: Vec<Span>,
}

/// The demo's shared state.
pub(crate) struct Demo {
    knobs: Knobs,
    /// Scans per second, as `f64` bits.
    rate: AtomicU64,
    started: Instant,
    template: Template,
    inner: Mutex<Inner>,
    spans: Mutex<Spans>,
}

/// The rates the demo offers, scans per second.
const RATES: std::ops::RangeInclusive<f64> = 0.1..=1000.0;

/// `--rate`: a rate in [`RATES`], as the page's switch takes it.
pub(crate) fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if RATES.contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a rate in 0.1–1000 scans/s")),
    }
}

fn share(name: &str, value: Option<f64>) -> Result<Option<f64>, String> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(format!("{name} must be in 0–1, got {v}")),
        v => Ok(v),
    }
}

fn factor(name: &str, value: Option<f64>) -> Result<Option<f64>, String> {
    match value {
        Some(v) if !(0.0..=100.0).contains(&v) => Err(format!("{name} must be in 0–100, got {v}")),
        v => Ok(v),
    }
}

impl Demo {
    pub(crate) fn new(knobs: Knobs, rate: f64) -> Self {
        Self {
            knobs,
            rate: AtomicU64::new(rate.to_bits()),
            started: Instant::now(),
            template: Template::seed_pipeline(tb_verify::Relation::Child),
            inner: Mutex::default(),
            spans: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scans per second offered now.
    pub(crate) fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Turns the switches `update` names; nothing changes when one of them is out of range.
    pub(crate) fn turn(&self, update: &KnobsUpdate) -> Result<(), String> {
        let rate = match update.rate {
            Some(r) if !RATES.contains(&r) => {
                return Err(format!("rate must be in 0.1–1000 scans/s, got {r}"));
            }
            r => r,
        };
        let strips = [
            (
                share("strip_amqp", update.strip_amqp)?,
                &self.knobs.strip_amqp,
            ),
            (
                share("strip_http", update.strip_http)?,
                &self.knobs.strip_http,
            ),
            (
                share("strip_kafka", update.strip_kafka)?,
                &self.knobs.strip_kafka,
            ),
        ];
        let errors = [
            (
                share("vision_error_rate", update.vision_error_rate)?,
                &self.knobs.vision,
            ),
            (
                share("llm_error_rate", update.llm_error_rate)?,
                &self.knobs.llm,
            ),
        ];
        let factors = [
            (
                factor("vision_latency_factor", update.vision_latency_factor)?,
                &self.knobs.vision,
            ),
            (
                factor("llm_latency_factor", update.llm_latency_factor)?,
                &self.knobs.llm,
            ),
        ];
        if update.kafka_down.is_some() && self.knobs.kafka.is_none() {
            return Err(
                "kafka_down needs the embedded Kafka (the demo runs with --kafka-brokers)"
                    .to_owned(),
            );
        }
        if update.rabbitmq_down.is_some() && self.knobs.rabbitmq.is_none() {
            return Err("rabbitmq_down needs the demo's proxy in front of RabbitMQ".to_owned());
        }
        self.turn_brokers(update)?;
        if let Some(r) = rate {
            self.rate.store(r.to_bits(), Ordering::Relaxed);
        }
        for (value, strip) in strips {
            if let Some(v) = value {
                strip.set(v);
            }
        }
        for (value, mock) in errors {
            if let Some(v) = value {
                mock.set_error_rate(v);
            }
        }
        for (value, mock) in factors {
            if let Some(v) = value {
                mock.set_latency_factor(v);
            }
        }
        Ok(())
    }

    fn turn_brokers(&self, update: &KnobsUpdate) -> Result<(), String> {
        let k = &self.knobs;
        if let (Some(down), Some(kafka)) = (update.kafka_down, &k.kafka) {
            kafka
                .set_down(down)
                .map_err(|e| format!("kafka_down: {e}"))?;
            k.kafka_down.store(down, Ordering::Relaxed);
        }
        if let (Some(down), Some(proxy)) = (update.rabbitmq_down, &k.rabbitmq) {
            proxy.set(if down {
                tb_faults::Fault::Down
            } else {
                tb_faults::Fault::None
            });
            k.rabbitmq_down.store(down, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The switches, to bring the brokers back at the end.
    pub(crate) fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// Whether so many scans are in flight that the next arrival is skipped.
    pub(crate) fn saturated(&self) -> bool {
        self.lock().in_flight.len() >= MAX_IN_FLIGHT
    }

    pub(crate) fn skipped(&self) {
        self.lock().totals.skipped += 1;
    }

    fn second(&self, inner: &mut Inner, at: Instant) -> usize {
        let s = at.saturating_duration_since(self.started).as_secs();
        if inner.seconds.back().is_none_or(|b| b.0 < s) {
            inner.seconds.push_back((s, 0, 0, 0));
            while inner.seconds.len() > 10 {
                inner.seconds.pop_front();
            }
        }
        inner.seconds.iter().rposition(|b| b.0 == s).unwrap_or(0)
    }

    /// A `POST /scan` sent at `sent` was answered.
    pub(crate) fn answered(
        &self,
        result: Result<(String, Option<String>), ScanError>,
        sent: Instant,
    ) {
        let mut inner = self.lock();
        let i = self.second(&mut inner, Instant::now());
        inner.totals.sent += 1;
        let Ok((task_id, trace_id)) = result else {
            inner.totals.failed += 1;
            inner.seconds[i].3 += 1;
            return;
        };
        inner.totals.accepted += 1;
        inner.seconds[i].1 += 1;
        let scan = InFlight { trace_id, sent };
        match inner.early.remove(&task_id) {
            Some(at) => self.complete(&mut inner, task_id, scan, at),
            None => {
                inner.in_flight.insert(task_id, scan);
            }
        }
    }

    /// The scan `task_id` completed end to end at `at` (both consumers done, see
    /// [`tb_consumers::Completions`]); it may come before its 202 was read.
    pub(crate) fn completed(&self, task_id: &str, at: Instant) {
        let mut inner = self.lock();
        match inner.in_flight.remove_entry(task_id) {
            Some((task_id, scan)) => self.complete(&mut inner, task_id, scan, at),
            None => {
                inner.early.insert(task_id.to_owned(), at);
            }
        }
    }

    fn complete(&self, inner: &mut Inner, task_id: String, scan: InFlight, at: Instant) {
        let i = self.second(inner, Instant::now());
        inner.seconds[i].2 += 1;
        inner.totals.completed += 1;
        let e2e_ms = at.saturating_duration_since(scan.sent).as_secs_f64() * 1e3;
        inner.e2e_ms.push_back(e2e_ms);
        if inner.e2e_ms.len() > SAMPLES {
            inner.e2e_ms.pop_front();
        }
        if let Some(trace_id) = scan.trace_id {
            inner
                .ready
                .push_back((Scan { task_id, trace_id }, at, e2e_ms));
        }
    }

    /// Takes the spans that `arrived`, judges the scans that completed long enough ago, and
    /// forgets old spans and scans that never completed.
    pub(crate) fn judge(&self, arrived: Vec<Span>) {
        let now = Instant::now();
        let mut buffer = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        let old = buffer.arrived.partition_point(|t| now - *t > SPAN_KEEP);
        buffer.arrived.drain(..old);
        buffer.spans.drain(..old);
        buffer
            .arrived
            .extend(std::iter::repeat_n(now, arrived.len()));
        buffer.spans.extend(arrived);
        let scans = {
            let mut inner = self.lock();
            let lost_before = inner.in_flight.len();
            inner.in_flight.retain(|_, s| now - s.sent < GIVE_UP);
            inner.totals.lost += (lost_before - inner.in_flight.len()) as u64;
            inner.early.retain(|_, at| now - *at < GIVE_UP);
            let mut scans = Vec::new();
            while inner
                .ready
                .front()
                .is_some_and(|(_, at, _)| now - *at >= SETTLE)
            {
                scans.extend(inner.ready.pop_front());
            }
            scans
        };
        if scans.is_empty() {
            return;
        }
        let judged = self.verdicts(&scans, &buffer.spans);
        drop(buffer);
        let mut inner = self.lock();
        for j in judged {
            inner.recent.push_front(j);
        }
        inner.recent.truncate(RECENT);
    }

    fn verdicts(&self, scans: &[(Scan, Instant, f64)], spans: &[Span]) -> Vec<Judged> {
        let list: Vec<Scan> = scans.iter().map(|(s, _, _)| s.clone()).collect();
        let (_, verdicts) = tb_verify::judge(&self.template, &list, spans, |_| true);
        let unix_ms = |at: Instant| {
            let ago = Instant::now().saturating_duration_since(at);
            SystemTime::now()
                .checked_sub(ago)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64)
        };
        verdicts
            .into_iter()
            .zip(scans)
            .map(|(v, (_, at, e2e_ms))| {
                let path = tb_verify::critical_path(&v.spans).unwrap_or_default();
                let broken = v
                    .problems
                    .iter()
                    .any(|p| matches!(p, Problem::BrokenEdge(_) | Problem::MissingServer(_)));
                Judged {
                    trace_id: v.trace_id.clone(),
                    task_id: v.task_id.clone(),
                    verdict: match (v.problems.is_empty(), broken) {
                        (true, _) => "complete",
                        (false, true) => "broken",
                        (false, false) => "incomplete",
                    },
                    waterfall: Waterfall::of(&v, &path),
                    problems: v.problems,
                    e2e_ms: *e2e_ms,
                    completed_at_ms: unix_ms(*at),
                }
            })
            .collect()
    }

    /// A recent judged trace.
    pub(crate) fn trace(&self, trace_id: &str) -> Option<Judged> {
        self.lock()
            .recent
            .iter()
            .find(|j| j.trace_id == trace_id)
            .cloned()
    }

    /// Everything the page shows but the waterfalls.
    pub(crate) fn state(&self) -> serde_json::Value {
        let mut inner = self.lock();
        inner.totals.in_flight = inner.in_flight.len();
        let now_s = self.started.elapsed().as_secs();
        // The last five whole seconds.
        let window = inner
            .seconds
            .iter()
            .filter(|b| b.0 < now_s && b.0 + 5 >= now_s);
        let (a, c, f) = window.fold((0, 0, 0), |(a, c, f), b| (a + b.1, c + b.2, f + b.3));
        let mut sorted: Vec<f64> = inner.e2e_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        let k = &self.knobs;
        let view = StateView {
            knobs: KnobsView {
                rate: self.rate(),
                strip_amqp: k.strip_amqp.ratio(),
                strip_http: k.strip_http.ratio(),
                strip_kafka: k.strip_kafka.ratio(),
                vision_error_rate: k.vision.error_rate(),
                vision_latency_factor: k.vision.latency_factor(),
                llm_error_rate: k.llm.error_rate(),
                llm_latency_factor: k.llm.latency_factor(),
                rabbitmq_down: k.rabbitmq_down.load(Ordering::Relaxed),
                kafka_down: k.kafka_down.load(Ordering::Relaxed),
                kafka_switchable: k.kafka.is_some(),
            },
            totals: &inner.totals,
            accepted_per_s: a as f64 / 5.0,
            completed_per_s: c as f64 / 5.0,
            failed_per_s: f as f64 / 5.0,
            e2e_p50_ms: pct(0.5),
            e2e_p99_ms: pct(0.99),
            traces: inner
                .recent
                .iter()
                .map(|j| JudgedRow {
                    trace_id: &j.trace_id,
                    task_id: &j.task_id,
                    verdict: j.verdict,
                    problems: &j.problems,
                    e2e_ms: j.e2e_ms,
                    completed_at_ms: j.completed_at_ms,
                })
                .collect(),
        };
        serde_json::to_value(&view).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Demo {
        Demo::new(Knobs::of(&PipelineConfig::seed(0.01)), 5.0)
    }

    #[test]
    fn a_scan_completes_whether_its_completion_or_its_202_came_first() {
        let d = demo();
        let sent = Instant::now();
        d.answered(Ok(("a".into(), Some("ta".into()))), sent);
        d.completed("a", Instant::now());
        // The consumers may finish before the 202 is read.
        d.completed("b", Instant::now());
        assert_eq!(d.lock().totals.completed, 1);
        d.answered(Ok(("b".into(), Some("tb".into()))), sent);
        d.answered(Err(ScanError::NoTaskId), sent);
        let inner = d.lock();
        assert_eq!(inner.totals.completed, 2);
        assert_eq!(
            (
                inner.totals.sent,
                inner.totals.accepted,
                inner.totals.failed
            ),
            (3, 2, 1)
        );
        assert!(inner.in_flight.is_empty() && inner.early.is_empty());
        assert_eq!(inner.ready.len(), 2);
    }

    #[test]
    fn switches_turn_the_pipelines_knobs_and_refuse_values_out_of_range_whole() {
        let config = PipelineConfig::seed(0.01);
        let d = Demo::new(Knobs::of(&config), 5.0);
        d.turn(&KnobsUpdate {
            strip_kafka: Some(1.0),
            vision_latency_factor: Some(3.0),
            rate: Some(20.0),
            ..KnobsUpdate::default()
        })
        .expect("in range");
        assert_eq!(
            config.worker.strip_kafka.ratio(),
            1.0,
            "the config's own strip"
        );
        assert_eq!(config.vision.knobs.latency_factor(), 3.0);
        assert_eq!(d.rate(), 20.0);
        let e = d
            .turn(&KnobsUpdate {
                strip_amqp: Some(0.5),
                llm_error_rate: Some(1.5),
                ..KnobsUpdate::default()
            })
            .expect_err("1.5 is not a share");
        assert!(e.contains("llm_error_rate"), "{e}");
        assert_eq!(config.strip_amqp.ratio(), 0.0, "nothing turned");
        assert!(
            d.turn(&KnobsUpdate {
                rate: Some(0.0),
                ..KnobsUpdate::default()
            })
            .is_err()
        );
    }
}
