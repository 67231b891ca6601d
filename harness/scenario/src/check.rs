//! Stage 2: [`Scenario::from_raw`] checks every value of a [`RawScenario`] and builds the
//! plan; every error names the field.

mod ladder;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tb_load::{Arrival, Load};
use tb_mocks::{Faults, Latency};
use tb_pipeline::{PipelineConfig, seed};
use tb_store::{PgConfig, StoreChoice};
use tb_telemetry::fault::Strip;
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{BatchSettings, Sampling};
use tb_verify::Template;

use crate::error::ScenarioError;
use crate::plan::{CapacitySearch, Expect, Fault, Infra, Scenario, ScheduledFault, TracingPlan};
use crate::raw::{
    FaultHop, Hop, InfraMode, RawArrival, RawExpect, RawExporter, RawFault, RawFaults, RawInfra,
    RawLatency, RawLoad, RawScenario, RawScheduledFault, RawSearch, RawServices, RawStore,
    RawTraceShape, RawTracing, RawWorker,
};

/// Collects the field path while stage 2 walks the raw scenario.
struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// `faults.schedule`: each fault within the load (`warmup + duration` long), no two on one
    /// hop at once, Kafka only as an outage (the embedded broker's own controls).
    fn schedule(
        &self,
        raw: &[RawScheduledFault],
        load: Duration,
    ) -> Result<Vec<ScheduledFault>, ScenarioError> {
        let mut faults: Vec<ScheduledFault> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let path = |f: &str| format!("faults.schedule[{i}].{f}");
            let at = self.duration(&path("at"), &r.at)?;
            let lasts = self.duration(&path("for"), &r.lasts)?;
            if lasts.is_zero() {
                return Err(self.err(&path("for"), "expected a duration > 0"));
            }
            if at + lasts > load {
                return Err(self.err(
                    &path("for"),
                    format!("the fault ends after the load ({load:?} with the warm-up)"),
                ));
            }
            let fault = self.fault(&r.fault, &path)?;
            let overlaps = faults
                .iter()
                .any(|f| f.fault.hop() == fault.hop() && at < f.at + f.lasts && f.at < at + lasts);
            if overlaps {
                return Err(self.err(
                    &path("at"),
                    format!("overlaps an earlier fault on {}", fault.hop().name()),
                ));
            }
            faults.push(ScheduledFault { at, lasts, fault });
        }
        faults.sort_by_key(|f| f.at);
        Ok(faults)
    }

    /// One fault of `faults.schedule`: what each hop can take, and values in range.
    fn fault(&self, raw: &RawFault, path: &dyn Fn(&str) -> String) -> Result<Fault, ScenarioError> {
        Ok(match raw {
            RawFault::CollectorDown => Fault::Blackhole(FaultHop::Collector),
            RawFault::WorkerCrash => Fault::WorkerCrash,
            RawFault::Outage(FaultHop::Worker)
            | RawFault::Blackhole(FaultHop::Worker)
            | RawFault::Latency {
                hop: FaultHop::Worker,
                ..
            }
            | RawFault::Bandwidth {
                hop: FaultHop::Worker,
                ..
            } => {
                return Err(self.err(
                    &path("fault"),
                    "the worker takes worker_crash only (SIGKILL, started again after `for`)",
                ));
            }
            RawFault::Outage(hop) => Fault::Outage(*hop),
            RawFault::Blackhole(FaultHop::Kafka)
            | RawFault::Latency {
                hop: FaultHop::Kafka,
                ..
            }
            | RawFault::Bandwidth {
                hop: FaultHop::Kafka,
                ..
            } => {
                return Err(self.err(
                    &path("fault"),
                    "kafka takes outage only (the embedded broker's own down/up controls)",
                ));
            }
            RawFault::Blackhole(hop) => Fault::Blackhole(*hop),
            RawFault::Latency { hop, ms } => {
                if !ms.is_finite() || *ms <= 0.0 {
                    return Err(self.err(&path("fault.latency.ms"), "expected a delay > 0"));
                }
                Fault::Latency(*hop, Duration::from_secs_f64(ms / 1e3))
            }
            RawFault::Bandwidth { hop, bytes_per_s } => {
                if *bytes_per_s == 0 {
                    return Err(self.err(
                        &path("fault.bandwidth.bytes_per_s"),
                        "expected at least 1 byte a second",
                    ));
                }
                Fault::Bandwidth(*hop, *bytes_per_s)
            }
        })
    }

    fn duration(&self, path: &str, text: &str) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                path,
                format!("expected a duration such as 10s or 500ms ({e}), got {text:?}"),
            )
        })
    }

    fn positive(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(self.err(path, format!("expected a number > 0, got {value}")))
        }
    }

    fn non_negative(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(self.err(path, format!("expected a number >= 0, got {value}")))
        }
    }

    fn share(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(self.err(
                path,
                format!("expected a share between 0 and 1, got {value}"),
            ))
        }
    }

    fn latency(&self, path: &str, raw: RawLatency) -> Result<Latency, ScenarioError> {
        let latency = Latency::from(raw);
        latency
            .sampler()
            .map_err(|e| self.err(path, e.to_string()))?;
        Ok(latency)
    }

    fn faults(&self, path: &str, raw: &RawFaults) -> Result<Faults, ScenarioError> {
        let faults = Faults {
            error_rate: self.share(&format!("{path}.error_rate"), raw.error_rate)?,
            rate_limit_rate: self.share(&format!("{path}.rate_limit_rate"), raw.rate_limit_rate)?,
            retry_after_s: raw.retry_after_s.unwrap_or(1),
            timeout_rate: self.share(&format!("{path}.timeout_rate"), raw.timeout_rate)?,
            fail_first: raw.fail_first,
            ..Faults::default()
        };
        faults
            .validate()
            .map_err(|e| self.err(path, e.to_string()))?;
        Ok(faults)
    }

    fn ms(
        &self,
        path: &str,
        value: Option<f64>,
        default: f64,
        scale: f64,
    ) -> Result<Duration, ScenarioError> {
        let ms = self.non_negative(path, value.unwrap_or(default))?;
        Ok(Duration::from_secs_f64(ms * scale / 1000.0))
    }
}

