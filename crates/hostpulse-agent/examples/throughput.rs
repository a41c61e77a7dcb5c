//! Publishes N synthetic values through the real agent (`agent::spawn`: sampler, time-span
//! buffer, encoding, the SQLite outbox on disk, the Kafka producer, acknowledgement) as fast as it
//! goes, and prints the rate as JSON:
//!
//!   cargo run --release -p hostpulse-agent --example throughput -- 127.0.0.1:9092 topic 1000000 [VALUES_PER_ROW]
//!
//! The agent takes one row per tick, so the values come in rows of VALUES_PER_ROW (default 1000)
//! from a [`WideSampler`] ticking every 1 ms, with the default 100 ms span. The run is timed from
//! `spawn` until the last row was sampled and `shutdown` returned: the buffer flushed, the stream
//! ended, every record acknowledged and the outbox empty (as the Python contenders close their
//! stream and flush). It then checks that exactly N values were acknowledged, none twice.
//!
//! With `latency HZ SECONDS` after the topic instead of N, the agent publishes its synthetic
//! signal at HZ for SECONDS with a 100 ms span, waits until every row is acknowledged and the
//! outbox empty, and prints the latency of each data record from its first (longest waiting)
//! sample to the acknowledgement, as the agent sees it (p50, p99, max).
//!
//! The agent runs as `hostpulse run --broker` builds it (default settings, one tokio worker, no
//! chart history) with a `KafkaPublisher` connected beforehand, wrapped to log what was
//! acknowledged when. The outbox is a fresh SQLite file in a temporary directory under `TMPDIR`
//! (on a tmpfs `/tmp` it is in memory: set `TMPDIR` to a disk directory, as `bench/compare.sh`
//! does). Used by `bench/compare.sh`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostpulse_agent::agent::{self, AgentConfig, AgentHandle, Parts};
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::publisher::{DeliveryReport, KafkaPublisher, KafkaSettings, PublishError, Publisher, Trouble};
use hostpulse_agent::sampler::{SampleError, Sampler, SyntheticSampler, WideSampler, now_ns};
use hostpulse_core::buffer::BufferConfig;
use hostpulse_core::sample::Row;
use hostpulse_core::settings::{MAX_SHUTDOWN_TIMEOUT_MS, MachineFacts, Settings};
use hostpulse_core::status::Status;
use hostpulse_core::wire::{ModelKey, Record};

/// The buffer's time span, as in the default settings.
const SPAN: Duration = Duration::from_millis(100);
/// The tick of a throughput run.
const INTERVAL: Duration = Duration::from_millis(1);
const DEFAULT_VALUES_PER_ROW: usize = 1000;

