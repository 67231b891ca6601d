//! What a process has used so far, read from `/proc`: CPU time (user + system) and peak
//! resident memory. Linux only; elsewhere nothing is read and nothing is reported.

/// CPU seconds (user + system) and peak RSS in KiB of process `pid` (`"self"` for this one).
pub fn of(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ; 100 on every Linux this runs on, should the kernel not say.
    let per_second = match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    };
    let cpu_s = ticks as f64 / per_second as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((cpu_s, peak_kb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let (cpu_s, peak_kb) = of("self").expect("/proc/self");
        assert!(cpu_s >= 0.03, "{cpu_s}");
        assert!(peak_kb > 0);
    }
}
