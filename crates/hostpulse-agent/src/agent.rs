//! The Agent actor: one task owns the pipeline (sampler, buffer, stream, publisher, counters).
//! Everyone else holds an [`AgentHandle`], sends commands and watches [`Status`].
//!
//! Per tick it samples, buffers, and hands finished records to the publisher; each record's
//! delivery report is awaited and counted. On shutdown it flushes the buffer, closes the stream
//! (`StreamEnd`), waits a bounded time for the outstanding acknowledgements and reports.
//!
//! Replacing the token (Quix keeps two valid so they can be rotated) connects anew in the
//! background while publishing goes on; then the switch: new records are held back until the
//! old producer's in-flight records are acknowledged (bounded by the shutdown timeout), so the
//! stream continues in order with nothing lost or sent twice and no `StreamEnd`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hostpulse_core::buffer::{BufferConfig, TimespanBuffer};
use hostpulse_core::sample::{CPU_LOAD, Row};
use hostpulse_core::secret::Secret;
use hostpulse_core::settings::Checked;
use hostpulse_core::status::{PublisherState, Status};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::{ParameterDefinition, Record, StreamEndType, StreamProperties};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::publisher::{Delivery, DeliveryError, Publisher};
use crate::quix::{ConnectError, Connecting, Connector};
use crate::sampler::{Sampler, now_ns};
use crate::token::TokenSource;

/// What the actor runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The stream's id (Kafka key).
    pub stream_id: StreamId,
    /// Name, location and metadata of the stream.
    pub properties: StreamProperties,
    /// Descriptions of the published parameters.
    pub definitions: Vec<ParameterDefinition>,
    /// Time between samples.
    pub interval: Duration,
    /// Buffer triggers.
    pub buffer: BufferConfig,
    /// Bound on the wait for acknowledgements at shutdown.
    pub shutdown_timeout: Duration,
}

impl AgentConfig {
    /// The configuration for checked settings: the stream named as configured, with host facts
    /// as metadata and the `CPU_Load` definition.
    pub fn from_checked(c: &Checked, hostname: &str) -> Self {
        AgentConfig {
            stream_id: c.stream_id.clone(),
            properties: StreamProperties {
                name: Some(c.stream_name.clone()),
                location: Some(format!("/hosts/{}", hostname.replace(['/', '\\'], "_"))),
                metadata: vec![
                    ("host".into(), hostname.into()),
                    ("os".into(), std::env::consts::OS.into()),
                    ("agent".into(), concat!("hostpulse ", env!("CARGO_PKG_VERSION")).into()),
                ],
                parents: Vec::new(),
                time_of_recording_ns: None,
            },
            definitions: cpu_definitions(),
            interval: c.interval,
            buffer: c.buffer,
            shutdown_timeout: c.shutdown_timeout,
        }
    }
}

/// The definition of `CPU_Load`: "CPU Load", percent, 0–100.
pub fn cpu_definitions() -> Vec<ParameterDefinition> {
    vec![ParameterDefinition {
        id: CPU_LOAD.into(),
        name: Some("CPU Load".into()),
        description: Some("Total CPU busy time across all cores over the sampling interval".into()),
        minimum: Some(0.0),
        maximum: Some(100.0),
        unit: Some("%".into()),
        location: "/".into(),
    }]
}

enum Command {
    Shutdown(oneshot::Sender<Status>),
    ReplaceToken { token: Secret, source: TokenSource, reply: oneshot::Sender<Result<(), ReplaceError>> },
    SetPublishing { on: bool, reply: oneshot::Sender<()> },
    Apply { config: Box<AgentConfig>, reply: oneshot::Sender<()> },
    Disconnect(oneshot::Sender<()>),
}

/// Why a token replacement did not take effect (publishing continues as before).
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The agent publishes to a configured broker; there is no token to replace.
    #[error("this agent publishes to a configured broker, not through a Quix token")]
    NoConnector,
    /// The new token did not lead to a publisher.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The agent has stopped.
    #[error("the agent has stopped")]
    Stopped,
}

/// A cloneable handle to a running agent.
#[derive(Clone)]
pub struct AgentHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
}