enum Mode {
    Throughput { values: u64, per_row: usize },
    Latency { hz: u32, seconds: u32 },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |s: &str, what: &str| -> u64 {
        s.parse().unwrap_or_else(|_| fail(&format!("{what} must be a number, got {s:?}")))
    };
    let (broker, topic, mode) = match &args[..] {
        [b, t, l, hz, secs] if l == "latency" => {
            let small = |n: u64| u32::try_from(n).unwrap_or_else(|_| fail("HZ and SECONDS must fit in 32 bits"));
            (b, t, Mode::Latency { hz: small(number(hz, "HZ")), seconds: small(number(secs, "SECONDS")) })
        }
        [b, t, n] => (b, t, Mode::Throughput { values: number(n, "VALUES"), per_row: DEFAULT_VALUES_PER_ROW }),
        [b, t, n, w] => {
            (b, t, Mode::Throughput { values: number(n, "VALUES"), per_row: number(w, "VALUES_PER_ROW") as usize })
        }
        _ => {
            fail("usage: throughput BROKER TOPIC VALUES [VALUES_PER_ROW] | throughput BROKER TOPIC latency HZ SECONDS")
        }
    };
    if matches!(mode, Mode::Latency { hz: 0, .. } | Mode::Latency { seconds: 0, .. }) {
        fail("HZ and SECONDS must be at least 1");
    }
    // As `hostpulse run`: one worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let settings = Settings {
            broker: Some(broker.clone()),
            topic: topic.clone(),
            stream_name: Some("HostPulse throughput".into()),
            ..Default::default()
        };
        let facts = MachineFacts { default_stream_id: "hostpulse-throughput".into(), hostname: "bench".into() };
        let checked = settings.check(&facts).unwrap_or_else(|e| fail(&e.to_string()));
        let mut config = AgentConfig::from_checked(&checked, &facts.hostname);
        config.history = Duration::ZERO; // as `hostpulse run`: nobody looks at the chart
        config.buffer = BufferConfig { time_span: Some(SPAN), ..Default::default() };
        // Everything must be acknowledged before `shutdown` returns, however far behind the
        // producer is when the last row is sampled.
        config.shutdown_timeout = Duration::from_millis(MAX_SHUTDOWN_TIMEOUT_MS);
        let kafka = KafkaPublisher::connect(&KafkaSettings::direct(&checked, broker))
            .await
            .unwrap_or_else(|e| fail(&format!("connect: {e}")));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let publisher = Acknowledged { inner: kafka, acks: acks.clone() };
        let dir = tempfile::Builder::new().prefix("hostpulse-throughput-").tempdir().unwrap();
        let outbox = Outbox::open(&Outbox::path_in(dir.path(), "throughput"), config.outbox).unwrap();
        eprintln!("outbox: {}", outbox.path().display());
        match mode {
            Mode::Throughput { values, per_row } => throughput(config, publisher, outbox, acks, values, per_row).await,
            Mode::Latency { hz, seconds } => latency(config, publisher, outbox, acks, hz, seconds).await,
        }
    });
}

async fn throughput(
    mut config: AgentConfig,
    publisher: Acknowledged,
    outbox: Outbox,
    acks: Arc<Mutex<Vec<Ack>>>,
    values: u64,
    per_row: usize,
) {
    let per_row = per_row.max(1);
    let rows = values.div_ceil(per_row as u64).max(1);
    if rows * per_row as u64 != values {
        eprintln!("{values} values is not a multiple of {per_row}: publishing {}", rows * per_row as u64);
    }
    let values = rows * per_row as u64;
    let sampler = WideSampler::new(per_row).with_rows(rows);
    config.definitions = sampler.definitions();
    config.interval = INTERVAL;
    let parts = parts(sampler, outbox, publisher);
    let start = Instant::now();
    let (agent, task) = agent::spawn(config, parts);
    wait(&agent, |s| s.samples >= rows).await;
    let status = agent.shutdown().await;
    let elapsed = start.elapsed();
    let _ = task.await;
    check(&status);
    let acked: u64 = acks.lock().unwrap().iter().map(|a| a.rows).sum::<u64>() * per_row as u64;
    if status.samples != rows || acked != values {
        fail(&format!("sampled {} of {rows} rows; {acked} of {values} values acknowledged", status.samples));
    }
    let result = serde_json::json!({
        "values": values,
        "records": status.records_acknowledged,
        "seconds": elapsed.as_secs_f64(),
        "values_per_second": values as f64 / elapsed.as_secs_f64(),
        "values_per_row": per_row,
        "rows": rows,
        "interval_ms": INTERVAL.as_millis() as u64,
        "span_ms": SPAN.as_millis() as u64,
    });
    println!("{result}");
}

