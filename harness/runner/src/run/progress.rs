//! Progress on stderr while the load runs.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tb_load::Requests;

/// Progress on stderr: a live line on a terminal, a plain line every 5 s otherwise.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    last_plain: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            quiet,
            last_plain: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn update(&self, r: &Requests, in_flight: usize, elapsed: Duration) {
        let rate = r.sent as f64 / elapsed.as_secs_f64().max(1e-3);
        let line = format!(
            "sent {} ({rate:.0}/s)  ok {}  failed {}  skipped {}  in flight {in_flight}",
            r.sent, r.ok, r.failed, r.skipped
        );
        if let Some(bar) = &self.bar {
            bar.set_message(line);
        } else if !self.quiet {
            let mut last = self
                .last_plain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                eprintln!("tracebench: {line}");
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
