//! The actor's tests: timing with paused tokio time, an in-memory publisher and scripted
//! samplers; faults injected through the publisher and the connector.

use super::*;
use crate::publisher::PublishError;
use crate::publisher::PublishError as PE;
use crate::sampler::ScriptedSampler;
use crate::token::TokenSource;
use hostpulse_core::secret::Secret;
use hostpulse_core::wire::ModelKey;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Makes the error a test injects.
type MakeError = fn() -> PublishError;

/// Records what was sent, with the (paused) time it was sent at, and what was acknowledged;
/// acknowledges after `ack_after`. `down`: deliveries time out (retriable); `black_hole`:
/// records sent meanwhile are never answered, and neither is anything sent later over the same
/// connection (`broken`), as over a TCP connection whose packets vanished.
#[derive(Clone, Default)]
struct Memory {
    sent: Arc<Mutex<Vec<(Duration, Record)>>>,
    acked: Arc<Mutex<Vec<Record>>>,
    ack_after: Option<Duration>,
    fail: bool,
    down: Arc<AtomicBool>,
    black_hole: Arc<AtomicBool>,
    /// This connection lost a record in the black hole: it answers nothing more.
    broken: Arc<AtomicBool>,
    origin: Arc<Mutex<Option<Instant>>>,
    /// While set, `send` refuses every record with this error (as librdkafka does after a
    /// fatal error, or for a topic it knows is gone).
    refuse: Arc<Mutex<Option<MakeError>>>,
    /// `send` refuses records whose value contains this text as unsendable.
    unsendable: Option<&'static str>,
    /// The broker refuses a batch of more than this many bytes, every record in it, as too
    /// large (as Kafka refuses a batch over the topic's `max.message.bytes`): records handed
    /// while others await their answer are in one batch with them, the first one included.
    batch_limit: Option<usize>,
    /// The batch whose records await their answer.
    batch: Arc<Mutex<Option<Batch>>>,
}

/// Records handed while others of them await their answer, as librdkafka batches them.
struct Batch {
    records: usize,
    bytes: usize,
    refused: Arc<AtomicBool>,
}

impl Publisher for Memory {
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError> {
        if let Some(error) = *self.refuse.lock().unwrap() {
            return Err(error());
        }
        if self.unsendable.is_some_and(|text| record.value.contains(text)) {
            return Err(PublishError::Unsendable("Broker: Message size too large".into()));
        }
        let origin = self.origin.lock().unwrap().get_or_insert_with(Instant::now).to_owned();
        self.sent.lock().unwrap().push((origin.elapsed(), record.clone()));
        let (ack_after, fail, down, acked) = (self.ack_after, self.fail, self.down.clone(), self.acked.clone());
        let lost = self.black_hole.load(Ordering::SeqCst) || self.broken.load(Ordering::SeqCst);
        if lost {
            self.broken.store(true, Ordering::SeqCst);
        }
        let record = record.clone();
        let batch = self.batch_limit.map(|limit| {
            let mut open = self.batch.lock().unwrap();
            let b = open.get_or_insert_with(|| Batch { records: 0, bytes: 0, refused: Arc::default() });
            b.records += 1;
            b.bytes += record.key.len() + record.value.len();
            if b.bytes > limit {
                b.refused.store(true, Ordering::SeqCst);
            }
            (self.batch.clone(), b.refused.clone())
        });
        Ok(Box::pin(async move {
            match ack_after {
                Some(d) if !lost => tokio::time::sleep(d).await,
                _ => std::future::pending().await,
            }
            if let Some((open, refused)) = batch {
                let mut open = open.lock().unwrap();
                if open.as_mut().is_some_and(|b| {
                    b.records -= 1;
                    b.records == 0
                }) {
                    *open = None;
                }
                if refused.load(Ordering::SeqCst) {
                    return Err(DeliveryError::unsendable("Broker: Message size too large"));
                }
            }
            if fail {
                Err(DeliveryError::unsendable("broker said no"))
            } else if down.load(Ordering::SeqCst) {
                Err(DeliveryError::transient("Local: Message timed out"))
            } else {
                acked.lock().unwrap().push(record);
                Ok(())
            }
        }))
    }
}

fn parts(sampler: ScriptedSampler, publisher: Option<Memory>, connector: Option<Arc<dyn Connector>>) -> Parts {
    Parts {
        sampler: Box::new(sampler),
        outbox: Outbox::in_memory(OutboxLimits::default()),
        connector,
        credential: None,
        publisher: publisher.map(|p| Box::new(p) as Box<dyn Publisher>),
    }
}

fn config(interval_ms: u64, span_ms: u64) -> AgentConfig {
    AgentConfig {
        stream_id: StreamId::parse("test-stream").unwrap(),
        properties: StreamProperties { name: Some("t".into()), ..Default::default() },
        definitions: cpu_definitions(),
        interval: Duration::from_millis(interval_ms),
        battery_interval: None,
        process_count: 3,
        spell_threshold: None,
        buffer: BufferConfig { time_span: Some(Duration::from_millis(span_ms)), ..Default::default() },
        shutdown_timeout: Duration::from_secs(5),
        outbox: OutboxLimits::default(),
        stall_timeout: Duration::from_secs(60),
        record_max_bytes: 900 * 1024,
        format: RecordFormat::Quix,
        host: "test-host".into(),
        metrics: vec![Metric::Cpu],
        network_interfaces: Vec::new(),
        tags: Vec::new(),
        history: history::DEFAULT_WINDOW,
    }
}

/// `n` rows whose data times are one interval apart, as a real sampler's would be.
fn rows(n: usize, interval: Duration) -> Vec<Row> {
    let step = interval.as_nanos() as i64;
    (0..n).map(|i| Row::new(step * i as i64).with_value(CPU_LOAD, i as f64)).collect()
}

fn start(cfg: AgentConfig, n: usize, memory: &Memory) -> AgentHandle {
    *memory.origin.lock().unwrap() = Some(Instant::now());
    let sampler = ScriptedSampler::new(rows(n, cfg.interval));
    spawn(cfg, parts(sampler, Some(memory.clone()), None)).0
}

#[tokio::test(start_paused = true)]
async fn a_record_leaves_as_soon_as_no_later_sample_can_join_it() {
    // Span shorter than the interval: no second row can join, so each record leaves at its
    // sample, not one span (nor one interval) later.
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let agent = start(config(1000, 100), 3, &memory);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let data = data_records(&memory);
    assert_eq!(
        data.iter().map(|(t, _)| t.as_millis()).collect::<Vec<_>>(),
        [1000, 2000, 3000],
        "records leave {data:?}"
    );
    assert_eq!(data.iter().map(|(_, ts)| *ts).collect::<Vec<_>>(), [0, 1000, 2000], "record time = sample time");
    assert_eq!(memory.sent.lock().unwrap()[0].1.model, ModelKey::StreamProperties, "properties come first");
    let status = agent.shutdown().await;
    assert_eq!(status.samples, 3);
    assert_eq!(status.records_acknowledged, status.records_sent);
    assert_eq!(status.records_pending(), 0);
    // Span longer than the interval: rows gather for one span after the first of them.
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let agent = start(config(200, 500), 6, &memory);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let data = data_records(&memory);
    // Samples at 200, 400, 600 ms (data times 0, 200, 400) are due at 700, before the sample
    // at 800 could join: they leave at 600. Likewise 800, 1000, 1200 leave at 1200.
    assert_eq!(data.iter().map(|(t, _)| t.as_millis()).collect::<Vec<_>>(), [600, 1200], "records leave {data:?}");
    assert_eq!(data.iter().map(|(_, ts)| *ts).collect::<Vec<_>>(), [0, 600]);
    let status = agent.shutdown().await;
    assert_eq!(status.records_acknowledged, status.records_sent);
}

