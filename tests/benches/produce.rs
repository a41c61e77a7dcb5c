//! End to end through the real agent: values per second from `agent::spawn` until every record
//! is acknowledged by a local tansu broker and the outbox (SQLite, a file in a temporary
//! directory) is empty (`cargo bench -p hostpulse-tests --bench produce`; needs HOSTPULSE_TANSU,
//! as the test command sets up).
//!
//! Each iteration spawns the agent as `hostpulse run --broker` builds it (default settings, one
//! tokio worker, no chart history), with a `WideSampler` of 1000 values per row ticking every
//! 1 ms and the default 100 ms span, waits until the last row is sampled, and shuts it down:
//! the buffer is flushed, the stream ended and every record acknowledged. The Kafka connection
//! is made once for all iterations; opening the outbox is not timed.
#![allow(missing_docs)] // criterion's macros generate undocumented public items

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostpulse_agent::agent::{self, AgentConfig, Parts};
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::publisher::{DeliveryReport, KafkaPublisher, KafkaSettings, PublishError, Publisher, Trouble};
use hostpulse_agent::sampler::WideSampler;
use hostpulse_core::buffer::BufferConfig;
use hostpulse_core::settings::{MAX_SHUTDOWN_TIMEOUT_MS, MachineFacts, Settings};
use hostpulse_core::wire::Record;
use hostpulse_tests::Tansu;

const VALUES: u64 = 100_000;
const VALUES_PER_ROW: usize = 1000;

/// One connected producer shared by every iteration's agent (which drops its handle at shutdown).
struct Shared(Arc<KafkaPublisher>);

impl Publisher for Shared {
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError> {
        self.0.send(record)
    }

    fn trouble(&self) -> Option<Trouble> {
        self.0.trouble()
    }
}

fn produce(c: &mut Criterion) {
    let broker = Tansu::start();
    // As `hostpulse run`: one worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let settings = Settings {
        broker: Some(broker.addr.clone()),
        topic: "bench-produce".into(),
        stream_name: Some("bench".into()),
        ..Default::default()
    };
    let facts = MachineFacts { default_stream_id: "bench".into(), hostname: "bench".into() };
    let checked = settings.check(&facts).unwrap();
    let mut config = AgentConfig::from_checked(&checked, &facts.hostname);
    config.history = Duration::ZERO;
    config.interval = Duration::from_millis(1);
    config.buffer = BufferConfig { time_span: Some(Duration::from_millis(100)), ..Default::default() };
    config.shutdown_timeout = Duration::from_millis(MAX_SHUTDOWN_TIMEOUT_MS);
    config.definitions = WideSampler::new(VALUES_PER_ROW).definitions();
    let rows = VALUES / VALUES_PER_ROW as u64;
    let kafka = Arc::new(rt.block_on(KafkaPublisher::connect(&KafkaSettings::direct(&checked, &broker.addr))).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path_in(dir.path(), "bench");
    let mut g = c.benchmark_group("produce");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(VALUES));
    g.bench_function("agent_100k_values_1000_per_row_1ms_tick_100ms_span_to_tansu", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The previous agent acknowledged everything: the file opens empty.
                let outbox = Outbox::open(&path, config.outbox).unwrap();
                let parts = Parts {
                    sampler: Box::new(WideSampler::new(VALUES_PER_ROW).with_rows(rows)),
                    outbox,
                    connector: None,
                    credential: None,
                    publisher: Some(Box::new(Shared(kafka.clone()))),
                };
                let config = config.clone();
                total += rt.block_on(async {
                    let start = Instant::now();
                    let (agent, task) = agent::spawn(config, parts);
                    agent.watch().wait_for(|s| s.samples >= rows || s.last_error.is_some()).await.unwrap();
                    let s = agent.shutdown().await;
                    let elapsed = start.elapsed();
                    task.await.unwrap(); // the outbox file is closed before the next iteration opens it
                    assert!(
                        s.samples == rows
                            && s.records_queued == 0
                            && s.records_failed == 0
                            && s.records_dropped == 0
                            && s.records_acknowledged == s.records_sent
                            && s.last_error.is_none(),
                        "every row sampled, every record acknowledged once: {s:?}"
                    );
                    elapsed
                });
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, produce);
criterion_main!(benches);
