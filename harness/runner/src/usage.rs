//! What a process has used so far, read from `/proc`: CPU time (user + system) and peak
//! resident memory. Linux only; elsewhere nothing is read and nothing is reported.

/// USER_HZ; 100 on every Linux this runs on, should the kernel not say.
fn ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    }
}

/// utime + stime, in clock ticks, from a `stat` file (a process's or a thread's).
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A process's CPU time at one moment: each live thread's time on CPU in nanoseconds and the
/// times it was put on a CPU (its `schedstat`), and the whole process's time in clock ticks
/// (its `stat`, which also holds the threads that have exited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSnapshot {
    threads: std::collections::BTreeMap<u64, ThreadTime>,
    process_ticks: u64,
}

/// One thread's `schedstat`: nanoseconds on a CPU, and how many times it was put on one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ThreadTime {
    ns: u64,
    slices: u64,
}

impl CpuSnapshot {
    /// CPU nanoseconds spent between `earlier` and this snapshot.
    ///
    /// `stat` counts in clock ticks (10 ms), too coarse for a service that spends 40 µs a scan
    /// over a few thousand scans, so the time is the sum of each thread's growth in
    /// nanoseconds (a thread started since counts from zero). A thread that exited in between
    /// takes its last stretch with it; when the ticks say more than two ticks went missing
    /// that way, the ticks are the answer.
    pub fn ns_since(&self, earlier: &Self) -> u64 {
        let tick_ns = 1_000_000_000 / ticks_per_second();
        let precise: u64 = self.growth(earlier, |t| t.ns);
        let coarse = self.process_ticks.saturating_sub(earlier.process_ticks) * tick_ns;
        if precise + 2 * tick_ns < coarse {
            coarse
        } else {
            precise
        }
    }

    /// Times a thread of the process was put on a CPU between `earlier` and this snapshot:
    /// each wake-up of a parked thread, and each return after a preemption, is one. The
    /// context switches a process pays for, in the kernel's own count; a thread that exited in
    /// between takes its last stretch with it.
    pub fn switches_since(&self, earlier: &Self) -> u64 {
        self.growth(earlier, |t| t.slices)
    }

    /// The sum over live threads of `field`'s growth since `earlier` (from zero for a thread
    /// started since).
    fn growth(&self, earlier: &Self, field: impl Fn(&ThreadTime) -> u64) -> u64 {
        self.threads
            .iter()
            .map(|(tid, now)| {
                let then = earlier.threads.get(tid).map_or(0, &field);
                field(now).saturating_sub(then)
            })
            .sum()
    }
}

/// The CPU time of process `pid` now (see [`CpuSnapshot`]).
pub fn cpu_snapshot(pid: &str) -> Option<CpuSnapshot> {
    let process_ticks = stat_ticks(&format!("/proc/{pid}/stat"))?;
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may exit between the listing and the read: it is then left out.
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        // "<ns on a CPU> <ns waiting for one> <times put on one>"
        if let Some(time) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| {
                let mut fields = s.split_whitespace().map(|f| f.parse::<u64>().ok());
                let ns = fields.next()??;
                let slices = fields.nth(1)??;
                Some(ThreadTime { ns, slices })
            })
        {
            threads.insert(tid, time);
        }
    }
    Some(CpuSnapshot {
        threads,
        process_ticks,
    })
}

/// CPU seconds (user + system) and peak RSS in KiB of process `pid` (`"self"` for this one).
pub fn of(pid: &str) -> Option<(f64, u64)> {
    let ticks = stat_ticks(&format!("/proc/{pid}/stat"))?;
    let cpu_s = ticks as f64 / ticks_per_second() as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((cpu_s, peak_kb))
}

/// Resident memory of process `pid` now, KiB (`VmRSS`).
pub fn rss_kb(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        // Spin until the process has 30 ms of CPU time to show, however loaded the machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        while of("self").is_some_and(|(cpu_s, _)| cpu_s < 0.03)
            && std::time::Instant::now() < deadline
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        // RSS first: the peak read after it can only be as high or higher (other tests in this
        // process allocate meanwhile).
        let rss = rss_kb("self").expect("VmRSS");
        let (cpu_s, peak_kb) = of("self").expect("/proc/self");
        assert!(cpu_s >= 0.03, "{cpu_s} after 20 s of spinning");
        assert!(rss > 0 && rss <= peak_kb, "{rss} of {peak_kb}");
    }

    #[test]
    fn nanosecond_cpu_time_grows_by_the_work_done_and_agrees_with_the_ticks() {
        let before = cpu_snapshot("self").expect("/proc/self");
        // Spin until the counter says 100 ms of CPU were spent: on a loaded machine (CI runs
        // tests side by side on 2 cores) 100 ms of wall time may hold far less.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let mut after = cpu_snapshot("self").expect("/proc/self");
        while after.ns_since(&before) < 100_000_000 && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            after = cpu_snapshot("self").expect("/proc/self");
        }
        let ns = after.ns_since(&before);
        // The work shows in the counter, and no more than this process's ticks say, give or
        // take a tick per thread at either end.
        assert!(ns >= 100_000_000, "{ns} after 20 s of spinning");
        let coarse = (after.process_ticks - before.process_ticks) * 10_000_000;
        let slack = 2 * 10_000_000 * (after.threads.len() as u64 + 1);
        assert!(ns <= coarse + slack, "{ns} vs {coarse}");
        assert_eq!(after.ns_since(&after), 0);
    }

    #[test]
    fn every_wake_up_of_a_parked_thread_counts_as_a_switch() {
        // A thread that this one wakes 200 times, waiting each time until it has gone back to
        // sleep: it is put on a CPU at least once per wake-up.
        let (ping, pings) = std::sync::mpsc::channel::<()>();
        let (pong, pongs) = std::sync::mpsc::channel::<()>();
        let echo = std::thread::spawn(move || {
            while pings.recv().is_ok() {
                let _ = pong.send(());
            }
        });
        // Let it start and park first.
        ping.send(()).expect("ping");
        pongs.recv().expect("pong");
        let before = cpu_snapshot("self").expect("/proc/self");
        for _ in 0..200 {
            ping.send(()).expect("ping");
            pongs.recv().expect("pong");
        }
        let after = cpu_snapshot("self").expect("/proc/self");
        drop(ping);
        echo.join().expect("echo");
        let switches = after.switches_since(&before);
        assert!(switches >= 200, "{switches} switches for 200 wake-ups");
        assert_eq!(after.switches_since(&after), 0);
    }
}