/// When each data record was sent (since the agent started) and its data time (ms).
fn data_records(memory: &Memory) -> Vec<(Duration, i64)> {
    let sent = memory.sent.lock().unwrap();
    sent.iter().filter(|(_, r)| r.model == ModelKey::ParameterData).map(|(t, r)| (*t, r.timestamp_ms)).collect()
}

#[tokio::test(start_paused = true)]
async fn tags_go_on_every_row_and_the_history_knows_what_was_acknowledged() {
    use hostpulse_core::history::Delivery::{Local, Sent, Waiting};
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let cfg = AgentConfig { tags: vec![("site".into(), "lab".into())], ..config(1000, 100) };
    let agent = start(cfg, 6, &memory);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    memory.black_hole.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    agent.set_publishing(false).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let h = agent.history(CPU_LOAD);
    assert_eq!(h.values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0].map(Some));
    assert_eq!(h.delivery, [Sent, Sent, Waiting, Waiting, Local, Local], "{h:?}");
    assert_eq!((h.current, h.min, h.max), (Some(5.0), Some(0.0), Some(5.0)));
    let data = data_values(&memory.sent.lock().unwrap().iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
    assert!(!data.is_empty());
    for v in &data {
        assert!(v.contains(r#""TagValues":{"site":["lab"]}"#), "{v}");
    }
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_the_buffer_and_closes_the_stream() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let agent = start(config(200, 1000), 2, &memory);
    tokio::time::sleep(Duration::from_millis(450)).await; // two samples, still buffered
    let status = agent.shutdown().await;
    let sent = memory.sent.lock().unwrap().clone();
    let models: Vec<ModelKey> = sent.iter().map(|(_, r)| r.model).collect();
    assert_eq!(
        models,
        [ModelKey::StreamProperties, ModelKey::ParameterDefinitions, ModelKey::ParameterData, ModelKey::StreamEnd]
    );
    assert!(sent[2].1.value.contains("[0.0,1.0]"), "both buffered rows: {}", sent[2].1.value);
    assert!(sent[3].1.value.contains(r#""V":{}"#), "closed, not aborted");
    assert_eq!((status.samples, status.records_sent, status.records_acknowledged), (2, 4, 4));
    assert_eq!(status.state, PublisherState::Paused);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_only_so_long_for_acknowledgements() {
    let memory = Memory { ack_after: None, ..Default::default() }; // the broker never answers
    let agent = start(config(200, 100), 1, &memory);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = Instant::now();
    let status = agent.shutdown().await;
    assert_eq!(before.elapsed(), Duration::from_secs(5), "bounded by shutdown_timeout");
    assert_eq!(status.records_acknowledged, 0);
    assert_eq!(status.records_pending(), status.records_sent);
    assert!(status.records_sent >= 4);
}

#[tokio::test(start_paused = true)]
async fn failed_deliveries_are_counted_and_reported() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), fail: true, ..Default::default() };
    let agent = start(config(200, 100), 1, &memory);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = agent.status();
    assert!(status.records_failed > 0, "records were attempted: {status:?}");
    // Each went alone before it was removed (a batch refused is not proof against its records).
    assert!(status.records_sent >= status.records_failed, "{status:?}");
    assert_eq!((status.records_acknowledged, status.records_pending()), (0, 0), "{status:?}");
    assert_eq!(status.last_error.as_deref(), Some("delivery failed: broker said no"));
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_publisher_the_agent_samples_but_sends_nothing() {
    let (agent, task) =
        spawn(config(200, 100), parts(ScriptedSampler::new(rows(2, Duration::from_millis(200))), None, None));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(agent.status().state, PublisherState::Unconfigured);
    assert_eq!(agent.status().samples, 2);
    assert_eq!(agent.status().last_value, Some(1.0));
    let s = agent.shutdown().await;
    assert_eq!(s.records_sent, 0);
    task.await.unwrap();
    assert_eq!(agent.shutdown().await.samples, 2, "a stopped agent still answers");
}

/// Hands out prepared publishers (or failures) for any token, in order, each after its wait
/// (the Portal round trips).
struct Prepared(Mutex<std::collections::VecDeque<(Duration, Result<Memory, ConnectError>)>>);

impl Prepared {
    /// One connection, made in 30 ms.
    fn one(result: Result<Memory, ConnectError>) -> Arc<Prepared> {
        Prepared::each([(Duration::from_millis(30), result)])
    }

    /// Connections made in turn, each after its wait.
    fn each(list: impl IntoIterator<Item = (Duration, Result<Memory, ConnectError>)>) -> Arc<Prepared> {
        Arc::new(Prepared(Mutex::new(list.into_iter().collect())))
    }
}

impl Connector for Prepared {
    fn uses_token(&self) -> bool {
        true
    }

    fn connect(&self, _: Option<Credential>) -> Connecting {
        let (wait, next) = self.0.lock().unwrap().pop_front().expect("a connection prepared");
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            next.map(|m| Box::new(m) as Box<dyn Publisher>)
        })
    }
}

/// A broker answering after `ack_ms`, its clock (`sent` times) starting now.
fn answering_after(ack_ms: u64) -> Memory {
    let memory = Memory { ack_after: Some(Duration::from_millis(ack_ms)), ..Default::default() };
    *memory.origin.lock().unwrap() = Some(Instant::now());
    memory
}

fn token(source: TokenSource) -> Credential {
    Credential::new(Secret::new("token-2").unwrap(), source)
}

#[tokio::test(start_paused = true)]
async fn replacing_the_token_switches_over_in_order_without_loss_or_stream_end() {
    // The old broker connection answers slowly, so records are in flight at the switch.
    let (old, new) = (answering_after(150), answering_after(1));
    let connector = Prepared::one(Ok(new.clone()));
    let cfg = config(200, 100);
    let sampler = ScriptedSampler::new(rows(10, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, Some(old.clone()), Some(connector)));
    tokio::time::sleep(Duration::from_millis(650)).await; // 3 samples; the 3rd record in flight
    agent.replace_token(token(TokenSource::CredentialStore)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = agent.shutdown().await;

    let old_sent = old.sent.lock().unwrap().clone();
    let new_sent = new.sent.lock().unwrap().clone();
    let last_old = old_sent.last().unwrap().0;
    let first_new = new_sent.first().unwrap().0;
    assert!(first_new >= last_old + Duration::from_millis(150), "new records wait for the old acks");
    let rows_of = |sent: &[(Duration, Record)]| -> Vec<String> {
        sent.iter().filter(|(_, r)| r.model == ModelKey::ParameterData).map(|(_, r)| r.value.clone()).collect()
    };
    let all: Vec<String> = rows_of(&old_sent).into_iter().chain(rows_of(&new_sent)).collect();
    let values: Vec<String> = (0..10).map(|i| format!("[{i}.0]")).collect();
    assert_eq!(all.len(), 10, "every sample exactly once");
    for (record, v) in all.iter().zip(&values) {
        assert!(record.contains(v), "in order: {record} should hold {v}");
    }
    assert!(old_sent.iter().all(|(_, r)| r.model != ModelKey::StreamEnd), "no StreamEnd at the switch");
    assert_eq!(new_sent.iter().filter(|(_, r)| r.model == ModelKey::StreamEnd).count(), 1, "one at shutdown");
    assert!(new_sent.iter().all(|(_, r)| r.model != ModelKey::StreamProperties), "same stream, not a new one");
    assert_eq!(status.records_pending(), 0);
    assert_eq!(status.records_failed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_token_that_cannot_connect_leaves_publishing_as_it_was() {
    let old = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Prepared::one(Err(ConnectError::Kafka(PublishError::Client("refused".into()))));
    let cfg = config(200, 100);
    let sampler = ScriptedSampler::new(rows(5, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, Some(old.clone()), Some(connector)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = agent.replace_token(token(TokenSource::Environment)).await.unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let status = agent.shutdown().await;
    assert_eq!(status.samples, 5);
    assert_eq!(status.records_acknowledged, status.records_sent, "the old connection kept publishing");
    assert!(status.last_error.unwrap().contains("refused"));
}

#[tokio::test(start_paused = true)]
async fn a_first_token_turns_an_unconfigured_agent_into_a_publisher() {
    let new = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Prepared::one(Ok(new.clone()));
    let cfg = config(200, 100);
    let sampler = ScriptedSampler::new(rows(5, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, None, Some(connector)));
    assert_eq!(agent.status().state, PublisherState::Unconfigured);
    agent.replace_token(token(TokenSource::CredentialStore)).await.unwrap();
    assert_eq!(agent.status().state, PublisherState::Publishing);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(agent.status().records_acknowledged > 0);
    agent.shutdown().await;
    // A token that cannot connect leaves an agent without a connection in the error state.
    let failing = Prepared::one(Err(token_rejected()));
    let (agent, _) = spawn(config(200, 100), parts(ScriptedSampler::new(Vec::new()), None, Some(failing)));
    assert!(agent.replace_token(token(TokenSource::CredentialStore)).await.is_err());
    assert!(
        matches!(agent.status().state, PublisherState::Failed { ref reason, next_try_ms: None } if reason.contains("401")),
        "before it ever published, an error only the user can fix is final: {:?}",
        agent.status().state
    );
    let (agent, _) = spawn(config(200, 100), parts(ScriptedSampler::new(Vec::new()), None, None));
    assert!(matches!(agent.replace_token(token(TokenSource::Environment)).await, Err(ReplaceError::NoConnector)));
}

fn models(sent: &[(Duration, Record)]) -> Vec<ModelKey> {
    sent.iter().map(|(_, r)| r.model).collect()
}

#[tokio::test(start_paused = true)]
async fn pausing_ends_the_stream_and_resuming_starts_it_again() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let agent = start(config(200, 100), 10, &memory);
    tokio::time::sleep(Duration::from_millis(450)).await; // 2 samples published
    agent.set_publishing(false).await;
    assert_eq!(agent.status().state, PublisherState::Paused);
    let at_pause = memory.sent.lock().unwrap().len();
    assert_eq!(models(&memory.sent.lock().unwrap()).last(), Some(&ModelKey::StreamEnd));
    tokio::time::sleep(Duration::from_millis(600)).await; // 3 samples while paused
    assert_eq!(memory.sent.lock().unwrap().len(), at_pause, "nothing is sent while paused");
    assert_eq!(agent.status().samples, 5, "sampling goes on for the live value");
    agent.set_publishing(true).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = agent.shutdown().await;
    let sent = memory.sent.lock().unwrap().clone();
    let after: Vec<ModelKey> = models(&sent[at_pause..]);
    assert_eq!(&after[..3], [ModelKey::StreamProperties, ModelKey::ParameterDefinitions, ModelKey::ParameterData]);
    assert_eq!(models(&sent).iter().filter(|m| **m == ModelKey::StreamEnd).count(), 2, "one per stream life");
    assert_eq!(status.records_pending(), 0);
    // Shutting down while paused does not end the stream twice.
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let agent = start(config(200, 100), 3, &memory);
    tokio::time::sleep(Duration::from_millis(250)).await;
    agent.set_publishing(false).await;
    agent.shutdown().await;
    assert_eq!(models(&memory.sent.lock().unwrap()).iter().filter(|m| **m == ModelKey::StreamEnd).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn applied_settings_take_effect_without_a_restart() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let cfg = config(200, 100);
    let agent = start(cfg.clone(), 20, &memory);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let mut renamed = cfg.clone();
    renamed.properties.name = Some("renamed".into());
    renamed.interval = Duration::from_millis(1000);
    agent.apply(renamed.clone()).await;
    let before = agent.status().samples;
    tokio::time::sleep(Duration::from_millis(2050)).await;
    assert_eq!(agent.status().samples - before, 2, "the new interval is in force");
    let sent = memory.sent.lock().unwrap().clone();
    let props: Vec<&Record> = sent.iter().map(|(_, r)| r).filter(|r| r.model == ModelKey::StreamProperties).collect();
    assert_eq!(props.len(), 2);
    assert!(props[1].value.contains(r#""Name":"renamed""#), "the new name is sent before the next data");
    // A new stream id ends the old stream and starts the new one.
    let mut moved = renamed;
    moved.stream_id = StreamId::parse("another-stream").unwrap();
    agent.apply(moved).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.shutdown().await;
    let sent = memory.sent.lock().unwrap().clone();
    let old_end = sent.iter().position(|(_, r)| r.model == ModelKey::StreamEnd && &*r.key == "test-stream").unwrap();
    let new_first = sent.iter().position(|(_, r)| &*r.key == "another-stream").unwrap();
    assert!(old_end < new_first);
    assert_eq!(sent[new_first].1.model, ModelKey::StreamProperties);
}

/// Hands out the same in-memory broker for every connection (no token), refusing while
/// `refuse` is set; counts connection attempts.
struct Reconnecting {
    memory: Memory,
    connects: AtomicUsize,
    refuse: AtomicBool,
    /// While set, connecting fails with this error.
    error: Mutex<Option<fn() -> ConnectError>>,
}

impl Reconnecting {
    fn new(memory: &Memory) -> Arc<Self> {
        Arc::new(Reconnecting {
            memory: memory.clone(),
            connects: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            error: Mutex::new(None),
        })
    }
}

impl Connector for Reconnecting {
    fn uses_token(&self) -> bool {
        false
    }

    fn connect(&self, _: Option<Credential>) -> Connecting {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let result = if self.refuse.load(Ordering::SeqCst) {
            Err(ConnectError::Kafka(PE::Unreachable { broker: "relay".into(), reason: "Connection refused".into() }))
        } else if let Some(error) = *self.error.lock().unwrap() {
            Err(error())
        } else {
            // A new connection: whatever the old one lost does not hold this one up.
            let connection = Memory { broken: Arc::new(AtomicBool::new(false)), ..self.memory.clone() };
            Ok(Box::new(connection) as Box<dyn Publisher>)
        };
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            result
        })
    }
}

/// Every state the agent passes through, in order.
fn record_states(agent: &AgentHandle) -> Arc<Mutex<Vec<PublisherState>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut watch, out) = (agent.watch(), seen.clone());
    tokio::spawn(async move {
        loop {
            let state = watch.borrow_and_update().state.clone();
            {
                let mut seen = out.lock().unwrap();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    });
    seen
}

fn data_values(records: &[Record]) -> Vec<String> {
    records.iter().filter(|r| r.model == ModelKey::ParameterData).map(|r| r.value.clone()).collect()
}

fn assert_each_once_in_order(acked: &[Record], n: usize) {
    let values = data_values(acked);
    assert_eq!(values.len(), n, "every sample exactly once: {values:#?}");
    for (i, v) in values.iter().enumerate() {
        assert!(v.contains(&format!("[{i}.0]")), "in order: record {i} is {v}");
    }
}

fn backoff_reasons(states: &[PublisherState]) -> Vec<String> {
    states
        .iter()
        .filter_map(|s| match s {
            PublisherState::Backoff { reason, next_try_ms } => {
                assert!(*next_try_ms > 0, "the next try is given");
                Some(reason.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_records_in_the_outbox_and_each_arrives_once_in_order_after_it() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(40, cfg.interval)), None, Some(connector.clone())));
    let states = record_states(&agent);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(agent.status().state, PublisherState::Publishing);
    memory.down.store(true, Ordering::SeqCst);
    connector.refuse.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = agent.status();
    assert!(during.records_queued > 5, "samples wait in the outbox: {during:?}");
    memory.down.store(false, Ordering::SeqCst);
    connector.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = agent.shutdown().await;
    assert_each_once_in_order(&memory.acked.lock().unwrap(), 40);
    assert!(connector.connects.load(Ordering::SeqCst) >= 3, "the producer was rebuilt after the failures");
    let reasons = backoff_reasons(&states.lock().unwrap());
    assert!(reasons.iter().any(|r| r.contains("Message timed out")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Connection refused")), "{reasons:?}");
    assert_eq!((status.records_queued, status.records_dropped, status.records_failed), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_gets_no_answers_is_rebuilt_after_the_stall_timeout() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let mut cfg = config(200, 100);
    cfg.stall_timeout = Duration::from_secs(2);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(40, cfg.interval)), None, Some(connector.clone())));
    let states = record_states(&agent);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    memory.black_hole.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    memory.black_hole.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(12)).await;
    agent.shutdown().await;
    assert_each_once_in_order(&memory.acked.lock().unwrap(), 40);
    assert!(connector.connects.load(Ordering::SeqCst) >= 2);
    let reasons = backoff_reasons(&states.lock().unwrap());
    assert!(reasons.iter().any(|r| r.contains("no acknowledgement from the broker for 2s")), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restart_sends_what_the_outbox_kept_first_with_original_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path_in(dir.path(), "test");
    let mut cfg = config(200, 100);
    cfg.shutdown_timeout = Duration::from_secs(1);
    // First run: the broker takes the records but never answers.
    let silent = Memory { ack_after: None, ..Default::default() };
    let outbox = Outbox::open(&path, cfg.outbox).unwrap();
    let first = Parts { outbox, ..parts(ScriptedSampler::new(rows(5, cfg.interval)), Some(silent.clone()), None) };
    let (agent, task) = spawn(cfg.clone(), first);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = agent.shutdown().await;
    task.await.unwrap();
    let kept: Vec<Record> = silent.sent.lock().unwrap().iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(status.records_pending(), kept.len() as u64, "everything unacknowledged stays");
    assert_eq!(kept.last().unwrap().model, ModelKey::StreamEnd);
    // Second run: the kept records go first, as they were, then the new stream life.
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let later: Vec<Row> = rows(10, cfg.interval).into_iter().skip(5).collect();
    let outbox = Outbox::open(&path, cfg.outbox).unwrap();
    let second = Parts { outbox, ..parts(ScriptedSampler::new(later), Some(memory.clone()), None) };
    let (agent, _) = spawn(cfg, second);
    assert_eq!(agent.status().records_queued, kept.len() as u64);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = agent.shutdown().await;
    let acked = memory.acked.lock().unwrap().clone();
    assert_eq!(&acked[..kept.len()], &kept[..], "the earlier run's records first, timestamps unchanged");
    assert_eq!(acked[kept.len()].model, ModelKey::StreamProperties, "then a new stream life");
    assert_each_once_in_order(&acked, 10);
    assert_eq!(status.records_pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_chart_survives_a_restart_and_still_shows_what_waits() {
    use hostpulse_core::history::Delivery::{Local, Waiting};
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path_in(dir.path(), "test");
    let mut cfg = config(200, 100);
    cfg.shutdown_timeout = Duration::from_secs(1);
    let t0 = now_ns() - 60_000_000_000;
    let at = |i: i64| Row::new(t0 + i * 200_000_000).with_value(CPU_LOAD, i as f64);
    // First run: the broker never answers, so the records stay in the outbox.
    let silent = Memory { ack_after: None, ..Default::default() };
    let first = Parts {
        outbox: Outbox::open(&path, cfg.outbox).unwrap(),
        ..parts(ScriptedSampler::new((0..5).map(at)), Some(silent), None)
    };
    let (agent, task) = spawn(cfg.clone(), first);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    agent.shutdown().await;
    task.await.unwrap();
    // Second run, not configured: the earlier rows are back, still waiting; new ones are local.
    let second = Parts {
        outbox: Outbox::open(&path, cfg.outbox).unwrap(),
        ..parts(ScriptedSampler::new((5..7).map(at)), None, None)
    };
    let (agent, _) = spawn(cfg, second);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = agent.history(CPU_LOAD);
    assert_eq!(h.values, (0..7).map(|i| Some(f64::from(i))).collect::<Vec<_>>());
    assert_eq!(h.delivery, [Waiting, Waiting, Waiting, Waiting, Waiting, Local, Local], "{h:?}");
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_outbox_bound_drops_the_oldest_counts_them_and_keeps_the_newest() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    connector.refuse.store(true, Ordering::SeqCst);
    let mut cfg = config(200, 100);
    cfg.outbox.max_bytes = 2_000;
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(30, cfg.interval)), None, Some(connector.clone())));
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let during = agent.status();
    assert!(
        matches!(during.state, PublisherState::Backoff { ref reason, .. } if reason.contains("Connection refused"))
    );
    assert!(during.records_dropped > 0, "{during:?}");
    connector.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(70)).await;
    let status = agent.shutdown().await;
    let acked = memory.acked.lock().unwrap().clone();
    let made = 30 + 3; // data, properties, definitions, StreamEnd
    assert_eq!(acked.len() as u64 + status.records_dropped, made, "every record delivered or counted as dropped");
    let values = data_values(&acked);
    let first: usize = (0..30).find(|i| values[0].contains(&format!("[{i}.0]"))).unwrap();
    assert!(first > 0, "the oldest were dropped");
    for (k, v) in values.iter().enumerate() {
        assert!(v.contains(&format!("[{}.0]", first + k)), "the newest are kept, in order: {v}");
    }
    assert_eq!(values.len(), 30 - first);
}

#[tokio::test(start_paused = true)]
async fn after_a_system_sleep_no_sample_spans_the_sleep() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let step = 200_000_000i64;
    let hour = 3_600_000_000_000i64;
    // Wall-clock times: three samples, then the machine sleeps an hour, then three more.
    let times = [0, step, 2 * step, hour + 3 * step, hour + 4 * step, hour + 5 * step];
    let script = times.iter().enumerate().map(|(i, t)| Row::new(*t).with_value(CPU_LOAD, i as f64));
    let (agent, _) = spawn(config(200, 100), parts(ScriptedSampler::new(script), Some(memory.clone()), None));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = agent.shutdown().await;
    let values = data_values(&memory.acked.lock().unwrap());
    assert_eq!(status.samples, 5, "the sample measured across the sleep is skipped");
    let joined = values.join(" ");
    for kept in ["[0.0]", "[1.0]", "[2.0]", "[4.0]", "[5.0]"] {
        assert!(joined.contains(kept), "{kept} in {joined}");
    }
    assert!(!joined.contains("[3.0]"), "{joined}");
}

/// Errors `send` returns that are not about the record: librdkafka's `__FATAL` after an
/// idempotence error, a topic deleted meanwhile, write access revoked.
const NOT_THE_RECORDS_FAULT: [fn() -> PublishError; 3] = [
    || PE::Enqueue("Local: Fatal error".into()),
    || PE::Enqueue("Local: Unknown topic".into()),
    || PE::Enqueue("Broker: Topic authorization failed".into()),
];

#[tokio::test(start_paused = true)]
async fn send_errors_that_are_not_about_the_record_keep_every_record_and_rebuild_the_producer() {
    for error in NOT_THE_RECORDS_FAULT {
        let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
        let connector = Reconnecting::new(&memory);
        let cfg = config(200, 100);
        let sampler = ScriptedSampler::new(rows(40, cfg.interval));
        let (agent, _) = spawn(cfg.clone(), parts(sampler, None, Some(connector.clone())));
        let states = record_states(&agent);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        *memory.refuse.lock().unwrap() = Some(error);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = agent.status();
        assert!(during.records_queued > 5, "{}: records wait in the outbox: {during:?}", error());
        *memory.refuse.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let status = agent.shutdown().await;
        assert_each_once_in_order(&memory.acked.lock().unwrap(), 40);
        assert_eq!((status.records_queued, status.records_failed, status.records_dropped), (0, 0, 0), "{status:?}");
        assert!(connector.connects.load(Ordering::SeqCst) >= 2, "the producer was rebuilt");
        let reasons = backoff_reasons(&states.lock().unwrap());
        assert!(reasons.iter().any(|r| r.contains(&error().to_string())), "{reasons:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_that_can_never_be_sent_is_removed_and_counted_and_the_rest_go_on() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), unsendable: Some("[2.0]"), ..Default::default() };
    let agent = start(config(200, 100), 5, &memory);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = agent.shutdown().await;
    let values = data_values(&memory.acked.lock().unwrap());
    assert_eq!(values.len(), 4, "{values:?}");
    assert!(values.iter().all(|v| !v.contains("[2.0]")));
    assert_eq!((status.records_failed, status.records_queued), (1, 0), "{status:?}");
    assert!(status.last_error.unwrap().contains("Message size too large"));
}

#[tokio::test(start_paused = true)]
async fn failed_deliveries_that_are_not_about_the_record_are_trouble_not_failures() {
    // librdkafka's own verdicts, as delivery reports carry them.
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    for code in [C::Fatal, C::UnknownTopicOrPartition, C::TopicAuthorizationFailed, C::MessageTimedOut] {
        let e = crate::publisher::delivery_error(&KafkaError::MessageProduction(code));
        assert!(!e.unsendable, "{code:?} keeps the record");
    }
    for code in [C::MessageSizeTooLarge, C::InvalidRecord] {
        assert!(crate::publisher::delivery_error(&KafkaError::MessageProduction(code)).unsendable, "{code:?}");
    }
}

fn html_page() -> ConnectError {
    ConnectError::Portal(crate::portal::PortalError::Malformed {
        url: "https://portal.example/workspaces".into(),
        reason: "expected value at line 1 column 1".into(),
    })
}

fn token_rejected() -> ConnectError {
    ConnectError::Portal(crate::portal::PortalError::TokenRejected {
        token_source: TokenSource::Environment,
        status: 401,
        message: None,
    })
}

#[tokio::test(start_paused = true)]
async fn after_it_published_no_connection_error_stops_the_agent_for_good() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let cfg = config(1000, 100);
    let n = 800;
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(n, cfg.interval)), None, Some(connector.clone())));
    let states = record_states(&agent);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The broker stops answering; while the producer is rebuilt the Portal sends a
    // maintenance page in HTML for 30 s.
    memory.down.store(true, Ordering::SeqCst);
    *connector.error.lock().unwrap() = Some(html_page);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        matches!(agent.status().state, PublisherState::Backoff { ref reason, .. } if reason.contains("cannot use")),
        "{:?}",
        agent.status().state
    );
    // Then the token is rejected (rotated away): an error, but tried again now and then.
    *connector.error.lock().unwrap() = Some(token_rejected);
    tokio::time::sleep(Duration::from_secs(70)).await;
    let status = agent.status();
    assert!(
        matches!(status.state, PublisherState::Failed { next_try_ms: Some(_), .. }),
        "shown as an error, with a next try: {:?}",
        status.state
    );
    assert!(status.token_rejected);
    let connects = connector.connects.load(Ordering::SeqCst);
    tokio::time::sleep(SLOW_RETRY + Duration::from_secs(1)).await;
    assert!(connector.connects.load(Ordering::SeqCst) > connects, "it tried again by itself");
    // The token is back (SIGHUP, the window, or the Portal again accepting it) and the broker answers.
    *connector.error.lock().unwrap() = None;
    memory.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(SLOW_RETRY + Duration::from_secs(60)).await;
    assert_eq!(agent.status().state, PublisherState::Publishing);
    let status = agent.shutdown().await;
    assert!(status.samples >= 700, "a sample every second for the whole run: {status:?}");
    assert_each_once_in_order(&memory.acked.lock().unwrap(), status.samples as usize);
    assert_eq!((status.records_queued, status.records_failed, status.records_dropped), (0, 0, 0));
    let seen = states.lock().unwrap().clone();
    assert!(!seen.iter().any(|s| matches!(s, PublisherState::Failed { next_try_ms: None, .. })), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn before_it_ever_published_only_errors_the_user_must_fix_are_final() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    *connector.error.lock().unwrap() = Some(html_page);
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(40, cfg.interval)), None, Some(connector.clone())));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(matches!(agent.status().state, PublisherState::Backoff { .. }), "{:?}", agent.status().state);
    *connector.error.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = agent.shutdown().await;
    assert_each_once_in_order(&memory.acked.lock().unwrap(), 40);
    assert_eq!(status.records_queued, 0);
}

