//! The load generator of a run: the scenario's plan (drained as long as its slowest scan can
//! take) driven on a thread and runtime of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tb_load::{LoadReport, Tracker};
use tb_scenario::Scenario;

use super::RunError;
use super::progress::Progress;
use super::target::ScanTarget;

/// The scenario's one load, drained for as long as its slowest scan can take: every retry's
/// backoff and call timeout, plus a margin (a run ends sooner once every scan is in).
pub(super) fn plan(scenario: &Scenario) -> tb_load::Plan {
    let worker = &scenario.pipeline.worker;
    let drain = Duration::from_secs(30)
        + (worker.call_timeout * 2
            + worker.retry_backoff * 2u32.saturating_pow(worker.max_retries))
            * (worker.max_retries + 1);
    tb_load::Plan {
        load: scenario.load,
        warmup: scenario.warmup,
        duration: scenario.duration,
        seed: scenario.seed,
        drain,
    }
}

/// Drives `plan` on a thread and runtime of its own, then waits for every scan to finish end
/// to end (or the drain to run out).
pub(super) async fn drive(
    plan: tb_load::Plan,
    target: Arc<ScanTarget>,
    tracker: Arc<Tracker>,
    quiet: bool,
) -> Result<LoadReport, RunError> {
    let progress = Arc::new(Progress::new(quiet));
    let bar = progress.clone();
    let began = Instant::now();
    // The generator gets a thread and runtime of its own: the in-process services burn CPU on
    // the shared runtime (rule_match spins), and a generator starved by them would send late
    // and measure its own queueing.
    let generator = std::thread::Builder::new()
        .name("load-generator".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok::<_, std::io::Error>(runtime.block_on(tb_load::drive(
                target,
                plan,
                tracker,
                move |r, in_flight| bar.update(r, in_flight, began.elapsed()),
            )))
        })
        .map_err(RunError::Generator)?;
    let report = tokio::task::spawn_blocking(move || generator.join())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| RunError::Generator(std::io::Error::other("the load generator panicked")))?
        .map_err(RunError::Generator)?;
    progress.finish();
    Ok(report)
}
