//! What one sample costs with each metric of the catalog on its own, and with every metric this
//! machine can read (`--metrics all`): `cargo bench -p hostpulse-agent --bench sampler`.
//!
//! On Linux `CPU_Load` is one read of `/proc/stat` per sample (`cpu`), which also gives the
//! per-core loads and the time split (in this tight loop the kernel's 10 ms tick counters often
//! have not moved: such a row has no CPU figures, at the same cost). Metrics this machine cannot
//! read are skipped (and listed as such).
//!
//! `processes` reads the process table at each sample (CPU time, memory; the costliest reading
//! HostPulse makes, done only when the metric is on, the window is open or a high-CPU spell runs);
//! `process_table/read_<N>_processes` times that read alone, N being this machine's process count
//! when the bench ran.
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hostpulse_agent::processes::{ProcessSource, SystemProcesses, os_table};
use hostpulse_agent::sampler::{HostSampler, Sampler};
use hostpulse_core::metrics::Metric;

fn sampler(c: &mut Criterion) {
    let mut g = c.benchmark_group("sample");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let cases = Metric::ALL.iter().map(|m| (m.id(), vec![*m])).chain([("all", Metric::ALL.to_vec())]);
    for (name, metrics) in cases {
        let mut s = HostSampler::new().unwrap();
        let defs = s.select(&metrics, &[]).unwrap();
        if name != "cpu" && defs.len() == 1 {
            eprintln!("{name}: not readable on this machine, skipped");
            continue;
        }
        eprintln!("{name}: {} parameters", defs.len());
        g.bench_function(name, |b| b.iter(|| s.sample().unwrap()));
    }
    g.finish();
}

/// The table HostPulse reads (on Linux its own `/proc` reader) and sysinfo's, for comparison.
fn process_table(c: &mut Criterion) {
    let mut ours = os_table().expect("a process table here");
    let count = ours.read().len();
    eprintln!("process table: {count} processes");
    let mut g = c.benchmark_group("process_table");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.bench_function(format!("read_{count}_processes"), |b| b.iter(|| ours.read()));
    let mut sysinfo = SystemProcesses::new().expect("sysinfo reads the process table here");
    g.bench_function(format!("sysinfo_read_{count}_processes"), |b| b.iter(|| sysinfo.read()));
    g.finish();
}

criterion_group!(benches, sampler, process_table);
criterion_main!(benches);