/// The CPU time this thread has used, in clock ticks (`/proc/thread-self/stat`).
#[cfg(target_os = "linux")]
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Real time on one thread: the actor runs on this test's thread, so a busy loop shows up
/// in its CPU time.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_stall_while_a_new_connection_is_made_neither_spins_nor_stops_sampling() {
    struct Slow(Memory);
    impl Connector for Slow {
        fn uses_token(&self) -> bool {
            true
        }
        fn connect(&self, _: Option<Credential>) -> Connecting {
            let next = self.0.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(4)).await; // slow Portal round trips
                Ok(Box::new(next) as Box<dyn Publisher>)
            })
        }
    }
    let silent = Memory { ack_after: None, ..Default::default() }; // the old broker never answers
    let next = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let mut cfg = config(100, 50);
    cfg.stall_timeout = Duration::from_secs(1);
    cfg.shutdown_timeout = Duration::from_secs(1);
    let sampler = ScriptedSampler::new(rows(200, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, Some(silent), Some(Arc::new(Slow(next.clone())))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replacing = tokio::spawn({
        let agent = agent.clone();
        async move { agent.replace_token(token(TokenSource::CredentialStore)).await }
    });
    // The stall deadline (1 s after the first unanswered record) passes while connecting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (samples, ticks) = (agent.status().samples, thread_cpu_ticks());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (samples_after, ticks_after) = (agent.status().samples, thread_cpu_ticks());
    assert!(samples_after - samples >= 15, "sampling goes on: {samples} -> {samples_after} in 2 s at 10 Hz");
    assert!(ticks_after - ticks < 60, "no busy loop: {} ticks of CPU in 2 s", ticks_after - ticks);
    replacing.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = agent.shutdown().await;
    assert!(!next.acked.lock().unwrap().is_empty(), "the new connection took over: {status:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_honoured_at_once_while_a_new_token_connects() {
    struct Never;
    impl Connector for Never {
        fn uses_token(&self) -> bool {
            true
        }
        fn connect(&self, _: Option<Credential>) -> Connecting {
            Box::pin(std::future::pending())
        }
    }
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(5, cfg.interval)), Some(memory), Some(Arc::new(Never))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replacing = tokio::spawn({
        let agent = agent.clone();
        async move { agent.replace_token(token(TokenSource::Environment)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = Instant::now();
    let status = agent.shutdown().await;
    assert!(before.elapsed() < Duration::from_millis(100), "not held up by the connection: {:?}", before.elapsed());
    assert_eq!(status.records_queued, 0, "flushed and acknowledged");
    assert!(matches!(replacing.await.unwrap(), Err(ReplaceError::Stopped)));
}

#[tokio::test(start_paused = true)]
async fn records_of_an_unknown_kind_left_by_another_version_do_not_block_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path_in(dir.path(), "test");
    let earlier =
        Record { model: ModelKey::ParameterData, key: "test-stream".into(), value: "earlier".into(), timestamp_ms: 1 };
    let mut outbox = Outbox::open(&path, OutboxLimits::default()).unwrap();
    outbox.append(&earlier, now_ns() / 1_000_000).unwrap();
    drop(outbox);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO records (stored_ms, model, key, timestamp_ms, value, bytes) VALUES (?1, 'Future', 'k', 2, 'v', 2)",
            [now_ns() / 1_000_000],
        )
        .unwrap();
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let cfg = config(200, 100);
    let outbox = Outbox::open(&path, cfg.outbox).unwrap();
    let (agent, _) = spawn(
        cfg.clone(),
        Parts { outbox, ..parts(ScriptedSampler::new(rows(3, cfg.interval)), Some(memory.clone()), None) },
    );
    assert_eq!(agent.status().records_failed, 1, "reported and counted");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = agent.shutdown().await;
    let acked = memory.acked.lock().unwrap().clone();
    assert_eq!(acked[0].value, "earlier", "the earlier run's record went first");
    assert_eq!(data_values(&acked).len(), 4);
    assert_eq!(status.records_queued, 0, "nothing left blocking the queue");
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_a_record_may_be_goes_out_in_several_each_row_once() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let mut cfg = config(100, 2000);
    cfg.record_max_bytes = 4096;
    cfg.tags = vec![("note".into(), "x".repeat(1000).into())];
    let agent = start(cfg, 40, &memory);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let status = agent.shutdown().await;
    let acked = memory.acked.lock().unwrap().clone();
    let data: Vec<&Record> = acked.iter().filter(|r| r.model == ModelKey::ParameterData).collect();
    assert!(data.len() >= 8, "40 rows of ~1 KiB in records of at most 4 KiB: {} records", data.len());
    let mut loads = Vec::new();
    for r in data {
        assert!(r.key.len() + r.value.len() <= 4096, "{} bytes", r.value.len());
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        loads.extend(v["V"]["NumericValues"][CPU_LOAD].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()));
    }
    assert_eq!(loads, (0..40).map(f64::from).collect::<Vec<_>>(), "every row once, in order");
    assert_eq!((status.records_failed, status.records_queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_error_while_paused_keeps_the_pause_and_resuming_tries_again() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    *connector.error.lock().unwrap() = Some(token_rejected);
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(20, cfg.interval)), None, Some(connector.clone())));
    agent.set_publishing(false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = agent.status();
    assert_eq!(status.state, PublisherState::Paused, "the pause holds");
    assert!(status.last_error.unwrap().contains("rejected the streaming token"), "the error is kept");
    *connector.error.lock().unwrap() = None;
    agent.set_publishing(true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(agent.status().state, PublisherState::Publishing, "resuming connected again");
    let status = agent.shutdown().await;
    assert!(status.records_acknowledged > 3, "{status:?}");
    assert_eq!(status.records_queued, 0);
}

/// A wall clock that moves with tokio's (paused) time, from a fixed start.
struct TokioClock {
    start_ns: i64,
    origin: Instant,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(TokioClock { start_ns: 1_800_000_000_000_000_000, origin: Instant::now() })
    }
}

impl Clock for TokioClock {
    fn now_ns(&self) -> i64 {
        self.start_ns + self.origin.elapsed().as_nanos() as i64
    }
}

#[tokio::test(start_paused = true)]
async fn records_older_than_the_age_bound_are_dropped_and_counted_on_the_injected_clock() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    connector.refuse.store(true, Ordering::SeqCst);
    let mut cfg = config(60_000, 100); // a sample a minute
    cfg.outbox.max_age = Duration::from_secs(3600);
    let clock = TokioClock::new();
    let sampler = ScriptedSampler::new(rows(150, cfg.interval));
    let (agent, _) = spawn_with_clock(cfg.clone(), parts(sampler, None, Some(connector.clone())), clock.clone());
    // Two hours without a broker: what waited longer than an hour goes, oldest first. (At a
    // sample a minute, each data record follows its stream's properties: two records a minute.)
    tokio::time::sleep(Duration::from_secs(2 * 3600 + 30)).await;
    let during = agent.status();
    assert!(during.records_dropped >= 2 * 58, "about an hour of records dropped: {during:?}");
    assert!(during.records_queued <= 2 * 62, "about an hour of records kept: {during:?}");
    connector.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(180)).await;
    let status = agent.shutdown().await;
    let values = data_values(&memory.acked.lock().unwrap());
    let first: usize = (0..150).find(|i| values[0].contains(&format!("[{i}.0]"))).unwrap();
    assert!((58..=62).contains(&first), "the rows of the last hour arrive, from row {first}");
    for (k, v) in values.iter().enumerate() {
        assert!(v.contains(&format!("[{}.0]", first + k)), "in order, none missing after the cut: {v}");
    }
    assert_eq!(first + values.len(), status.samples as usize, "every row since the cut, to the last");
    assert_eq!(status.records_queued, 0);
}