async fn latency(
    mut config: AgentConfig,
    publisher: Acknowledged,
    outbox: Outbox,
    acks: Arc<Mutex<Vec<Ack>>>,
    hz: u32,
    seconds: u32,
) {
    let count = u64::from(hz) * u64::from(seconds);
    config.definitions = agent::synthetic_definitions();
    config.interval = Duration::from_secs(1) / hz;
    let sampler = Take { inner: SyntheticSampler::default(), left: count };
    let (agent, task) = agent::spawn(config, parts(sampler, outbox, publisher));
    let acked_rows = || acks.lock().unwrap().iter().map(|a| a.rows).sum::<u64>();
    // Every row acknowledged and the outbox empty: the last record left by its span, as always.
    wait(&agent, |s| s.records_queued == 0 && acked_rows() >= count).await;
    let status = agent.shutdown().await;
    let _ = task.await;
    check(&status);
    if acked_rows() != count {
        fail(&format!("{} of {count} rows acknowledged", acked_rows()));
    }
    let mut l: Vec<i64> = acks.lock().unwrap().iter().map(|a| a.acked_ns - a.first_ns).collect();
    l.sort_unstable();
    let ms = |q: f64| l[((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1] as f64 / 1e6;
    let result = serde_json::json!({
        "rate_hz": hz,
        "span_ms": SPAN.as_millis() as u64,
        "records": l.len(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
    });
    println!("{result}");
}

fn parts(sampler: impl Sampler, outbox: Outbox, publisher: Acknowledged) -> Parts {
    Parts {
        sampler: Box::new(sampler),
        outbox,
        connector: None,
        credential: None,
        publisher: Some(Box::new(publisher)),
    }
}

/// Waits until `done` holds for the agent's status; stops the run on the first error.
async fn wait(agent: &AgentHandle, mut done: impl FnMut(&Status) -> bool) {
    let mut watch = agent.watch();
    let status = watch.wait_for(|s| s.last_error.is_some() || done(s)).await.map(|s| s.clone());
    match status {
        Ok(s) if s.last_error.is_none() => {}
        Ok(s) => fail(&format!("the agent ran into trouble: {}", s.last_error.unwrap_or_default())),
        Err(_) => fail("the agent stopped"),
    }
}

/// The final status must show every record acknowledged once and nothing left, lost or refused.
fn check(s: &Status) {
    if s.records_queued != 0
        || s.records_failed != 0
        || s.records_dropped != 0
        || s.records_acknowledged != s.records_sent
        || s.last_error.is_some()
    {
        fail(&format!("not everything was acknowledged exactly once: {s:?}"));
    }
}

fn fail(why: &str) -> ! {
    eprintln!("throughput: {why}");
    std::process::exit(1);
}

/// One acknowledged data record: when its first row was sampled, how many rows it held, and when
/// the agent got its acknowledgement (ns since the Unix epoch).
#[derive(Debug, Clone, Copy)]
struct Ack {
    first_ns: i64,
    rows: u64,
    acked_ns: i64,
}

/// The real Kafka publisher, logging each acknowledged data record when the agent's actor sees
/// its delivery report.
struct Acknowledged {
    inner: KafkaPublisher,
    acks: Arc<Mutex<Vec<Ack>>>,
}

impl Publisher for Acknowledged {
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError> {
        let delivery = self.inner.send(record)?;
        let rows = (record.model == ModelKey::ParameterData).then(|| timestamps(&record.value));
        let acks = self.acks.clone();
        Ok(Box::pin(async move {
            let result = delivery.await;
            if let (Ok(()), Some((first_ns, rows))) = (&result, rows) {
                acks.lock().unwrap().push(Ack { first_ns, rows, acked_ns: now_ns() });
            }
            result
        }))
    }

    fn trouble(&self) -> Option<Trouble> {
        self.inner.trouble()
    }
}

/// The first timestamp and the number of rows of a `ParameterData` record, read from its
/// `Timestamps` array (the whole record is not parsed: at full speed that would cost the actor
/// as much as encoding it).
fn timestamps(value: &str) -> (i64, u64) {
    let list = value
        .split_once(r#""Timestamps":["#)
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| fail("a ParameterData record without Timestamps"));
    let first =
        list.split(',').next().and_then(|t| t.parse().ok()).unwrap_or_else(|| fail("an empty Timestamps array"));
    (first, list.split(',').count() as u64)
}

/// Ends a sampler after `left` rows.
struct Take<S> {
    inner: S,
    left: u64,
}

impl<S: Sampler> Sampler for Take<S> {
    fn sample(&mut self) -> Result<Row, SampleError> {
        if self.left == 0 {
            return Err(SampleError::Exhausted);
        }
        self.left -= 1;
        self.inner.sample()
    }
}