impl AgentHandle {
    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Flushes, closes the stream, waits (bounded) for acknowledgements, stops the agent and
    /// returns its final status. Calling it on a stopped agent returns the last status.
    pub async fn shutdown(&self) -> Status {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_err() {
            return self.status();
        }
        rx.await.unwrap_or_else(|_| self.status())
    }

    /// Turns publishing off (flushes and closes the stream with `StreamEnd`; sampling goes on
    /// for the live value) or on again (a new stream life: properties and definitions first).
    pub async fn set_publishing(&self, on: bool) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::SetPublishing { on, reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Applies new stream, buffer and sampling settings without a restart: a new name is sent
    /// before the next data; a new stream id closes the old stream and starts the new one; a new
    /// interval takes effect from the next tick.
    pub async fn apply(&self, config: AgentConfig) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Apply { config: Box::new(config), reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Ends the stream and drops the connection (the token was removed): back to `Unconfigured`,
    /// sampling on. A later [`replace_token`](Self::replace_token) connects again.
    pub async fn disconnect(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Disconnect(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Connects with `token` and switches publishing over to it without a gap: the same stream
    /// continues, nothing is lost or sent twice. On error the previous connection stays.
    pub async fn replace_token(&self, token: Secret, source: TokenSource) -> Result<(), ReplaceError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::ReplaceToken { token, source, reply }).await.map_err(|_| ReplaceError::Stopped)?;
        rx.await.map_err(|_| ReplaceError::Stopped)?
    }
}

/// Starts the agent on the current tokio runtime. Without a publisher it only samples
/// (state `Unconfigured`) until a token arrives through [`AgentHandle::replace_token`], which
/// needs a `connector`.
pub fn spawn(
    config: AgentConfig,
    sampler: Box<dyn Sampler>,
    publisher: Option<Box<dyn Publisher>>,
    connector: Option<Arc<dyn Connector>>,
) -> (AgentHandle, JoinHandle<()>) {
    let state = if publisher.is_some() { PublisherState::Publishing } else { PublisherState::Unconfigured };
    let (status_tx, status_rx) = watch::channel(Status::new(state.clone()));
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let actor = Actor {
        writer: StreamWriter::new(config.stream_id.clone(), config.properties.clone(), config.definitions.clone()),
        buffer: TimespanBuffer::new(config.buffer),
        config,
        sampler,
        publisher,
        connector,
        paused: false,
        new_interval: None,
        connecting: None,
        switching: None,
        held: VecDeque::new(),
        retired: Vec::new(),
        deliveries: FuturesUnordered::new(),
        status: Status::new(state),
        status_tx,
        commands: cmd_rx,
    };
    let task = tokio::spawn(actor.run());
    (AgentHandle { commands: cmd_tx, status: status_rx }, task)
}

type Reply = oneshot::Sender<Result<(), ReplaceError>>;

type Tracked = std::pin::Pin<Box<dyn std::future::Future<Output = (Record, Result<(), DeliveryError>)> + Send>>;

struct Actor {
    config: AgentConfig,
    sampler: Box<dyn Sampler>,
    publisher: Option<Box<dyn Publisher>>,
    connector: Option<Arc<dyn Connector>>,
    /// Publishing switched off by the user (the stream is closed; sampling goes on).
    paused: bool,
    /// A changed sampling interval for the run loop to apply.
    new_interval: Option<Duration>,
    /// A connection being made for a new token, and who asked.
    connecting: Option<(Connecting, Reply)>,
    /// A connected publisher waiting for the old one's in-flight records, until a deadline.
    switching: Option<(Box<dyn Publisher>, Instant, Reply)>,
    /// Records made while switching, sent through the new publisher once it takes over.
    held: VecDeque<Record>,
    /// Replaced publishers kept alive while their last records may still be acknowledged.
    retired: Vec<Box<dyn Publisher>>,
    writer: StreamWriter,
    buffer: TimespanBuffer,
    deliveries: FuturesUnordered<Tracked>,
    status: Status,
    status_tx: watch::Sender<Status>,
    commands: mpsc::Receiver<Command>,
}

impl Actor {
    async fn run(mut self) {
        let origin = Instant::now();
        let mut ticker = tokio::time::interval_at(origin + self.config.interval, self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = self.buffer.deadline().map(|d| origin + d);
            let switch_deadline = self.switching.as_ref().map(|(_, d, _)| *d);
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Command::ReplaceToken { token, source, reply }) => self.replace_token(token, source, reply),
                    Some(Command::SetPublishing { on, reply }) => {
                        self.set_publishing(on);
                        let _ = reply.send(());
                    }
                    Some(Command::Disconnect(reply)) => {
                        self.disconnect();
                        let _ = reply.send(());
                    }
                    Some(Command::Apply { config, reply }) => {
                        self.apply(*config);
                        let _ = reply.send(());
                    }
                    shutdown => {
                        self.stop().await;
                        if let Some(Command::Shutdown(reply)) = shutdown {
                            let _ = reply.send(self.status.clone());
                        }
                        return;
                    }
                },
                Some((record, result)) = self.deliveries.next(), if !self.deliveries.is_empty() => {
                    self.on_delivery(&record, result);
                    if self.deliveries.is_empty() {
                        // Replaced connections had nothing left to acknowledge: let them go.
                        self.retired.clear();
                        if self.switching.is_some() {
                            self.finish_switch();
                        }
                    }
                }
                connected = async { (&mut self.connecting.as_mut().expect("guarded").0).await }, if self.connecting.is_some() => {
                    let (_, reply) = self.connecting.take().expect("guarded");
                    self.on_connected(connected, reply);
                }
                _ = sleep_until(switch_deadline) => {
                    tracing::warn!("the old connection still has unacknowledged records; switching anyway and keeping it open for them");
                    self.finish_switch();
                }
                _ = sleep_until(deadline) => {
                    if let Some(rows) = self.buffer.poll(origin.elapsed()) {
                        self.publish(&rows);
                    }
                }
                _ = ticker.tick() => self.on_tick(origin.elapsed()),
            }
            if let Some(interval) = self.new_interval.take() {
                ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
            self.status_tx.send_replace(self.status.clone());
        }
    }

