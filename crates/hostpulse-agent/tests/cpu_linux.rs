//! The CPU figure against an independent reading of `/proc/stat` under real load.
//!
//! psutil's `cpu_percent` is `100 × (Δtotal − Δidle − Δiowait) / Δtotal` over the aggregate
//! `cpu` line, where total excludes guest time (already inside user/nice). We read `/proc/stat`
//! just before and after the sampler's window and compute that ourselves; the two readings
//! bracket the same second, so they agree to within a few tenths of a percent plus rounding.
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hostpulse_agent::sampler::{HostSampler, Sampler};
use hostpulse_core::sample::CPU_LOAD;

/// Tolerance between the sampler and the /proc/stat reading, percentage points. The windows
/// differ by the microseconds between the two reads, and the sampler rounds to 0.1.
const TOLERANCE: f64 = 2.0;

/// (busy, total) jiffies of the aggregate `cpu` line, as psutil counts them.
fn proc_stat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let line = text.lines().find(|l| l.starts_with("cpu ")).unwrap();
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = f.iter().take(8).sum();
    let idle = f[3] + f[4];
    (total - idle, total)
}

fn busy_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    100.0 * (after.0 - before.0) as f64 / (after.1 - before.1) as f64
}

#[test]
fn cpu_load_matches_proc_stat_under_a_busy_thread() {
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200)); // let the spinner get going
    let mut results = Vec::new();
    for _ in 0..3 {
        let mut sampler = HostSampler::new().unwrap();
        let before = proc_stat();
        std::thread::sleep(Duration::from_secs(1));
        let ours = sampler.sample().unwrap().value(CPU_LOAD).unwrap();
        let after = proc_stat();
        results.push((ours, busy_percent(before, after)));
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    for (ours, reference) in &results {
        assert!((ours - reference).abs() <= TOLERANCE, "sampler {ours} vs /proc/stat {reference} ({results:?})");
        // One busy thread is one core's worth of load (less a little scheduling noise).
        assert!(*ours >= 100.0 / cores * 0.8, "busy thread not visible: {ours} on {cores} cores");
    }
}