impl Scenario {
    /// Stage 2: checks every value and builds the plan.
    ///
    /// # Errors
    ///
    /// Fails on the first impossible value, naming its field.
    pub fn from_raw(file: &Path, raw: RawScenario) -> Result<Self, ScenarioError> {
        let c = Check { file };
        if raw.name.trim().is_empty() {
            return Err(c.err("name", "expected a non-empty name"));
        }
        let duration = c.duration("duration", &raw.duration)?;
        if duration.is_zero() {
            return Err(c.err("duration", "expected a duration > 0"));
        }
        let warmup = match &raw.warmup {
            Some(w) => c.duration("warmup", w)?,
            None => Duration::ZERO,
        };
        // 0 is valid: no simulated waiting or spinning at all, protocol and telemetry cost only.
        let scale = c.non_negative("time_scale", raw.time_scale)?;
        let (load, search) = c.load(&raw.load)?;
        let pipeline = c.pipeline(&raw.services, scale, raw.seed)?;
        let tracing = c.tracing(&raw.tracing)?;
        let mut pipeline = pipeline.with_relation(tracing.relation);
        let infra = c.infra(raw.infra, tracing.exporter)?;
        let expect = c.expect(&raw.expect, tracing.relation)?;
        let strip = match raw.faults.strip_headers {
            Some(st) => Some((st.hop, c.share("faults.strip_headers.ratio", st.ratio)?)),
            None => None,
        };
        let faults = c.schedule(&raw.faults.schedule, warmup + duration)?;
        if let Some(i) = faults
            .iter()
            .position(|f| f.fault.hop() == FaultHop::Collector)
            && tracing.exporter == RawExporter::Discard
        {
            return Err(c.err(
                &format!("faults.schedule[{i}].fault"),
                "the collector can fail only when spans go to one (tracing.exporter: embedded or otlp)",
            ));
        }
        match strip {
            Some((Hop::Amqp, r)) => pipeline.strip_amqp = Arc::new(Strip::new(r)),
            Some((Hop::Http, r)) => pipeline.worker.strip_http = Arc::new(Strip::new(r)),
            Some((Hop::Kafka, r)) => pipeline.worker.strip_kafka = Arc::new(Strip::new(r)),
            None => {}
        }
        Ok(Self {
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            duration,
            warmup,
            time_scale: scale,
            load,
            pipeline,
            tracing,
            infra,
            expect,
            strip,
            faults,
            overhead: c.overhead(&raw.overhead, search)?,
            search,
        })
    }
}