    fn on_tick(&mut self, now: Duration) {
        let row = match self.sampler.sample() {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!("sample skipped: {e}");
                return;
            }
        };
        self.status.samples += 1;
        self.status.last_value = row.value(CPU_LOAD).or(self.status.last_value);
        tracing::debug!(timestamp_ns = row.timestamp_ns, values = ?row.values, "sampled");
        if self.publisher.is_none() || self.paused {
            return;
        }
        if let Some(rows) = self.buffer.push(row, now) {
            self.publish(&rows);
        }
    }

    fn publish(&mut self, rows: &[Row]) {
        for record in self.writer.data(rows, now_ns()) {
            self.send(record);
        }
    }

    fn set_publishing(&mut self, on: bool) {
        if on != self.paused {
            return;
        }
        if on {
            self.paused = false;
            self.writer.reopen();
            self.status.state =
                if self.publisher.is_some() { PublisherState::Publishing } else { PublisherState::Unconfigured };
            tracing::info!("publishing resumed");
        } else {
            self.close_stream();
            self.paused = true;
            self.status.state = PublisherState::Paused;
            tracing::info!("publishing paused; the stream is closed");
        }
    }

    /// Flushes the buffer and ends the stream (once).
    fn close_stream(&mut self) {
        if self.publisher.is_none() || self.writer.is_closed() || self.paused {
            return;
        }
        let rest = self.buffer.flush().unwrap_or_default();
        for record in self.writer.close(&rest, StreamEndType::Closed, now_ns()) {
            self.send(record);
        }
    }

    fn disconnect(&mut self) {
        self.finish_switch();
        self.close_stream();
        if let Some(old) = self.publisher.take()
            && !self.deliveries.is_empty()
        {
            self.retired.push(old);
        }
        self.writer.reopen();
        self.buffer.flush();
        self.paused = false;
        self.status.state = PublisherState::Unconfigured;
        tracing::info!("disconnected: no token");
    }

    fn apply(&mut self, config: AgentConfig) {
        if config.stream_id != self.config.stream_id {
            self.close_stream();
            // A fresh writer: properties and definitions go first when data flows again.
            self.writer =
                StreamWriter::new(config.stream_id.clone(), config.properties.clone(), config.definitions.clone());
        } else {
            if let Some(rows) = self.buffer.flush() {
                self.publish(&rows);
            }
            self.writer.set_properties(config.properties.clone());
            self.writer.set_definitions(config.definitions.clone());
        }
        self.buffer.set_config(config.buffer);
        if config.interval != self.config.interval {
            self.new_interval = Some(config.interval);
        }
        tracing::info!(stream_id = %config.stream_id, "settings applied");
        self.config = config;
    }

    fn replace_token(&mut self, token: Secret, source: TokenSource, reply: Reply) {
        let Some(connector) = &self.connector else {
            let _ = reply.send(Err(ReplaceError::NoConnector));
            return;
        };
        tracing::info!("new streaming token from {source}: connecting");
        if let Some((_, superseded)) = self.connecting.replace((connector.connect(token, source), reply)) {
            let _ = superseded.send(Err(ReplaceError::Stopped));
        }
    }

    fn on_connected(&mut self, connected: Result<Box<dyn Publisher>, ConnectError>, reply: Reply) {
        match connected {
            Err(e) => {
                if self.publisher.is_some() {
                    tracing::error!("the new token cannot be used; publishing continues as before: {e}");
                } else {
                    tracing::error!("cannot publish: {e}");
                    self.status.state = PublisherState::Failed { reason: e.to_string() };
                }
                self.status.last_error = Some(e.to_string());
                self.status_tx.send_replace(self.status.clone());
                let _ = reply.send(Err(e.into()));
            }
            Ok(new) if self.publisher.is_none() => {
                self.publisher = Some(new);
                self.status.state = PublisherState::Publishing;
                self.status.last_error = None;
                self.status_tx.send_replace(self.status.clone());
                let _ = reply.send(Ok(()));
            }
            Ok(new) => {
                let deadline = Instant::now() + self.config.shutdown_timeout;
                if let Some((_, _, superseded)) = self.switching.replace((new, deadline, reply)) {
                    let _ = superseded.send(Err(ReplaceError::Stopped));
                }
                if self.deliveries.is_empty() {
                    self.finish_switch();
                }
            }
        }
    }

    /// The new publisher takes over; records held meanwhile go out through it, in order.
    fn finish_switch(&mut self) {
        let Some((new, _, reply)) = self.switching.take() else { return };
        if let Some(old) = self.publisher.replace(new)
            && !self.deliveries.is_empty()
        {
            self.retired.push(old);
        }
        tracing::info!(held = self.held.len(), "switched to the new connection");
        for record in std::mem::take(&mut self.held) {
            self.send(record);
        }
        let _ = reply.send(Ok(()));
    }

    fn send(&mut self, record: Record) {
        if self.switching.is_some() {
            self.held.push_back(record);
            return;
        }
        let Some(publisher) = &self.publisher else {
            return;
        };
        match publisher.send(&record) {
            Ok(delivery) => {
                self.status.records_sent += 1;
                self.deliveries.push(track(record, delivery));
            }
            Err(e) => {
                tracing::error!(model = record.model.as_str(), "record not sent: {e}");
                self.status.records_sent += 1;
                self.status.records_failed += 1;
                self.status.last_error = Some(e.to_string());
            }
        }
    }

    fn on_delivery(&mut self, record: &Record, result: Result<(), DeliveryError>) {
        match result {
            Ok(()) => {
                self.status.records_acknowledged += 1;
                tracing::debug!(model = record.model.as_str(), bytes = record.value.len(), "acknowledged");
            }
            Err(e) => {
                self.status.records_failed += 1;
                tracing::error!(model = record.model.as_str(), "{e}");
                self.status.last_error = Some(e.to_string());
            }
        }
    }

    async fn stop(&mut self) {
        self.status.state = PublisherState::Stopping;
        self.status_tx.send_replace(self.status.clone());
        self.finish_switch();
        if self.publisher.is_some() {
            self.close_stream();
            let limit = self.config.shutdown_timeout;
            let drain = async {
                while let Some((record, result)) = self.deliveries.next().await {
                    self.on_delivery(&record, result);
                }
            };
            if tokio::time::timeout(limit, drain).await.is_err() {
                tracing::warn!(
                    pending = self.status.records_pending(),
                    "stopped waiting for acknowledgements after {limit:?}"
                );
            }
        }
        self.status.state =
            if self.publisher.is_some() { PublisherState::Paused } else { PublisherState::Unconfigured };
        self.status_tx.send_replace(self.status.clone());
    }
}

