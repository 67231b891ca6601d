//! The one hand-off from a run to the service processes it starts: a [`ServiceSpec`], the
//! knobs of the plan (latencies, faults, worker, consumers, store, tracing) as one JSON file,
//! written by the harness from the typed [`Scenario`] and read back by `tracebench service
//! --spec`. A child never parses a scenario file again, and nothing edits one for it: the
//! overhead ladder's arms are typed values ([`Scenario::with_arm`]). The *how* of a child
//! (which service, its addresses, the brokers, where spans go) stays on its command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tb_pipeline::PipelineConfig;
use tb_telemetry::{Exporter, TelemetryConfig};

use crate::plan::{Arm, Scenario, TracingPlan};
use crate::raw::{ArmExporter, RawExporter};

/// What a service process needs of the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The knobs of every service (which run here and their wiring come from the command line).
    pub pipeline: PipelineConfig,
    /// Sampler, exporter kind, batch settings, the synthetic span cost.
    pub tracing: TracingPlan,
}

/// Why a spec file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// It is not a spec (written by another version, or by hand).
    #[error("{0}: not a service spec: {1}")]
    Json(PathBuf, serde_json::Error),
}

impl ServiceSpec {
    /// `scenario`'s knobs.
    pub fn of(scenario: &Scenario) -> Self {
        Self {
            pipeline: scenario.pipeline.clone(),
            tracing: scenario.tracing,
        }
    }

    /// Writes it to `path` as JSON, creating its directory when missing.
    ///
    /// # Errors
    ///
    /// Fails when the directory or the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), SpecError> {
        let io = |e| SpecError::Io(path.into(), e);
        let json = serde_json::to_vec_pretty(self).map_err(|e| SpecError::Json(path.into(), e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, json).map_err(io)
    }

    /// Reads the spec at `path`.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read or is not a spec.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let bytes = std::fs::read(path).map_err(|e| SpecError::Io(path.into(), e))?;
        serde_json::from_slice(&bytes).map_err(|e| SpecError::Json(path.into(), e))
    }
}

impl TracingPlan {
    /// The telemetry of services traced under this plan, their spans going to `exporter` (the
    /// run's collection) unless the plan discards them.
    pub fn telemetry(&self, exporter: Exporter) -> TelemetryConfig {
        TelemetryConfig {
            sampling: self.sampling,
            exporter: match self.exporter {
                RawExporter::Discard => Exporter::Discard,
                RawExporter::Embedded | RawExporter::Otlp => exporter,
            },
            batch: self.batch,
            synthetic_span_cost: self.synthetic_span_cost,
            ..TelemetryConfig::default()
        }
    }
}

impl Scenario {
    /// This scenario traced as `arm` of the overhead ladder says: its sampler, its exporter
    /// (spans batched and dropped, or sent to the endpoint the run gives), its synthetic cost.
    #[must_use]
    pub fn with_arm(&self, arm: &Arm) -> Self {
        let mut s = self.clone();
        s.tracing.sampling = arm.sampling;
        s.tracing.exporter = match arm.exporter {
            ArmExporter::Discard => RawExporter::Discard,
            ArmExporter::Otlp | ArmExporter::External => RawExporter::Embedded,
        };
        s.tracing.synthetic_span_cost = arm.synthetic_span_cost;
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tb_telemetry::Sampling;

    use super::*;

    fn scenario() -> Scenario {
        let text = "
name: spec
seed: 7
duration: 1s
time_scale: 0.01
load: {arrival: constant, rate: 10}
services:
  vision: {latency: {constant: {ms: 12}}, error_rate: 0.1}
  worker: {concurrency: 3}
  consumers: {concurrency: 5}
tracing: {sampler: {ratio: 0.25}, synthetic_span_cost_us: 40}
faults: {strip_headers: {hop: amqp, ratio: 0.5}}
";
        Scenario::parse(Path::new("spec.yaml"), text).expect("parses")
    }

    #[test]
    fn a_spec_read_back_holds_the_knobs_it_was_written_with() {
        let s = scenario();
        let path = std::env::temp_dir().join(format!("tb-spec-{}.json", std::process::id()));
        ServiceSpec::of(&s).write(&path).expect("writes");
        let back = ServiceSpec::read(&path).expect("reads");
        std::fs::remove_file(&path).ok();
        assert_eq!(back.tracing, s.tracing);
        assert_eq!(back.pipeline.vision, s.pipeline.vision);
        assert_eq!(back.pipeline.llm, s.pipeline.llm);
        assert_eq!(back.pipeline.worker.concurrency, 3);
        assert_eq!(back.pipeline.consumers.concurrency, 5);
        assert_eq!(
            back.pipeline.worker.rule_match_work,
            s.pipeline.worker.rule_match_work
        );
        assert_eq!(back.pipeline.strip_amqp.ratio(), 0.5);
        assert_eq!(back.pipeline.store, s.pipeline.store);
        assert_eq!(back.pipeline.store_latency, s.pipeline.store_latency);
        // The how is the command line's: not in the file.
        assert!(back.pipeline.services.is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_spec_is_refused_naming_it() {
        let path = std::env::temp_dir().join(format!("tb-not-spec-{}.json", std::process::id()));
        std::fs::write(&path, "{\"pipeline\": 3}").expect("writes");
        let e = ServiceSpec::read(&path).expect_err("not a spec");
        std::fs::remove_file(&path).ok();
        assert!(e.to_string().contains("not a service spec"), "{e}");
        assert!(e.to_string().contains("tb-not-spec"), "{e}");
    }

    #[test]
    fn an_arm_sets_the_sampler_the_exporter_and_the_synthetic_cost_and_nothing_else() {
        let s = scenario();
        let arm = Arm {
            name: "off".to_owned(),
            sampling: Sampling::Off,
            exporter: ArmExporter::Discard,
            synthetic_span_cost: Duration::from_micros(1000),
        };
        let off = s.with_arm(&arm);
        assert_eq!(off.tracing.sampling, Sampling::Off);
        assert_eq!(off.tracing.exporter, RawExporter::Discard);
        assert_eq!(off.tracing.synthetic_span_cost, Duration::from_micros(1000));
        assert_eq!(off.tracing.batch, s.tracing.batch);
        assert_eq!(
            off.pipeline.worker.concurrency,
            s.pipeline.worker.concurrency
        );
        let otlp = s.with_arm(&Arm {
            exporter: ArmExporter::Otlp,
            ..arm
        });
        assert_eq!(otlp.tracing.exporter, RawExporter::Embedded);
        // An exporting plan takes the run's exporter; a discarding one drops it.
        let collection = Exporter::Otlp {
            protocol: tb_telemetry::Protocol::Grpc,
            endpoint: Some("http://127.0.0.1:4317".to_owned()),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            otlp.tracing.telemetry(collection.clone()).exporter,
            collection
        );
        assert_eq!(
            off.tracing.telemetry(collection).exporter,
            Exporter::Discard
        );
    }
}
