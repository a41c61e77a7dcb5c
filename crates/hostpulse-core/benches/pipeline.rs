//! Encoding and buffering, per value and per record: `cargo bench -p hostpulse-core`.
//! (Figures and the comparison with the Quix SDKs are in BENCHMARKS.md.)
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hostpulse_core::buffer::{BufferConfig, TimespanBuffer};
use hostpulse_core::metrics::{Inventory, Metric, definitions};
use hostpulse_core::sample::{CPU_LOAD, Row};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::StreamProperties;

const T0: i64 = 1_764_000_000_000_000_000;

fn rows(n: usize) -> Vec<Row> {
    (0..n).map(|i| Row::new(T0 + i as i64 * 10_000_000).with_value(CPU_LOAD, (i % 1000) as f64 / 10.0)).collect()
}

fn writer() -> StreamWriter {
    let definitions = definitions(Metric::Cpu, &Inventory::default());
    let mut w = StreamWriter::new(
        StreamId::parse("bench-stream").unwrap(),
        StreamProperties { name: Some("Bench".into()), ..Default::default() },
        definitions,
    );
    // Properties and definitions out of the way: what is measured is the data record.
    let _ = w.data(&rows(1), T0);
    w
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for n in [1usize, 10, 100, 1000] {
        let batch = rows(n);
        let mut w = writer();
        g.throughput(Throughput::Elements(n as u64));
        // A record of n rows with one value each; criterion reports time per value.
        g.bench_function(format!("record_of_{n}_values"), |b| b.iter(|| black_box(w.data(black_box(&batch), T0))));
    }
    g.finish();
}

fn buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("buffer");
    let config = BufferConfig { time_span: Some(Duration::from_millis(100)), ..Default::default() };
    let batch = rows(1000);
    g.throughput(Throughput::Elements(1000));
    // 1000 rows 10 ms apart: a flush every 10 rows, as at 100 Hz with a 100 ms span.
    g.bench_function("push_1000_rows_100ms_span", |b| {
        b.iter_batched(
            || (TimespanBuffer::new(config), batch.clone()),
            |(mut buf, batch)| {
                let mut out = 0;
                for (i, row) in batch.into_iter().enumerate() {
                    if let Some(rows) = buf.push(row, Duration::from_millis(i as u64 * 10)) {
                        out += rows.len();
                    }
                }
                out + buf.flush().map_or(0, |r| r.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encode, buffer);
criterion_main!(benches);