fn track(record: Record, delivery: Delivery) -> Tracked {
    Box::pin(async move {
        let result = delivery.await;
        (record, result)
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::PublishError;
    use crate::sampler::ScriptedSampler;
    use hostpulse_core::wire::ModelKey;
    use std::sync::{Arc, Mutex};

    /// Records what was sent, with the (paused) time it was sent at; acknowledges after `ack_after`.
    #[derive(Clone, Default)]
    struct Memory {
        sent: Arc<Mutex<Vec<(Duration, Record)>>>,
        ack_after: Option<Duration>,
        fail: bool,
        origin: Arc<Mutex<Option<Instant>>>,
    }

    impl Publisher for Memory {
        fn send(&self, record: &Record) -> Result<Delivery, PublishError> {
            let origin = self.origin.lock().unwrap().get_or_insert_with(Instant::now).to_owned();
            self.sent.lock().unwrap().push((origin.elapsed(), record.clone()));
            let (ack_after, fail) = (self.ack_after, self.fail);
            Ok(Box::pin(async move {
                match ack_after {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
                if fail { Err(DeliveryError("broker said no".into())) } else { Ok(()) }
            }))
        }
    }

    fn config(interval_ms: u64, span_ms: u64) -> AgentConfig {
        AgentConfig {
            stream_id: StreamId::parse("test-stream").unwrap(),
            properties: StreamProperties { name: Some("t".into()), ..Default::default() },
            definitions: cpu_definitions(),
            interval: Duration::from_millis(interval_ms),
            buffer: BufferConfig { time_span: Some(Duration::from_millis(span_ms)), ..Default::default() },
            shutdown_timeout: Duration::from_secs(5),
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
        spawn(cfg, Box::new(sampler), Some(Box::new(memory.clone())), None).0
    }

    #[tokio::test(start_paused = true)]
    async fn each_sample_leaves_one_span_after_it_was_taken_not_one_interval_later() {
        let memory = Memory { ack_after: Some(Duration::from_millis(5)), ..Default::default() };
        let agent = start(config(1000, 100), 3, &memory);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let sent = memory.sent.lock().unwrap().clone();
        let data: Vec<(Duration, i64)> = sent
            .iter()
            .filter(|(_, r)| r.model == ModelKey::ParameterData)
            .map(|(t, r)| (*t, r.timestamp_ms))
            .collect();
        // First sample one interval after start; each record one span after its sample.
        assert_eq!(
            data.iter().map(|(t, _)| t.as_millis()).collect::<Vec<_>>(),
            [1100, 2100, 3100],
            "records leave {data:?}"
        );
        assert_eq!(data.iter().map(|(_, ts)| *ts).collect::<Vec<_>>(), [0, 1000, 2000], "record time = sample time");
        assert_eq!(sent[0].1.model, ModelKey::StreamProperties, "properties come first");
        let status = agent.shutdown().await;
        assert_eq!(status.samples, 3);
        assert_eq!(status.records_acknowledged, status.records_sent);
        assert_eq!(status.records_pending(), 0);
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
        assert_eq!(status.records_failed, status.records_sent);
        assert_eq!(status.last_error.as_deref(), Some("delivery failed: broker said no"));
        agent.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_publisher_the_agent_samples_but_sends_nothing() {
        let (agent, task) =
            spawn(config(200, 100), Box::new(ScriptedSampler::new(rows(2, Duration::from_millis(200)))), None, None);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(agent.status().state, PublisherState::Unconfigured);
        assert_eq!(agent.status().samples, 2);
        assert_eq!(agent.status().last_value, Some(1.0));
        let s = agent.shutdown().await;
        assert_eq!(s.records_sent, 0);
        task.await.unwrap();
        assert_eq!(agent.shutdown().await.samples, 2, "a stopped agent still answers");
    }

    /// Hands out a prepared publisher (or a failure) for any token.
    struct Prepared(Mutex<Option<Result<Memory, String>>>);

    impl Connector for Prepared {
        fn connect(&self, _: Secret, _: TokenSource) -> Connecting {
            let next = self.0.lock().unwrap().take().expect("one connection prepared");
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(30)).await; // the Portal round trips
                match next {
                    Ok(m) => Ok(Box::new(m) as Box<dyn Publisher>),
                    Err(e) => Err(ConnectError::Kafka(PublishError::Client(e))),
                }
            })
        }
    }

    fn token() -> Secret {
        Secret::new("token-2").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_the_token_switches_over_in_order_without_loss_or_stream_end() {
        // The old broker connection answers slowly, so records are in flight at the switch.
        let old = Memory { ack_after: Some(Duration::from_millis(150)), ..Default::default() };
        let new = Memory { ack_after: Some(Duration::from_millis(1)), ..Default::default() };
        *old.origin.lock().unwrap() = Some(Instant::now());
        *new.origin.lock().unwrap() = Some(Instant::now());
        let connector = Arc::new(Prepared(Mutex::new(Some(Ok(new.clone())))));
        let cfg = config(200, 100);
        let sampler = ScriptedSampler::new(rows(10, cfg.interval));
        let (agent, _) = spawn(cfg, Box::new(sampler), Some(Box::new(old.clone())), Some(connector));
        tokio::time::sleep(Duration::from_millis(650)).await; // 3 samples; the 3rd record in flight
        agent.replace_token(token(), TokenSource::CredentialStore).await.unwrap();
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
        let connector = Arc::new(Prepared(Mutex::new(Some(Err("refused".into())))));
        let cfg = config(200, 100);
        let sampler = ScriptedSampler::new(rows(5, cfg.interval));
        let (agent, _) = spawn(cfg, Box::new(sampler), Some(Box::new(old.clone())), Some(connector));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let e = agent.replace_token(token(), TokenSource::Environment).await.unwrap_err();
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
        let connector = Arc::new(Prepared(Mutex::new(Some(Ok(new.clone())))));
        let cfg = config(200, 100);
        let sampler = ScriptedSampler::new(rows(5, cfg.interval));
        let (agent, _) = spawn(cfg, Box::new(sampler), None, Some(connector));
        assert_eq!(agent.status().state, PublisherState::Unconfigured);
        agent.replace_token(token(), TokenSource::CredentialStore).await.unwrap();
        assert_eq!(agent.status().state, PublisherState::Publishing);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(agent.status().records_acknowledged > 0);
        agent.shutdown().await;
        // A token that cannot connect leaves an agent without a connection in the error state.
        let failing = Arc::new(Prepared(Mutex::new(Some(Err("token rejected".into())))));
        let (agent, _) = spawn(config(200, 100), Box::new(ScriptedSampler::new(Vec::new())), None, Some(failing));
        assert!(agent.replace_token(token(), TokenSource::CredentialStore).await.is_err());
        assert!(
            matches!(agent.status().state, PublisherState::Failed { ref reason } if reason.contains("token rejected"))
        );
        let (agent, _) = spawn(config(200, 100), Box::new(ScriptedSampler::new(Vec::new())), None, None);
        assert!(matches!(agent.replace_token(token(), TokenSource::Environment).await, Err(ReplaceError::NoConnector)));
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
        let props: Vec<&Record> =
            sent.iter().map(|(_, r)| r).filter(|r| r.model == ModelKey::StreamProperties).collect();
        assert_eq!(props.len(), 2);
        assert!(props[1].value.contains(r#""Name":"renamed""#), "the new name is sent before the next data");
        // A new stream id ends the old stream and starts the new one.
        let mut moved = renamed;
        moved.stream_id = StreamId::parse("another-stream").unwrap();
        agent.apply(moved).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        agent.shutdown().await;
        let sent = memory.sent.lock().unwrap().clone();
        let old_end =
            sent.iter().position(|(_, r)| r.model == ModelKey::StreamEnd && &*r.key == "test-stream").unwrap();
        let new_first = sent.iter().position(|(_, r)| &*r.key == "another-stream").unwrap();
        assert!(old_end < new_first);
        assert_eq!(sent[new_first].1.model, ModelKey::StreamProperties);
    }
}
