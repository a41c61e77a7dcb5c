//! End to end: values per second from the time-span buffer to the broker's acknowledgement, through
//! the outbox, to a local tansu broker (`cargo bench -p hostpulse-tests --bench produce`; needs
//! HOSTPULSE_TANSU, as the test command sets up).
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostpulse_agent::burst;
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::publisher::{KafkaPublisher, KafkaSettings};
use hostpulse_core::settings::{OutboxLimits, Security, SecurityProtocol};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::StreamProperties;
use hostpulse_tests::Tansu;

const VALUES: u64 = 20_000;

fn produce(c: &mut Criterion) {
    let broker = Tansu::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let settings = KafkaSettings {
        broker: broker.addr.clone(),
        topic: "bench-produce".into(),
        partitions: 1,
        security: Security { protocol: SecurityProtocol::Plaintext, sasl: None, ssl_ca_location: None },
        sasl_password: None,
        verify_hostname: true,
    };
    let publisher = rt.block_on(KafkaPublisher::connect(&settings)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(&Outbox::path_in(dir.path(), "bench"), OutboxLimits::default()).unwrap();
    let mut g = c.benchmark_group("produce");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(VALUES));
    g.bench_function("burst_20k_values_100ms_span_to_tansu", |b| {
        b.iter(|| {
            let mut writer = StreamWriter::new(
                StreamId::parse("bench").unwrap(),
                StreamProperties { name: Some("bench".into()), ..Default::default() },
                hostpulse_agent::agent::synthetic_definitions(),
            );
            rt.block_on(burst::publish(&publisher, &mut outbox, &mut writer, VALUES, Duration::from_millis(100)))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, produce);
criterion_main!(benches);
