//! What the benchmark binaries share: reading a process's memory and CPU time, and summarising
//! latencies.

use std::time::Duration;

// The benchmarks share the machine with what they measure: the same allocator as the server
// keeps their own share of it small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory of a process, in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// CPU time a process has used so far, user and system, all threads (zero if it is gone).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces and parentheses: count fields after its ')'.
    // utime and stime are fields 14 and 15, in USER_HZ ticks, which Linux fixes at 100 per second
    // for everything it reports to user space.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// The `q` quantile (0.0..=1.0) of latencies sorted ascending (zero when there are none).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0).max(0.0) * q).round() as usize).copied().unwrap_or_default()
}

/// "p50 … ms   p99 … ms   (n=…)" of unsorted latencies.
pub fn quantiles(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    let ms = |q| quantile(&latencies, q).as_secs_f64() * 1e3;
    format!("p50 {:>7.1} ms   p99 {:>7.1} ms   (n={})", ms(0.5), ms(0.99), latencies.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(rss_kib(u32::MAX), 0);
        assert_eq!(cpu_time(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn cpu_time_grows_as_this_process_works() {
        let before = cpu_time(std::process::id());
        // Busy until 50 ms of CPU time show (at most 10 s of wall time, on a crowded machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spin = 0u64;
        while cpu_time(std::process::id()) < before + Duration::from_millis(50) && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        assert!(cpu_time(std::process::id()) >= before + Duration::from_millis(50), "no CPU time showed after {spin} spins");
    }
}