#[tokio::test(start_paused = true)]
async fn the_next_try_doubles_from_one_second_to_a_minute_on_the_injected_clock() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    connector.refuse.store(true, Ordering::SeqCst);
    let clock = TokioClock::new();
    let cfg = config(1000, 100);
    let sampler = ScriptedSampler::new(rows(1000, cfg.interval));
    let (agent, _) = spawn_with_clock(cfg, parts(sampler, None, Some(connector.clone())), clock.clone());
    // Each time the agent schedules a try, how far ahead of the (injected) now it is.
    let delays = Arc::new(Mutex::new(Vec::new()));
    let (mut watch, out, c) = (agent.watch(), delays.clone(), clock.clone());
    tokio::spawn(async move {
        let mut last = None;
        while watch.changed().await.is_ok() {
            let next = watch.borrow_and_update().state.next_try_ms();
            if let Some(at) = next
                && next != last
            {
                out.lock().unwrap().push(at - c.now_ms());
            }
            last = next;
        }
    });
    tokio::time::sleep(Duration::from_secs(600)).await;
    agent.shutdown().await;
    let delays = delays.lock().unwrap().clone();
    assert!(delays.len() >= 9, "{delays:?}");
    for (attempt, d) in delays.iter().enumerate() {
        let full = (1000_i64 << attempt.min(20)).min(60_000);
        assert!((full / 2..=full).contains(d), "attempt {attempt}: {d} ms, expected {}..={full}", full / 2);
    }
}