impl Check<'_> {
    /// `load`: the arrival process and the generator's limits, and the search when it is one.
    fn load(&self, raw: &RawLoad) -> Result<(Load, Option<CapacitySearch>), ScenarioError> {
        let mut search = None;
        let rate = |path: &str| -> Result<f64, ScenarioError> {
            match raw.rate {
                Some(r) => self.positive(path, r),
                None => Err(self.err(path, "required for constant and poisson arrivals")),
            }
        };
        let arrival = match &raw.arrival {
            RawArrival::Constant => Arrival::Constant {
                rate: rate("load.rate")?,
            },
            RawArrival::Poisson => Arrival::Poisson {
                rate: rate("load.rate")?,
            },
            RawArrival::Burst {
                base,
                peak,
                period,
                duty,
            } => self.burst(*base, *peak, period, *duty)?,
            RawArrival::Search(s) => {
                let s = self.search("load.arrival.search", s)?;
                search = Some(s);
                Arrival::Constant { rate: s.from }
            }
            RawArrival::Ramp { from, to } => {
                let from = self.non_negative("load.arrival.ramp.from", *from)?;
                let to = self.non_negative("load.arrival.ramp.to", *to)?;
                if from == 0.0 && to == 0.0 {
                    return Err(self.err("load.arrival.ramp", "expected from or to > 0"));
                }
                Arrival::Ramp { from, to }
            }
        };
        if raw.rate.is_some() && !matches!(raw.arrival, RawArrival::Constant | RawArrival::Poisson)
        {
            return Err(self.err(
                "load.rate",
                "only for constant and poisson arrivals; burst, ramp and search carry their own rates",
            ));
        }
        let max_in_flight = raw.max_in_flight.unwrap_or(10_000);
        if max_in_flight == 0 {
            return Err(self.err("load.max_in_flight", "expected at least 1"));
        }
        let connections = raw.connections.unwrap_or(64);
        if connections == 0 {
            return Err(self.err("load.connections", "expected at least 1"));
        }
        let load = Load {
            arrival,
            max_in_flight,
            connections,
        };
        Ok((load, search))
    }

    /// `load.arrival.search`.
    fn search(&self, at: &str, raw: &RawSearch) -> Result<CapacitySearch, ScenarioError> {
        let path = |f: &str| format!("{at}.{f}");
        let from = self.positive(&path("from"), raw.from)?;
        let to = self.positive(&path("to"), raw.to)?;
        if to < from {
            return Err(self.err(
                &path("to"),
                format!("expected at least from ({from}), got {to}"),
            ));
        }
        let step = self.positive(&path("step"), raw.step)?;
        let hold = self.duration(&path("hold"), &raw.hold)?;
        if hold.is_zero() {
            return Err(self.err(&path("hold"), "expected a duration > 0"));
        }
        let max_p99_ms = self.positive(&path("max_p99_ms"), raw.max_p99_ms)?;
        Ok(CapacitySearch {
            from,
            to,
            step,
            hold,
            max_p99_ms,
        })
    }

    /// `load.arrival.burst`.
    fn burst(
        &self,
        base: f64,
        peak: f64,
        period: &str,
        duty: f64,
    ) -> Result<Arrival, ScenarioError> {
        let base = self.non_negative("load.arrival.burst.base", base)?;
        let peak = self.positive("load.arrival.burst.peak", peak)?;
        if peak < base {
            return Err(self.err(
                "load.arrival.burst.peak",
                format!("expected at least base ({base}), got {peak}"),
            ));
        }
        let period = self.duration("load.arrival.burst.period", period)?;
        if period.is_zero() {
            return Err(self.err("load.arrival.burst.period", "expected a duration > 0"));
        }
        let duty = self.share("load.arrival.burst.duty", duty)?;
        Ok(Arrival::Burst {
            base,
            peak,
            period,
            duty,
        })
    }

    /// `services`: the seed scaled by `scale`, with the file's overrides.
    fn pipeline(
        &self,
        s: &RawServices,
        scale: f64,
        seed: u64,
    ) -> Result<PipelineConfig, ScenarioError> {
        let mut pipeline = PipelineConfig::seed(scale);
        if let Some(l) = s.vision.latency {
            pipeline.vision.latency = self.latency("services.vision.latency", l)?;
        }
        pipeline.vision.faults = self.faults("services.vision", &s.vision.faults)?;
        pipeline.vision.seed = seed;
        if let Some(l) = s.llm.ttft {
            pipeline.llm.ttft = self.latency("services.llm.ttft", l)?;
        }
        if let Some(l) = s.llm.per_token {
            pipeline.llm.per_token = self.latency("services.llm.per_token", l)?;
        }
        if let Some(t) = s.llm.tokens {
            pipeline.llm.tokens = t;
        }
        pipeline.llm.faults = self.faults("services.llm", &s.llm.faults)?;
        pipeline.llm.seed = seed.wrapping_add(1);
        self.worker(&s.worker, scale, &mut pipeline.worker)?;
        let ms = |path: &str, value: Option<f64>, default: Duration| {
            self.ms(path, value, default.as_secs_f64() * 1000.0, scale)
        };
        pipeline.store_latency = ms("services.store_ms", s.store_ms, seed::STORE_WRITE)?;
        pipeline.consumers.handle_latency = ms("services.handle_ms", s.handle_ms, seed::HANDLE)?;
        pipeline.consumers.grant_latency = ms("services.grant_ms", s.grant_ms, seed::GRANT)?;
        if let Some(n) = s.consumers.concurrency {
            if n == 0 {
                return Err(self.err("services.consumers.concurrency", "expected at least 1"));
            }
            pipeline.consumers.concurrency = n;
        }
        pipeline.store = self.store(s)?;
        Ok(pipeline)
    }

    /// `services.store` and `services.postgres`.
    fn store(&self, s: &RawServices) -> Result<StoreChoice, ScenarioError> {
        match (s.store, &s.postgres) {
            (RawStore::Memory, None) => Ok(StoreChoice::Memory),
            (RawStore::Memory, Some(_)) => Err(self.err(
                "services.postgres",
                "only used with `store: postgres` (the store is memory)",
            )),
            (RawStore::Postgres, pg) => {
                let pg = pg.as_ref();
                let config = PgConfig::resolve(
                    pg.and_then(|p| p.url.clone()),
                    pg.and_then(|p| p.schema.clone()),
                );
                config
                    .check()
                    .map_err(|(field, e)| self.err(&format!("services.postgres.{field}"), e))?;
                Ok(StoreChoice::Postgres(config))
            }
        }
    }

    /// `services.worker`.
    fn worker(
        &self,
        w: &RawWorker,
        scale: f64,
        worker: &mut tb_worker::WorkerConfig,
    ) -> Result<(), ScenarioError> {
        if let Some(n) = w.concurrency {
            if n == 0 {
                return Err(self.err("services.worker.concurrency", "expected at least 1"));
            }
            worker.concurrency = n;
        }
        worker.prefetch = match w.prefetch {
            Some(0) => return Err(self.err("services.worker.prefetch", "expected at least 1")),
            Some(p) => p,
            None => seed::prefetch(worker.concurrency),
        };
        if let Some(r) = w.max_retries {
            worker.max_retries = r;
        }
        if let Some(b) = &w.retry_backoff {
            worker.retry_backoff = self.duration("services.worker.retry_backoff", b)?;
        }
        if let Some(t) = &w.call_timeout {
            worker.call_timeout = self.duration("services.worker.call_timeout", t)?;
        }
        worker.rule_match_work = self.ms(
            "services.worker.rule_match_ms",
            w.rule_match_ms,
            seed::RULE_MATCH.as_secs_f64() * 1000.0,
            scale,
        )?;
        Ok(())
    }

    /// `tracing`.
    fn tracing(&self, t: &RawTracing) -> Result<TracingPlan, ScenarioError> {
        let sampling = match t.sampler {
            Sampling::Ratio(r) => Sampling::Ratio(self.share("tracing.sampler.ratio", r)?),
            other => other,
        };
        let mut batch = BatchSettings::default();
        if let Some(n) = t.batch.max_queue_size {
            batch.max_queue_size = n;
        }
        if let Some(n) = t.batch.max_export_batch_size {
            batch.max_export_batch_size = n;
        }
        if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
            return Err(self.err(
                "tracing.batch.max_export_batch_size",
                format!(
                    "expected 1 to max_queue_size ({}), got {}",
                    batch.max_queue_size, batch.max_export_batch_size
                ),
            ));
        }
        if let Some(d) = &t.batch.scheduled_delay {
            batch.scheduled_delay = self.duration("tracing.batch.scheduled_delay", d)?;
        }
        Ok(TracingPlan {
            sampling,
            exporter: t.exporter,
            batch,
            relation: t.consumer_relation,
            synthetic_span_cost: self
                .micros("tracing.synthetic_span_cost_us", t.synthetic_span_cost_us)?,
        })
    }

    /// A count of microseconds, at most one second.
    fn micros(&self, path: &str, us: f64) -> Result<Duration, ScenarioError> {
        let us = self.non_negative(path, us)?;
        if us > 1e6 {
            return Err(self.err(path, format!("expected at most 1000000 (1 s), got {us}")));
        }
        Ok(Duration::from_secs_f64(us / 1e6))
    }

    /// `infra`.
    fn infra(&self, i: RawInfra, exporter: RawExporter) -> Result<Infra, ScenarioError> {
        if i.rabbitmq == InfraMode::Embedded {
            return Err(self.err(
                "infra.rabbitmq",
                "there is no embedded RabbitMQ; expected auto, docker or external",
            ));
        }
        if exporter == RawExporter::Otlp && i.traces == InfraMode::Embedded {
            return Err(self.err(
                "tracing.exporter",
                "otlp needs an external or docker trace backend, not infra.traces: embedded",
            ));
        }
        Ok(Infra {
            rabbitmq: i.rabbitmq,
            amqp_url: i.amqp_url,
            kafka: i.kafka,
            kafka_brokers: i.kafka_brokers,
            traces: i.traces,
            otlp_endpoint: i.otlp_endpoint,
            tempo_url: i.tempo_url,
        })
    }

    /// `expect`.
    fn expect(&self, e: &RawExpect, relation: ConsumerRelation) -> Result<Expect, ScenarioError> {
        let template = match &e.trace {
            None => Template::seed_pipeline(relation.into()),
            Some(RawTraceShape::Named(n)) if n == "seed-pipeline" => {
                Template::seed_pipeline(relation.into())
            }
            Some(RawTraceShape::Named(n)) => {
                return Err(self.err(
                    "expect.trace",
                    format!("unknown template {n:?}; expected seed-pipeline or a tree"),
                ));
            }
            Some(RawTraceShape::Tree(node)) => {
                Template::from_tree(node).map_err(|e| self.err("expect.trace", e.to_string()))?
            }
        };
        Ok(Expect {
            min_success_rate: self.share(
                "expect.min_success_rate",
                e.min_success_rate.unwrap_or(0.99),
            )?,
            max_p99_ms: e
                .max_p99_ms
                .map(|v| self.positive("expect.max_p99_ms", v))
                .transpose()?,
            template,
            min_complete_ratio: e
                .min_complete_ratio
                .map(|v| self.share("expect.min_complete_ratio", v))
                .transpose()?,
            max_broken: e.max_broken.clone(),
            allow_telemetry_loss: e.allow_telemetry_loss,
            max_rss_growth: e
                .max_rss_growth
                .map(|v| self.positive("expect.max_rss_growth", v))
                .transpose()?,
        })
    }
}
