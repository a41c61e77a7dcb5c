//! What one sample costs with each metric of the catalog on its own, and with every metric this
//! machine can read (`--metrics all`): `cargo bench -p hostpulse-agent --bench sampler`.
//!
//! On Linux `CPU_Load` is one read of `/proc/stat` per sample (`cpu`), which also gives the
//! per-core loads and the time split (in this tight loop the kernel's 10 ms tick counters often
//! have not moved: such a row has no CPU figures, at the same cost). Metrics this machine cannot
//! read are skipped (and listed as such).
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, sampler);
criterion_main!(benches);