#[tokio::test(start_paused = true)]
async fn the_record_format_changes_from_the_next_sample_and_no_sample_is_lost() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let cfg = config(200, 100);
    let agent = start(cfg.clone(), 15, &memory);
    tokio::time::sleep(Duration::from_millis(1050)).await; // 5 samples in the envelope
    agent.apply(AgentConfig { format: RecordFormat::Json, ..cfg.clone() }).await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // 5 as JSON rows
    agent.apply(cfg.clone()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // 5 in a new envelope stream
    let status = agent.shutdown().await;
    // A new stream id in JSON mode starts no envelope stream in the topic of rows.
    let rows_only = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let json = AgentConfig { format: RecordFormat::Json, ..cfg };
    let agent = start(json.clone(), 10, &rows_only);
    tokio::time::sleep(Duration::from_millis(650)).await;
    agent.apply(AgentConfig { stream_id: StreamId::parse("renamed").unwrap(), ..json }).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.shutdown().await;
    let kinds: Vec<ModelKey> = rows_only.acked.lock().unwrap().iter().map(|r| r.model).collect();
    assert!(kinds.iter().all(|m| *m == ModelKey::JsonRow), "only rows: {kinds:?}");
    assert!(rows_only.acked.lock().unwrap().iter().any(|r| &*r.key == "renamed"), "the new id keys the rows");
    let acked = memory.acked.lock().unwrap().clone();
    let kinds: Vec<ModelKey> = acked.iter().map(|r| r.model).collect();
    let first_row = kinds.iter().position(|m| *m == ModelKey::JsonRow).unwrap();
    assert_eq!(kinds[first_row - 1], ModelKey::StreamEnd, "the envelope stream ends before the rows: {kinds:?}");
    let last_row = kinds.iter().rposition(|m| *m == ModelKey::JsonRow).unwrap();
    assert_eq!(
        &kinds[last_row + 1..last_row + 4],
        [ModelKey::StreamProperties, ModelKey::ParameterDefinitions, ModelKey::ParameterData],
        "back to the envelope: a new stream life"
    );
    // Every sample once, in order, whatever its format.
    let mut loads = Vec::new();
    for r in &acked {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        match r.model {
            ModelKey::JsonRow => {
                assert_eq!(v["host"], "test-host");
                assert_eq!(r.timestamp_ms, v["timestamp"].as_i64().unwrap() / 1_000_000);
                loads.push(v[CPU_LOAD].as_f64().unwrap());
            }
            ModelKey::ParameterData => {
                loads.extend(v["V"]["NumericValues"][CPU_LOAD].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            }
            _ => {}
        }
    }
    assert_eq!(loads, (0..15).map(f64::from).collect::<Vec<_>>());
    assert_eq!(status.records_queued, 0);
}

#[tokio::test(start_paused = true)]
async fn removing_the_token_while_the_broker_is_silent_lets_the_producer_go_and_records_nothing_more() {
    let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let mut cfg = config(200, 100);
    cfg.stall_timeout = Duration::from_secs(2);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(200, cfg.interval)), None, Some(connector.clone())));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    memory.black_hole.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.disconnect().await;
    let queued = agent.status().records_queued;
    let connects = connector.connects.load(Ordering::SeqCst);
    // The stall timeout passes while the outbox drains into the silence.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let status = agent.status();
    assert_eq!(status.state, PublisherState::Unconfigured, "not Retrying without a token: {status:?}");
    assert!(status.samples > 90, "sampling goes on");
    assert_eq!(status.records_queued, queued, "no records without a token; what waited still waits");
    assert_eq!(connector.connects.load(Ordering::SeqCst), connects, "no reconnect without a token");
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resuming_connects_at_once_even_with_a_retry_scheduled_far_ahead() {
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(100, cfg.interval)), None, Some(connector.clone())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The token is rejected after the agent published: the next try is SLOW_RETRY away.
    memory.down.store(true, Ordering::SeqCst);
    *connector.error.lock().unwrap() = Some(token_rejected);
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(
        matches!(agent.status().state, PublisherState::Failed { next_try_ms: Some(_), .. }),
        "{:?}",
        agent.status()
    );
    agent.set_publishing(false).await;
    *connector.error.lock().unwrap() = None;
    memory.down.store(false, Ordering::SeqCst);
    agent.set_publishing(true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.status().state, PublisherState::Publishing, "resumed at once, not in five minutes");
    agent.shutdown().await;
}

