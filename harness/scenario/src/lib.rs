//! Scenario files: what a run drives, read in two stages. [`raw`] mirrors the YAML — every
//! field documented, unknown fields rejected — and [`check`] turns it into a [`Scenario`]
//! ([`plan`]) whose types hold the invariants (positive rates, p99 above median, shares in
//! 0–1). Every error names the file, the field path and what was expected.
//!
//! This crate is the scenario file and nothing else: the harness that runs a plan, and the
//! fuzz target that feeds it garbage, both depend on it alone for that.
//!
//! `scenarios/README.md` documents each field with its default; keep the two in step.

pub mod check;
mod error;
pub mod plan;
pub mod raw;
pub mod spec;

use std::path::Path;

pub use error::ScenarioError;
pub use plan::{
    Arm, CapacitySearch, Expect, Fault, Infra, OverheadPlan, OverheadRate, Scenario,
    ScheduledFault, TracingPlan, arm_name,
};
pub use raw::{ArmExporter, FaultHop, Hop, InfraMode, RawExporter, RawScenario};
pub use spec::{ServiceSpec, SpecError};

impl Scenario {
    /// Reads and validates the scenario at `path`.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read, is not valid YAML for the schema, or holds an
    /// impossible value; the error names the field.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_owned(),
            path: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates scenario `text`; `path` is used in errors.
    ///
    /// # Errors
    ///
    /// As [`Scenario::load`], less the reading.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        // Enums are written as `{variant: {...}}` maps or plain `variant` strings, which serde's
        // YAML needs the singleton-map adapter for; the path tracker sits underneath it so an
        // error still names the field.
        let mut track = serde_path_to_error::Track::new();
        let deserializer = serde_path_to_error::Deserializer::new(
            serde_norway::Deserializer::from_str(text),
            &mut track,
        );
        let parsed: Result<RawScenario, _> =
            serde_norway::with::singleton_map_recursive::deserialize(deserializer);
        let raw = parsed.map_err(|e| {
            let field = track.path().to_string();
            let mut message = e.to_string();
            // The YAML error starts with the enclosing path ("load: unknown field ..."); the
            // tracked path says it better, so drop the repetition.
            if let Some((prefix, rest)) = message.split_once(": ")
                && field.starts_with(prefix)
            {
                message = rest.to_owned();
            }
            ScenarioError {
                file: path.to_owned(),
                path: if field == "." { String::new() } else { field },
                message,
            }
        })?;
        Self::from_raw(path, raw)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tb_load::Arrival;
    use tb_telemetry::Sampling;

    use super::*;

    const MINIMAL: &str = "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 10\n";

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("s.yaml"), text)
    }

    fn error_path(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.path,
        }
    }

    #[test]
    fn a_minimal_scenario_gets_the_documented_defaults() {
        let s = parse(MINIMAL).expect("valid");
        assert_eq!(s.duration, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::ZERO);
        assert_eq!(s.load.arrival, Arrival::Poisson { rate: 10.0 });
        assert_eq!((s.load.max_in_flight, s.load.connections), (10_000, 64));
        assert_eq!(s.tracing.sampling, Sampling::AlwaysOn);
        assert_eq!(s.expect.min_success_rate, 0.99);
        assert_eq!(
            s.pipeline.worker.rule_match_work,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn time_scale_zero_simulates_no_time_and_a_negative_one_is_named() {
        let s = parse(&format!("{MINIMAL}time_scale: 0\n")).expect("valid");
        assert_eq!(s.pipeline.worker.rule_match_work, Duration::ZERO);
        assert_eq!(s.pipeline.consumers.handle_latency, Duration::ZERO);
        assert_eq!(s.pipeline.store_latency, Duration::ZERO);
        assert_eq!(s.pipeline.vision.time_scale, 0.0);
        assert_eq!(
            error_path(&format!("{MINIMAL}time_scale: -1\n")),
            "time_scale"
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        assert_eq!(error_path(&format!("{MINIMAL}bogus: 1\n")), "bogus");
        let e = parse(&format!(
            "{MINIMAL}services:\n  vision:\n    latncy: {{constant: {{ms: 1}}}}\n"
        ))
        .expect_err("typo");
        assert_eq!(e.path, "services.vision");
        assert!(e.message.contains("latncy"), "{e}");
    }

    #[test]
    fn impossible_values_are_named_with_their_path() {
        assert_eq!(
            error_path("name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: -5\n"),
            "load.rate"
        );
        assert_eq!(
            error_path("name: t\nduration: soon\nload:\n  arrival: constant\n  rate: 1\n"),
            "duration"
        );
        assert_eq!(
            error_path(&format!(
                "{MINIMAL}services:\n  vision:\n    latency: {{lognormal: {{median_ms: 100, p99_ms: 50}}}}\n"
            )),
            "services.vision.latency"
        );
        assert_eq!(
            error_path(&format!(
                "{MINIMAL}services:\n  llm:\n    error_rate: 1.5\n"
            )),
            "services.llm.error_rate"
        );
        assert_eq!(
            error_path(&format!("{MINIMAL}tracing:\n  sampler: {{ratio: 2}}\n")),
            "tracing.sampler.ratio"
        );
        assert_eq!(
            error_path("name: t\nduration: 5s\nload:\n  arrival: constant\n"),
            "load.rate"
        );
        assert_eq!(
            error_path(
                "name: t\nduration: 5s\nload:\n  arrival: {burst: {base: 10, peak: 5, period: 1s, duty: 0.5}}\n"
            ),
            "load.arrival.burst.peak"
        );
        assert_eq!(
            error_path(&format!("{MINIMAL}infra:\n  rabbitmq: embedded\n")),
            "infra.rabbitmq"
        );
    }

    #[test]
    fn the_shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(
            seen >= 4,
            "expected the four shipped scenarios, found {seen}"
        );
    }
}
