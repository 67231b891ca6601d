//! What a run ran on, recorded beside its figures so that figures from different machines can
//! be told apart.
//!
//! The pipeline hands every scan between threads about thirty times (tokio's workers, lapin's
//! I/O thread, librdkafka's threads, RabbitMQ's schedulers), so its CPU per scan and its
//! capacity follow what one thread waking another costs more than they follow clock speed: on
//! the same 2-vCPU kind, the build that saturated at 3250 scans/s on an earlier session's VM
//! saturated at 500 on one whose wake-up round trip took 21–25 µs. `tb_runner::machine::calibrated`
//! measures that round trip before the services start (`tb_runner::machine`).

use serde::{Deserialize, Serialize};

/// What the run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The kernel (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// tracebench's version.
    pub tracebench: String,
    /// One thread waking a parked thread and being woken back, µs: the median of several
    /// rounds of ping-pong between two threads, measured before the services started
    /// (see `tb_runner::machine::wake_round_trip`). Absent in results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_round_trip_us: Option<f64>,
}

impl Machine {
    /// This machine as `/proc` describes it, without measuring anything.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            tracebench: env!("CARGO_PKG_VERSION").to_owned(),
            wake_round_trip_us: None,
        }
    }

    /// One line for a terminal: `2 × AMD EPYC, wake-up round trip 21.3 µs`.
    pub fn summary(&self) -> String {
        let model = if self.cpu_model.is_empty() {
            "unknown CPU"
        } else {
            &self.cpu_model
        };
        match self.wake_round_trip_us {
            Some(us) => format!("{} × {model}, wake-up round trip {us:.1} µs", self.cpus),
            None => format!("{} × {model}", self.cpus),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_cpus_model_and_round_trip() {
        let machine = Machine {
            cpus: 2,
            cpu_model: "AMD EPYC".to_owned(),
            wake_round_trip_us: Some(21.34),
            ..Machine::default()
        };
        assert_eq!(
            machine.summary(),
            "2 × AMD EPYC, wake-up round trip 21.3 µs"
        );
        let unmeasured = Machine {
            wake_round_trip_us: None,
            ..machine
        };
        assert_eq!(unmeasured.summary(), "2 × AMD EPYC");
    }

    #[test]
    fn results_written_before_the_round_trip_was_recorded_still_read() {
        let old = r#"{"cpus":2,"cpu_model":"x","kernel":"6.1","tracebench":"0.1.0"}"#;
        let machine: Machine = serde_json::from_str(old).expect("reads");
        assert_eq!(machine.wake_round_trip_us, None);
    }
}