/// A sampler on an injected power source: `on_battery` says where the machine runs; `reads`
/// counts how often it was asked.
struct OnPower {
    inner: crate::sampler::SyntheticSampler,
    on_battery: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
}

impl Sampler for OnPower {
    fn sample(&mut self) -> Result<Row, crate::sampler::SampleError> {
        self.inner.sample()
    }

    fn on_battery(&mut self) -> Option<bool> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Some(self.on_battery.load(Ordering::SeqCst))
    }
}

#[tokio::test(start_paused = true)]
async fn on_battery_it_samples_at_the_battery_interval_and_back_on_mains_at_its_own() {
    let on_battery = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let sampler = OnPower { inner: Default::default(), on_battery: on_battery.clone(), reads: reads.clone() };
    let cfg = AgentConfig { battery_interval: Some(Duration::from_secs(5)), ..config(1000, 100) };
    let memory = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
    let parts = Parts { sampler: Box::new(sampler), ..parts(ScriptedSampler::new([]), Some(memory), None) };
    let (agent, _) = spawn(cfg.clone(), parts);
    let samples_over = |secs: u64| {
        let agent = agent.clone();
        async move {
            let before = agent.status().samples;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            agent.status().samples - before
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = agent.status();
    assert_eq!((s.low_power, s.interval_ms), (false, 1000), "on mains: {s:?}");
    assert_eq!(samples_over(10).await, 10);

    on_battery.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await; // the power source is read every 5 s
    let s = agent.status();
    assert_eq!((s.low_power, s.interval_ms), (true, 5000), "on battery the status says so: {s:?}");
    assert_eq!(samples_over(30).await, 6, "one sample per 5 s");

    on_battery.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = agent.status();
    assert_eq!((s.low_power, s.interval_ms), (false, 1000), "back on mains: {s:?}");
    assert_eq!(samples_over(10).await, 10);

    // Low-power mode off: on battery it samples as on mains, and the power source is left alone.
    agent.apply(AgentConfig { battery_interval: None, ..cfg }).await;
    let asked = reads.load(Ordering::SeqCst);
    on_battery.store(true, Ordering::SeqCst);
    assert_eq!(samples_over(20).await, 20);
    let s = agent.status();
    assert_eq!((s.low_power, s.interval_ms), (false, 1000), "{s:?}");
    assert_eq!(reads.load(Ordering::SeqCst), asked, "not read while the mode is off");
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_as_too_large_is_sent_again_one_record_at_a_time_and_nothing_is_removed() {
    // An outage fills the outbox; afterwards everything goes at once, and the broker refuses
    // every record handed while more than ~4 records' bytes await an answer.
    // Answers take 50 ms, so new records wait behind those going one at a time.
    let memory = Memory { ack_after: Some(Duration::from_millis(50)), batch_limit: Some(1200), ..Default::default() };
    let connector = Reconnecting::new(&memory);
    let cfg = config(200, 100);
    let (agent, _) =
        spawn(cfg.clone(), parts(ScriptedSampler::new(rows(40, cfg.interval)), None, Some(connector.clone())));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    memory.down.store(true, Ordering::SeqCst);
    connector.refuse.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(agent.status().records_queued > 10, "{:?}", agent.status());
    memory.down.store(false, Ordering::SeqCst);
    connector.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = agent.shutdown().await;
    let sent = memory.sent.lock().unwrap().clone();
    assert!(sent.iter().all(|(_, r)| r.key.len() + r.value.len() <= 1200), "each record fits alone");
    assert_each_once_in_order(&memory.acked.lock().unwrap(), 40);
    assert_eq!((status.records_queued, status.records_failed), (0, 0), "{status:?}");
    let data_sent = sent.iter().filter(|(_, r)| r.model == ModelKey::ParameterData).count();
    assert!(data_sent > 40, "some went twice: refused in a batch, then alone ({data_sent})");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_failing_while_a_new_token_connects_is_sent_again_through_the_new_connection() {
    let (old, new) = (answering_after(50), answering_after(1));
    // A slow Portal: the new connection takes 700 ms.
    let connector = Prepared::each([(Duration::from_millis(700), Ok(new.clone()))]);
    let cfg = config(200, 100);
    let sampler = ScriptedSampler::new(rows(10, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, Some(old.clone()), Some(connector)));
    tokio::time::sleep(Duration::from_millis(610)).await; // 3 samples; the 3rd record in flight
    // The old connection's deliveries start timing out just as a new token is given.
    old.down.store(true, Ordering::SeqCst);
    agent.replace_token(token(TokenSource::CredentialStore)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let status = agent.status();
    assert_eq!(status.state, PublisherState::Publishing);
    assert_eq!(status.records_queued, 0, "nothing is left behind in the outbox: {status:?}");
    let acked: Vec<Record> =
        old.acked.lock().unwrap().iter().chain(new.acked.lock().unwrap().iter()).cloned().collect();
    assert_each_once_in_order(&acked, 10);
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_token_given_while_the_removed_one_still_drains_starts_publishing() {
    // The old broker answers slowly, so the removed token's producer is still draining.
    let (old, new) = (answering_after(1500), answering_after(1));
    let connector = Prepared::one(Ok(new.clone()));
    let cfg = config(200, 100);
    let sampler = ScriptedSampler::new(rows(30, cfg.interval));
    let (agent, _) = spawn(cfg, parts(sampler, Some(old.clone()), Some(connector)));
    tokio::time::sleep(Duration::from_millis(650)).await;
    agent.disconnect().await;
    assert_eq!(agent.status().state, PublisherState::Unconfigured);
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.replace_token(token(TokenSource::CredentialStore)).await.unwrap();
    assert_eq!(agent.status().state, PublisherState::Publishing, "{:?}", agent.status());
    let given_at = new.origin.lock().unwrap().unwrap().elapsed();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let status = agent.status();
    assert_eq!(status.state, PublisherState::Publishing);
    assert_eq!(status.records_queued, 0, "{status:?}");
    // The new connection publishes what is sampled from now on; the removed token's producer
    // sent nothing after the new token came.
    let new_data = data_records(&new);
    assert!(new_data.len() >= 8, "samples after the new token go out: {new_data:?}");
    assert!(old.sent.lock().unwrap().iter().all(|(t, _)| *t < given_at), "nothing new on the old connection");
    agent.shutdown().await;

    // A new token that cannot connect does not bring the removed one back: its producer goes,
    // and what waits stays in the outbox for a token that works.
    let old = answering_after(1500);
    let failing = Prepared::one(Err(token_rejected()));
    let sampler = ScriptedSampler::new(rows(30, Duration::from_millis(200)));
    let (agent, _) = spawn(config(200, 100), parts(sampler, Some(old.clone()), Some(failing)));
    tokio::time::sleep(Duration::from_millis(650)).await;
    agent.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(agent.replace_token(token(TokenSource::CredentialStore)).await.is_err());
    let refused_at = old.origin.lock().unwrap().unwrap().elapsed();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let status = agent.status();
    assert!(matches!(status.state, PublisherState::Failed { .. }), "{status:?}");
    assert!(old.sent.lock().unwrap().iter().all(|(t, _)| *t < refused_at), "nothing more through the removed token");
    assert!(status.records_queued > 0, "samples wait in the outbox for a token that works: {status:?}");
    agent.shutdown().await;

    // Two tokens in a row while the removed one drains: the second, failing, does not bring the
    // removed token's producer back either.
    let (old, unused) = (answering_after(1500), answering_after(1));
    let connector = Prepared::each([
        (Duration::from_millis(800), Ok(unused.clone())),
        (Duration::from_millis(30), Err(token_rejected())),
    ]);
    let sampler = ScriptedSampler::new(rows(30, Duration::from_millis(200)));
    let (agent, _) = spawn(config(200, 100), parts(sampler, Some(old.clone()), Some(connector)));
    tokio::time::sleep(Duration::from_millis(650)).await;
    agent.disconnect().await;
    let first = tokio::spawn({
        let agent = agent.clone();
        async move { agent.replace_token(token(TokenSource::CredentialStore)).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let given_at = old.origin.lock().unwrap().unwrap().elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(agent.replace_token(token(TokenSource::CredentialStore)).await.is_err());
    assert!(first.await.unwrap().is_err(), "the first token's attempt was superseded");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let status = agent.status();
    assert!(matches!(status.state, PublisherState::Failed { .. }), "{status:?}");
    assert!(old.sent.lock().unwrap().iter().all(|(t, _)| *t < given_at), "nothing more through the removed token");
    assert!(unused.sent.lock().unwrap().is_empty());
    agent.shutdown().await;
}
