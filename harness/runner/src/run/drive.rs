//! Driving a run's load: the scenario's one load or its saturation search, under its fault
//! schedule, on a generator thread of its own, drained to the last scan.

use std::collections::HashSet;
use std::sync::Arc;

use tb_load::LoadReport;
use tb_report::{CapacitySection, InjectedFault, SpanSummary};
use tb_scenario::Scenario;
use tb_verify::Scan;

use super::capacity;
use super::generator::{drive, plan};
use super::session::CurrentTracker;
use super::target::ScanTarget;
use super::{RunError, faults};

/// Drives the scenario while its fault schedule plays; every fault is over before this returns
/// (the drain after it needs the brokers back). Returns the faults played, and the rig, whose
/// proxies must outlive the services (see [`faults::Playing::stop`]).
pub(super) async fn load_under_faults(
    scenario: &Scenario,
    rig: faults::Rig,
    target: &Arc<ScanTarget>,
    trackers: &CurrentTracker,
    counted: &dyn Fn() -> SpanSummary,
    quiet: bool,
) -> Result<(Driven, Vec<InjectedFault>, faults::Rig), RunError> {
    let playing = faults::play(&scenario.faults, rig, quiet)?;
    let driven = load(scenario, target, trackers, counted, quiet).await;
    let (injected, rig) = playing.stop().await;
    Ok((driven?, injected, rig))
}

/// What driving the scenario produced.
pub(super) struct Driven {
    /// The load report (for a search, of the highest rate that held).
    pub(super) load: LoadReport,
    /// The search's steps, when the scenario runs one.
    pub(super) capacity: Option<CapacitySection>,
    /// The scans to judge.
    pub(super) scans: Vec<Scan>,
    /// Trace ids of scans driven but not judged (a search's overloaded last step).
    pub(super) unjudged: HashSet<String>,
    /// This process's span counts at a search's capacity.
    pub(super) at_capacity: Option<SpanSummary>,
}

/// Drives the scenario's one load, or its saturation search.
async fn load(
    scenario: &Scenario,
    target: &Arc<ScanTarget>,
    trackers: &CurrentTracker,
    counted: &dyn Fn() -> SpanSummary,
    quiet: bool,
) -> Result<Driven, RunError> {
    match &scenario.search {
        None => {
            let load = drive(plan(scenario), target.clone(), trackers.get(), quiet).await?;
            Ok(Driven {
                load,
                capacity: None,
                scans: target.take().0,
                unjudged: HashSet::new(),
                at_capacity: None,
            })
        }
        Some(search) => {
            let found =
                capacity::search(scenario, search, target, trackers, counted, quiet).await?;
            Ok(Driven {
                load: found.report,
                capacity: Some(found.section),
                scans: found.scans,
                unjudged: found.unjudged,
                at_capacity: found.spans,
            })
        }
    }
}
