//! Stage 2 for `overhead`: the ladder's arms (the full ladder by default), repeats and rate.

use std::time::Duration;

use tb_telemetry::Sampling;

use super::Check;
use crate::error::ScenarioError;
use crate::plan::{Arm, CapacitySearch, OverheadPlan, OverheadRate, arm_name};
use crate::raw::{ArmExporter, RawArm, RawOverhead};

/// The full ladder: `off`, then every sampler with every exporter.
fn default_ladder(external: bool) -> Vec<Arm> {
    let mut exporters = vec![ArmExporter::Discard, ArmExporter::Otlp];
    if external {
        exporters.push(ArmExporter::External);
    }
    let arm = |sampling, exporter| Arm {
        name: arm_name(sampling, exporter, Duration::ZERO),
        sampling,
        exporter,
        synthetic_span_cost: Duration::ZERO,
    };
    let mut arms = vec![arm(Sampling::Off, ArmExporter::Discard)];
    for exporter in exporters {
        for sampling in [
            Sampling::AlwaysOff,
            Sampling::Ratio(0.01),
            Sampling::Ratio(0.1),
            Sampling::AlwaysOn,
        ] {
            arms.push(arm(sampling, exporter));
        }
    }
    arms
}

impl Check<'_> {
    /// `overhead`: the arms (the full ladder by default), repeats and rate.
    pub(super) fn overhead(
        &self,
        o: &RawOverhead,
        scenario_search: Option<CapacitySearch>,
    ) -> Result<OverheadPlan, ScenarioError> {
        let arms = match &o.arms {
            Some(raw) if raw.is_empty() => {
                return Err(self.err("overhead.arms", "expected at least one arm"));
            }
            Some(raw) => raw
                .iter()
                .enumerate()
                .map(|(i, a)| self.arm(i, a, o.otlp_endpoint.is_some()))
                .collect::<Result<Vec<_>, _>>()?,
            None => default_ladder(o.otlp_endpoint.is_some()),
        };
        for (i, arm) in arms.iter().enumerate() {
            if arms[..i].iter().any(|a| a.name == arm.name) {
                return Err(self.err(
                    &format!("overhead.arms[{i}].name"),
                    format!("{:?} names two arms", arm.name),
                ));
            }
        }
        let repeats = o.repeats.unwrap_or(5);
        if repeats < 2 {
            return Err(self.err(
                "overhead.repeats",
                format!("expected at least 2 (a spread needs two), got {repeats}"),
            ));
        }
        let rate = match (o.rate, &o.search) {
            (Some(r), _) => OverheadRate::Fixed(self.positive("overhead.rate", r)?),
            (None, search) => {
                let share = self.share("overhead.rate_share", o.rate_share.unwrap_or(0.6))?;
                if share == 0.0 {
                    return Err(self.err("overhead.rate_share", "expected a share above 0"));
                }
                let search = match search {
                    Some(s) => self.search("overhead.search", s)?,
                    None => scenario_search.unwrap_or(CapacitySearch {
                        from: 250.0,
                        to: 6000.0,
                        step: 250.0,
                        hold: Duration::from_secs(3),
                        max_p99_ms: 100.0,
                    }),
                };
                OverheadRate::ShareOfSaturation(share, search)
            }
        };
        Ok(OverheadPlan {
            arms,
            repeats,
            rate,
            otlp_endpoint: o.otlp_endpoint.clone(),
        })
    }

    /// `overhead.arms[i]`.
    fn arm(&self, i: usize, a: &RawArm, has_endpoint: bool) -> Result<Arm, ScenarioError> {
        let path = |f: &str| format!("overhead.arms[{i}].{f}");
        let sampling = match a.sampler {
            Sampling::Ratio(r) => Sampling::Ratio(self.share(&path("sampler.ratio"), r)?),
            other => other,
        };
        if a.exporter == ArmExporter::External && !has_endpoint {
            return Err(self.err(
                &path("exporter"),
                "external needs overhead.otlp_endpoint (a Collector or Tempo)",
            ));
        }
        let synthetic_span_cost =
            self.micros(&path("synthetic_span_cost_us"), a.synthetic_span_cost_us)?;
        let name = match &a.name {
            Some(n) if n.trim().is_empty() => {
                return Err(self.err(&path("name"), "expected a non-empty name"));
            }
            Some(n) => n.clone(),
            None => arm_name(sampling, a.exporter, synthetic_span_cost),
        };
        Ok(Arm {
            name,
            sampling,
            exporter: a.exporter,
            synthetic_span_cost,
        })
    }
}
