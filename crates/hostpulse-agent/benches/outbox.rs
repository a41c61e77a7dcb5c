//! The outbox on disk: append a record and remove it when acknowledged, as the agent does for
//! every record: `cargo bench -p hostpulse-agent --bench outbox`.
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostpulse_agent::outbox::Outbox;
use hostpulse_core::settings::OutboxLimits;
use hostpulse_core::wire::{ModelKey, Record};

fn record(i: i64) -> Record {
    // A typical record: ten rows of CPU_Load (about 330 bytes).
    let value = format!(
        r#"{{"C":"JT","K":"ParameterData","V":{{"Timestamps":[{}],"NumericValues":{{"CPU_Load":[{}]}},"StringValues":{{}},"BinaryValues":{{}},"TagValues":{{}}}},"S":34,"E":0}}"#,
        (0..10).map(|k| (1_764_000_000_000_000_000 + i * 10 + k).to_string()).collect::<Vec<_>>().join(","),
        (0..10).map(|k| format!("{}.5", (i + k) % 100)).collect::<Vec<_>>().join(",")
    );
    Record {
        model: ModelKey::ParameterData,
        key: Arc::from("bench-stream"),
        value,
        timestamp_ms: 1_764_000_000_000 + i,
    }
}

fn outbox(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(&Outbox::path_in(dir.path(), "bench"), OutboxLimits::default()).unwrap();
    let records: Vec<Record> = (0..1000).map(record).collect();
    let next = |i: i64| &records[i as usize % records.len()];
    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("append_then_ack", |b| {
        b.iter(|| {
            i += 1;
            let seq = o.append(next(i), i).unwrap().seq;
            assert!(o.remove(seq).unwrap());
        })
    });
    // With a backlog of 10 000 records (an outage), appending stays cheap.
    for k in 0..10_000 {
        o.append(next(k), k).unwrap();
    }
    g.bench_function("append_with_10k_waiting", |b| {
        b.iter(|| {
            i += 1;
            o.append(next(i), i).unwrap()
        })
    });
    g.bench_function("read_100_in_order", |b| b.iter(|| o.after(0, 100).unwrap().len()));
    g.finish();
}

criterion_group!(benches, outbox);
criterion_main!(benches);
