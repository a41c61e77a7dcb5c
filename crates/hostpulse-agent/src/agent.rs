//! The Agent actor: one task owns the pipeline (sampler, buffer, stream, outbox, publisher,
//! counters). Everyone else holds an [`AgentHandle`], sends commands and watches [`Status`].
//!
//! Per tick it samples and buffers; finished records go into the [`Outbox`] first and from there,
//! in order, to the producer (at most [`MAX_IN_FLIGHT`] unacknowledged at a time). A record
//! leaves the outbox only when the broker acknowledged it. When a delivery fails for a reason
//! that may pass (timeouts, broker gone), when the producer reports a fatal error, or when no
//! acknowledgement arrives for `stall_timeout`, the watchdog drops the producer and connects
//! anew (fresh Portal settings in Quix mode) with capped exponential backoff and jitter, state
//! [`PublisherState::Backoff`]; everything unacknowledged is then sent again from the outbox.
//! While librdkafka itself reconnects (all brokers down, shorter than `stall_timeout`) the
//! producer is kept: its idempotent retries neither lose nor duplicate.
//!
//! Replacing the token (Quix keeps two valid so they can be rotated) connects anew in the
//! background while publishing goes on; then the switch: the outbox holds new records back
//! until the old producer's in-flight records are acknowledged (bounded by the shutdown
//! timeout), so the stream continues in order with nothing lost or sent twice and no `StreamEnd`.
//!
//! A restart after a crash sends again what was in flight when the process died (at most
//! [`MAX_IN_FLIGHT`] records): those may reach the broker twice. A rebuilt producer may likewise
//! repeat records whose acknowledgement was lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hostpulse_core::buffer::{BufferConfig, TimespanBuffer};
use hostpulse_core::history::{self, History, Series};
use hostpulse_core::metrics::{self, Metric};
use hostpulse_core::sample::{CPU_LOAD, Row};
use hostpulse_core::settings::{Checked, OutboxLimits};
use hostpulse_core::status::{Event, PublisherState, Status};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::{ModelKey, ParameterDefinition, Record, StreamEndType, StreamProperties};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff::Backoff;
use crate::outbox::{InFlight, Outbox, Stored};
use crate::publisher::{Delivery, DeliveryError, PublishError, Publisher};
use crate::quix::{ConnectError, Connecting, Connector, Credential};
use crate::sampler::{Sampler, now_ns};

/// Records handed to the producer and not yet acknowledged, at most (also the most a restart
/// after a crash can send twice).
pub const MAX_IN_FLIGHT: usize = 500;

/// Waits between connection attempts: 1 s doubling to 1 min, with jitter.
pub const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), u32::MAX);

/// How often the actor looks at the producer's health and the outbox's age bound.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A wall-clock step this much larger than the monotonic one means the machine slept.
const SLEEP_DETECTION: Duration = Duration::from_secs(5);

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
    /// Outbox bounds.
    pub outbox: OutboxLimits,
    /// With records in flight and no acknowledgement for this long, the producer is rebuilt.
    pub stall_timeout: Duration,
    /// Most bytes (key and value) of one data record; larger batches are split.
    pub record_max_bytes: usize,
    /// Metrics to publish; a sampler that reads the host turns them into `definitions`.
    pub metrics: Vec<Metric>,
    /// Network interfaces to publish; empty: all but loopback.
    pub network_interfaces: Vec<String>,
    /// Tags added to every row.
    pub tags: Vec<(Arc<str>, Arc<str>)>,
    /// How far back [`AgentHandle::history`] reaches (zero: the newest row only).
    pub history: Duration,
}

impl AgentConfig {
    /// The configuration for checked settings: the stream named as configured, with host facts
    /// as metadata, the `CPU_Load` definition (until a host sampler defines the selected
    /// metrics) and an hour of history.
    pub fn from_checked(c: &Checked, hostname: &str) -> Self {
        AgentConfig {
            stream_id: c.stream_id.clone(),
            properties: StreamProperties {
                name: Some(c.stream_name.clone()),
                location: Some(format!("/hosts/{}", hostname.replace(['/', '\\'], "_"))),
                metadata: crate::machine::metadata(hostname),
                parents: Vec::new(),
                time_of_recording_ns: None,
            },
            definitions: cpu_definitions(),
            interval: c.interval,
            buffer: c.buffer,
            shutdown_timeout: c.shutdown_timeout,
            outbox: c.outbox,
            stall_timeout: c.stall_timeout,
            record_max_bytes: c.record_max_bytes,
            metrics: c.metrics.clone(),
            network_interfaces: c.network_interfaces.clone(),
            tags: c.tags.clone(),
            history: history::DEFAULT_WINDOW,
        }
    }
}

/// The definition of `CPU_Load`: "CPU Load", percent, 0–100.
pub fn cpu_definitions() -> Vec<ParameterDefinition> {
    metrics::definitions(Metric::Cpu, &metrics::Inventory::default())
}

/// The definitions for a [`SyntheticSampler`](crate::sampler::SyntheticSampler)'s signal:
/// `CPU_Load` and the `Sequence` counter.
pub fn synthetic_definitions() -> Vec<ParameterDefinition> {
    let mut defs = cpu_definitions();
    defs.push(ParameterDefinition {
        id: crate::sampler::SEQUENCE.into(),
        name: Some("Sequence".into()),
        description: Some("Synthetic test signal: counts samples from the start of the run".into()),
        minimum: Some(0.0),
        maximum: None,
        unit: None,
        location: "/".into(),
    });
    defs
}

/// What the agent is made of.
pub struct Parts {
    /// Where samples come from.
    pub sampler: Box<dyn Sampler>,
    /// Where records wait until acknowledged.
    pub outbox: Outbox,
    /// Makes producers (at start, after trouble, for a new token). Without one the agent uses
    /// `publisher` for good and, after trouble, sends again through it.
    pub connector: Option<Arc<dyn Connector>>,
    /// The token for a connector that needs one.
    pub credential: Option<Credential>,
    /// A producer connected already.
    pub publisher: Option<Box<dyn Publisher>>,
}

enum Command {
    Shutdown(oneshot::Sender<Status>),
    ReplaceToken { credential: Credential, reply: Reply },
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
    shared: Arc<Mutex<Shared>>,
}

/// What the actor shares with handles besides the status: the recent rows and what they mean.
struct Shared {
    history: History,
    definitions: Vec<ParameterDefinition>,
}

impl AgentHandle {
    /// The definitions of the parameters published now.
    pub fn definitions(&self) -> Vec<ParameterDefinition> {
        self.shared.lock().expect("not poisoned").definitions.clone()
    }

    /// Parameter `id` over the configured history window: every sampled row, with what became
    /// of it (published or not, acknowledged or waiting).
    pub fn history(&self, id: &str) -> Series {
        self.shared.lock().expect("not poisoned").history.series(id)
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Flushes, closes the stream, waits (bounded) for acknowledgements, stops the agent and
    /// returns its final status; what is unacknowledged stays in the outbox for the next start.
    /// Calling it on a stopped agent returns the last status.
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

    /// Applies new stream, buffer, sampling and outbox settings without a restart: a new name is
    /// sent before the next data; a new stream id closes the old stream and starts the new one;
    /// a new interval takes effect from the next tick.
    pub async fn apply(&self, config: AgentConfig) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Apply { config: Box::new(config), reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Ends the stream and lets the connection go once the outbox is sent (bounded by the
    /// shutdown timeout): the token was removed. Back to `Unconfigured`, sampling on. A later
    /// [`replace_token`](Self::replace_token) connects again.
    pub async fn disconnect(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Disconnect(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Connects with a new token and switches publishing over to it without a gap: the same
    /// stream continues, nothing is lost or sent twice. On error the previous connection stays
    /// (without one, the agent retries transient failures with this token).
    pub async fn replace_token(&self, credential: Credential) -> Result<(), ReplaceError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::ReplaceToken { credential, reply }).await.map_err(|_| ReplaceError::Stopped)?;
        rx.await.map_err(|_| ReplaceError::Stopped)?
    }
}

/// Starts the agent on the current tokio runtime. With a connector (and, if it needs one, a
/// token) and no publisher it connects at once; with neither it only samples (`Unconfigured`)
/// until a token arrives through [`AgentHandle::replace_token`].
pub fn spawn(mut config: AgentConfig, parts: Parts) -> (AgentHandle, JoinHandle<()>) {
    let Parts { mut sampler, mut outbox, connector, credential, publisher } = parts;
    let selected = sampler.select(&config.metrics, &config.network_interfaces);
    let sampler_defines = selected.is_some();
    if let Some(definitions) = selected {
        config.definitions = definitions;
    }
    let shared = Arc::new(Mutex::new(Shared {
        history: kept_history(&outbox, config.history),
        definitions: config.definitions.clone(),
    }));
    outbox.set_limits(config.outbox);
    let mut status =
        Status::new(if publisher.is_some() { PublisherState::Publishing } else { PublisherState::Unconfigured });
    status.records_queued = outbox.len();
    // Records of a kind this version does not know (written by another version) were removed
    // when the outbox was opened: they can never be sent by this one.
    status.records_failed = outbox.unknown_removed();
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let mut writer = StreamWriter::new(config.stream_id.clone(), config.properties.clone(), config.definitions.clone());
    writer.set_record_limit(config.record_max_bytes);
    let connected_once = publisher.is_some();
    let mut actor = Actor {
        writer,
        buffer: TimespanBuffer::new(config.buffer),
        config,
        sampler,
        outbox,
        connector,
        credential,
        publisher,
        window: Window::new(),
        reports: FuturesUnordered::new(),
        paused: false,
        new_interval: None,
        connecting: None,
        retry_at: None,
        attempt: 0,
        switching: None,
        drain_until: None,
        connected_once,
        last_sample: None,
        drop_logged: None,
        oldest_unsent_ms: None,
        unsent_since: None,
        history_pruned: 0,
        sampler_defines,
        shared: shared.clone(),
        status,
        status_tx,
        commands: cmd_rx,
    };
    if actor.publisher.is_none() {
        actor.connect(None, None);
        actor.publish_status();
    }
    if !actor.outbox.is_empty() {
        tracing::info!(records = actor.outbox.len(), "records from an earlier run wait in the outbox; they go first");
    }
    let task = tokio::spawn(actor.run());
    (AgentHandle { commands: cmd_tx, status: status_rx, shared }, task)
}

/// The history window filled with the rows an earlier run kept in the outbox file.
fn kept_history(outbox: &Outbox, window: Duration) -> History {
    let mut history = History::new(window);
    if window.is_zero() {
        return history;
    }
    let since = now_ns().saturating_sub(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX));
    match outbox.history_since(since) {
        Ok(rows) => {
            for (ts, published, json) in rows {
                let values: Vec<(String, f64)> = serde_json::from_str(&json).unwrap_or_default();
                let row = values.into_iter().fold(Row::new(ts), |row, (id, v)| row.with_value(id, v));
                history.push(row, published);
            }
        }
        Err(e) => tracing::warn!("the chart starts empty: {e}"),
    }
    history
}

type Reply = oneshot::Sender<Result<(), ReplaceError>>;

/// A delivery report with the window generation and outbox position it belongs to.
type Tracked = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, i64, u64, Result<(), DeliveryError>)> + Send>>;

/// After an error only the user can fix, once the agent has published: how long until it tries
/// again by itself (a rotated token may come back, a password be restored).
pub const SLOW_RETRY: Duration = Duration::from_secs(300);

/// The records handed to the current producer and not yet answered, and when the broker last
/// made progress. A new producer, or sending everything again after trouble, starts a new window
/// ([`Window::reset`]): reports from an earlier one still remove what the broker acknowledged,
/// but no longer count here.
struct Window {
    /// Counts windows; each report carries the generation it was sent in.
    generation: u64,
    /// The last outbox position handed to the producer.
    cursor: i64,
    /// Records of this window awaiting their report.
    count: usize,
    /// Their bytes (key and value).
    bytes: u64,
    /// The last acknowledgement (or the moment records went in flight after a quiet spell).
    last_progress: Instant,
}

impl Window {
    fn new() -> Self {
        Window { generation: 0, cursor: 0, count: 0, bytes: 0, last_progress: Instant::now() }
    }

    /// A new window with nothing in flight. With `resend`, everything still in the outbox is
    /// sent again from its start; without, sending goes on after the cursor (all answered).
    fn reset(&mut self, resend: bool) {
        self.generation += 1;
        self.count = 0;
        self.bytes = 0;
        if resend {
            self.cursor = 0;
        }
    }

    /// Record `seq` of `bytes` was handed to the producer.
    fn sent(&mut self, seq: i64, bytes: u64) {
        if self.count == 0 {
            self.last_progress = Instant::now();
        }
        self.count += 1;
        self.bytes += bytes;
        self.cursor = seq;
    }

    /// What the outbox's bounds must spare.
    fn in_flight(&self) -> InFlight {
        InFlight { upto: self.cursor, bytes: self.bytes }
    }
}

/// A connection being made, who asked for it (a new token) and with which token.
struct PendingConnect {
    future: Connecting,
    reply: Option<Reply>,
    credential: Option<Credential>,
}

/// A connected producer waiting for the old one's records in flight, until a deadline.
struct Switch {
    publisher: Box<dyn Publisher>,
    deadline: Instant,
    reply: Reply,
}

struct Actor {
    config: AgentConfig,
    sampler: Box<dyn Sampler>,
    outbox: Outbox,
    connector: Option<Arc<dyn Connector>>,
    credential: Option<Credential>,
    publisher: Option<Box<dyn Publisher>>,
    window: Window,
    /// Delivery reports of every producer still answering (the current and replaced ones).
    reports: FuturesUnordered<Tracked>,
    /// Publishing switched off by the user (the stream is closed; sampling goes on).
    paused: bool,
    /// A changed sampling interval for the run loop to apply.
    new_interval: Option<Duration>,
    connecting: Option<PendingConnect>,
    /// The next connection attempt after trouble.
    retry_at: Option<Instant>,
    /// Failed attempts in a row (for the backoff).
    attempt: u32,
    switching: Option<Switch>,
    /// The token was removed: the producer goes once the outbox is sent or at this deadline.
    drain_until: Option<Instant>,
    /// A producer was connected once: from then on no error stops the agent for good.
    connected_once: bool,
    /// Monotonic and wall-clock time of the last sample, to notice a system sleep.
    last_sample: Option<(Instant, i64)>,
    /// When dropped records were last logged.
    drop_logged: Option<Instant>,
    /// The first row time (ms) of the oldest data record in the outbox: rows from then on are
    /// not acknowledged yet. Read from the outbox every housekeeping turn.
    oldest_unsent_ms: Option<i64>,
    /// What the history was last told about delivery.
    unsent_since: Option<i64>,
    /// Housekeeping turns since the kept history was last pruned.
    history_pruned: u32,
    /// The sampler defines its parameters from the selected metrics.
    sampler_defines: bool,
    shared: Arc<Mutex<Shared>>,
    writer: StreamWriter,
    buffer: TimespanBuffer,
    status: Status,
    status_tx: watch::Sender<Status>,
    commands: mpsc::Receiver<Command>,
}

impl Actor {
    async fn run(mut self) {
        let origin = Instant::now();
        let mut ticker = tokio::time::interval_at(origin + self.config.interval, self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval_at(origin + HOUSEKEEPING, HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.pump();
        loop {
            let deadline = self.buffer.deadline().map(|d| origin + d);
            let switch_deadline = self.switching.as_ref().map(|s| s.deadline);
            // The watchdog watches the producer only while it is on its own: a connection being
            // made or a retry scheduled replaces it anyway (and a deadline left armed meanwhile
            // would fire at once, again and again).
            let stall = (self.window.count > 0
                && self.publisher.is_some()
                && self.connecting.is_none()
                && self.retry_at.is_none())
            .then(|| self.window.last_progress + self.config.stall_timeout);
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Command::ReplaceToken { credential, reply }) => self.replace_token(credential, reply),
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
                Some((generation, seq, bytes, result)) = self.reports.next(), if !self.reports.is_empty() => {
                    self.on_delivery(generation, seq, bytes, result);
                }
                connected = async { (&mut self.connecting.as_mut().expect("guarded").future).await }, if self.connecting.is_some() => {
                    let PendingConnect { reply, credential, .. } = self.connecting.take().expect("guarded");
                    self.on_connected(connected, reply, credential);
                }
                _ = sleep_until(switch_deadline) => {
                    tracing::warn!("the old connection still has unacknowledged records; switching anyway, they are sent again");
                    self.finish_switch();
                }
                _ = sleep_until(self.retry_at) => {
                    self.retry_at = None;
                    if self.publisher.is_some() {
                        // No connector to build a new producer: send again through this one.
                        self.transition(Event::Connected);
                        self.pump();
                    } else {
                        self.connect(None, None);
                    }
                }
                _ = sleep_until(stall) => {
                    let waited = self.config.stall_timeout;
                    self.trouble(format!("no acknowledgement from the broker for {waited:?}"));
                }
                _ = sleep_until(self.drain_until) => self.drop_publisher(),
                _ = sleep_until(deadline) => {
                    if let Some(rows) = self.buffer.poll(origin.elapsed()) {
                        self.publish(&rows);
                    }
                }
                _ = ticker.tick() => self.on_tick(origin.elapsed()),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.update_unsent();
            if let Some(interval) = self.new_interval.take() {
                ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
            self.publish_status();
        }
    }

    /// Every state change goes through core's transition table.
    fn transition(&mut self, event: Event) {
        self.status.state = self.status.state.next(event);
    }

    /// Tells watchers (tray, window, CLI) about a change; an unchanged status wakes nobody.
    fn publish_status(&mut self) {
        self.status.records_queued = self.outbox.len();
        let status = &self.status;
        self.status_tx.send_if_modified(|current| {
            let changed = current != status;
            if changed {
                current.clone_from(status);
            }
            changed
        });
    }

    /// Whether samples become records: publishing is on and a broker or token is configured.
    fn active(&self) -> bool {
        !self.paused && !matches!(self.status.state, PublisherState::Unconfigured | PublisherState::Stopping)
    }

    fn on_tick(&mut self, now: Duration) {
        let row = match self.sampler.sample() {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!("sample skipped: {e}");
                return;
            }
        };
        let previous = self.last_sample.replace((Instant::now(), row.timestamp_ns));
        if let Some((mono, wall)) = previous {
            let mono_step = mono.elapsed();
            let wall_step = Duration::from_nanos(row.timestamp_ns.saturating_sub(wall).max(0) as u64);
            if wall_step > mono_step + SLEEP_DETECTION {
                // The machine slept: this sample's measurement spans the sleep. Records made
                // before it leave as they are; the stream goes on with the next sample.
                tracing::info!(slept = ?wall_step.saturating_sub(mono_step), "the system was asleep; the sample spanning the sleep is skipped");
                if let Some(rows) = self.buffer.flush() {
                    self.publish(&rows);
                }
                return;
            }
        }
        let mut row = row;
        for (name, value) in &self.config.tags {
            if row.tag(name).is_none() {
                row.tags.push((name.clone(), value.clone()));
            }
        }
        self.status.samples += 1;
        self.status.last_value = row.value(CPU_LOAD).or(self.status.last_value);
        tracing::debug!(timestamp_ns = row.timestamp_ns, values = ?row.values, "sampled");
        let active = self.active();
        self.remember(&row, active);
        if !active {
            return;
        }
        if let Some(rows) = self.buffer.push(row, now) {
            self.publish(&rows);
        }
    }

    fn publish(&mut self, rows: &[Row]) {
        for record in self.writer.data(rows, now_ns()) {
            if self.store(&record).is_some() && record.model == ModelKey::ParameterData {
                self.oldest_unsent_ms.get_or_insert(record.timestamp_ms);
            }
        }
        self.pump();
    }

    /// Tells the history how far delivery has got: the oldest row not acknowledged yet (in the
    /// outbox or still in the buffer).
    fn update_unsent(&mut self) {
        let since = self.oldest_unsent_ms.map(|ms| ms.saturating_mul(1_000_000)).or_else(|| self.buffer.oldest_ns());
        if since != self.unsent_since {
            self.unsent_since = since;
            self.shared.lock().expect("not poisoned").history.set_unsent_since(since);
        }
    }

    /// Keeps `row` in the history (and, with a history window, in the outbox file, so that the
    /// chart survives a restart).
    fn remember(&mut self, row: &Row, published: bool) {
        self.shared.lock().expect("not poisoned").history.push(row.clone(), published);
        if self.config.history.is_zero() {
            return;
        }
        let values: Vec<(&str, f64)> =
            row.values.iter().filter(|(_, v)| v.is_finite()).map(|(id, v)| (&**id, *v)).collect();
        let json = serde_json::to_string(&values).unwrap_or_default();
        if let Err(e) = self.outbox.keep_history(row.timestamp_ns, published, &json) {
            tracing::debug!("the chart's history is not kept on disk: {e}");
        }
    }

    /// Puts a record into the outbox (dropping the oldest beyond its bounds); its position.
    fn store(&mut self, record: &Record) -> Option<i64> {
        match self.outbox.append_after(record, now_ns() / 1_000_000, &self.window.in_flight()) {
            Ok(appended) => {
                if appended.dropped > 0 {
                    self.status.records_dropped += appended.dropped;
                    // Once a minute at most: during a long outage this happens at every sample.
                    if self.drop_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        self.drop_logged = Some(Instant::now());
                        tracing::warn!(
                            total = self.status.records_dropped,
                            "outbox full (`outbox_max_kb`, `outbox_max_age_hours`): the oldest unsent records were dropped"
                        );
                    }
                }
                Some(appended.seq)
            }
            Err(e) => {
                self.status.records_dropped += 1;
                tracing::error!(model = record.model.as_str(), "record dropped: {e}");
                self.status.last_error = Some(e.to_string());
                None
            }
        }
    }

    /// Hands records from the outbox to the producer, in order, up to [`MAX_IN_FLIGHT`]. A
    /// record the producer refuses because of its own content is removed and counted; any other
    /// refusal is trouble with the producer: that record and all after it stay.
    fn pump(&mut self) {
        if self.switching.is_some() || self.retry_at.is_some() || self.publisher.is_none() {
            return;
        }
        while self.window.count < MAX_IN_FLIGHT {
            let batch = match self.outbox.after(self.window.cursor, MAX_IN_FLIGHT - self.window.count) {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!("{e}");
                    self.status.last_error = Some(e.to_string());
                    return;
                }
            };
            for Stored { seq, record } in batch {
                let sent = self.publisher.as_deref().expect("checked above").send(&record);
                match sent {
                    Ok(delivery) => {
                        let bytes = (record.key.len() + record.value.len()) as u64;
                        self.window.sent(seq, bytes);
                        self.status.records_sent += 1;
                        self.reports.push(track(self.window.generation, seq, bytes, delivery));
                    }
                    // librdkafka's queue is full: the next report (or housekeeping) pumps again.
                    Err(PublishError::QueueFull) => return,
                    Err(e) if e.is_unsendable() => {
                        tracing::error!(
                            model = record.model.as_str(),
                            "record cannot be sent, removed from the outbox: {e}"
                        );
                        let _ = self.outbox.remove(seq);
                        self.status.records_failed += 1;
                        self.status.last_error = Some(e.to_string());
                        self.window.cursor = seq;
                    }
                    Err(e) => {
                        self.trouble(format!("{e}; unsent records stay in the outbox"));
                        return;
                    }
                }
            }
        }
    }

    fn on_delivery(&mut self, generation: u64, seq: i64, bytes: u64, result: Result<(), DeliveryError>) {
        let current = generation == self.window.generation;
        if current {
            self.window.count -= 1;
            self.window.bytes = self.window.bytes.saturating_sub(bytes);
        }
        match result {
            Ok(()) => {
                if self.outbox.remove(seq).unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    false
                }) {
                    self.status.records_acknowledged += 1;
                }
                if current {
                    self.window.last_progress = Instant::now();
                    self.attempt = 0;
                    if matches!(self.status.state, PublisherState::Backoff { .. }) && self.retry_at.is_none() {
                        tracing::info!("the broker answers again");
                        self.transition(Event::Connected);
                    }
                }
            }
            Err(e) if e.unsendable => {
                let _ = self.outbox.remove(seq);
                self.status.records_failed += 1;
                tracing::error!("record refused by the broker, removed from the outbox: {e}");
                self.status.last_error = Some(e.to_string());
            }
            Err(e) if current => self.trouble(format!("{e}; unacknowledged records stay in the outbox")),
            Err(_) => {} // from a producer already replaced: the outbox sends it again
        }
        if self.window.count == 0 && self.switching.is_some() {
            self.finish_switch();
        }
        if self.outbox.is_empty() {
            self.oldest_unsent_ms = None;
        }
        if self.drain_until.is_some() && self.outbox.is_empty() {
            self.drop_publisher();
        }
        self.pump();
    }

    /// The producer is in trouble: drop it (when a new one can be made) and try again after a
    /// backoff; everything unacknowledged is sent again from the outbox.
    fn trouble(&mut self, reason: String) {
        if self.retry_at.is_some() || self.connecting.is_some() {
            return;
        }
        tracing::warn!("{reason}");
        if self.connector.is_some() {
            self.drop_publisher();
        }
        self.window.reset(true);
        self.status.last_error = Some(reason.clone());
        self.schedule_retry(reason);
    }

    fn schedule_retry(&mut self, reason: String) {
        let delay = RECONNECT.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = Some(Instant::now() + delay);
        let next_try_ms = now_ns() / 1_000_000 + delay.as_millis() as i64;
        tracing::info!("next connection attempt in {delay:.1?}");
        self.transition(Event::Retry { reason, next_try_ms });
    }

    /// Lets the producer go; librdkafka's purge and flush run off the actor.
    fn drop_publisher(&mut self) {
        self.drain_until = None;
        if let Some(old) = self.publisher.take() {
            self.window.reset(true);
            tokio::task::spawn_blocking(move || drop(old));
        }
    }

    fn housekeeping(&mut self) {
        // Only the history's delivery state needs it: without a history window (the CLI), no query.
        if !self.config.history.is_zero() {
            match self.outbox.oldest_data_ms() {
                Ok(oldest) => self.oldest_unsent_ms = oldest,
                Err(e) => tracing::error!("{e}"),
            }
        }
        self.history_pruned += 1;
        if self.history_pruned >= 60 && !self.config.history.is_zero() {
            self.history_pruned = 0;
            let window = i64::try_from(self.config.history.as_nanos()).unwrap_or(i64::MAX);
            if let Err(e) = self.outbox.prune_history(now_ns().saturating_sub(window)) {
                tracing::debug!("{e}");
            }
        }
        match self.outbox.expire_after(now_ns() / 1_000_000, self.window.cursor) {
            Ok(0) => {}
            Ok(n) => {
                self.status.records_dropped += n;
                tracing::warn!(dropped = n, "records older than the outbox's age bound were dropped");
            }
            Err(e) => tracing::error!("{e}"),
        }
        let Some(publisher) = self.publisher.as_deref() else { return };
        match publisher.trouble() {
            Some(t) if t.fatal => self.trouble(t.reason),
            Some(t) if matches!(self.status.state, PublisherState::Publishing) => {
                // librdkafka reconnects by itself; the watchdog steps in at the stall timeout.
                let next_try_ms = now_ns() / 1_000_000
                    + (self.window.last_progress + self.config.stall_timeout)
                        .saturating_duration_since(Instant::now())
                        .as_millis() as i64;
                tracing::warn!("{}", t.reason);
                self.status.last_error = Some(t.reason.clone());
                self.transition(Event::Retry { reason: t.reason, next_try_ms });
            }
            _ => {}
        }
        self.pump();
    }

    fn set_publishing(&mut self, on: bool) {
        if on != self.paused {
            return;
        }
        if on {
            self.paused = false;
            self.writer.reopen();
            self.transition(Event::Resume { connected: self.publisher.is_some() });
            tracing::info!("publishing resumed");
        } else {
            self.close_stream();
            self.paused = true;
            self.transition(Event::Pause);
            tracing::info!("publishing paused; the stream is closed");
        }
    }

    /// Flushes the buffer and ends the stream (once).
    fn close_stream(&mut self) {
        if self.paused || self.writer.is_closed() || matches!(self.status.state, PublisherState::Unconfigured) {
            return;
        }
        let rest = self.buffer.flush().unwrap_or_default();
        for record in self.writer.close(&rest, StreamEndType::Closed, now_ns()) {
            self.store(&record);
        }
        self.pump();
    }

    fn disconnect(&mut self) {
        self.finish_switch();
        self.close_stream();
        if let Some(PendingConnect { reply: Some(reply), .. }) = self.connecting.take() {
            let _ = reply.send(Err(ReplaceError::Stopped));
        }
        self.retry_at = None;
        self.credential = None;
        if self.outbox.is_empty() {
            self.drop_publisher();
        } else if self.publisher.is_some() {
            self.drain_until = Some(Instant::now() + self.config.shutdown_timeout);
        }
        self.writer.reopen();
        self.buffer.flush();
        self.paused = false;
        self.transition(Event::Unconfigure);
        tracing::info!("disconnected: no token");
    }

    fn apply(&mut self, mut config: AgentConfig) {
        if self.sampler_defines {
            let selection = (&config.metrics, &config.network_interfaces);
            config.definitions = if selection != (&self.config.metrics, &self.config.network_interfaces) {
                self.sampler.select(&config.metrics, &config.network_interfaces).unwrap_or(config.definitions)
            } else {
                self.config.definitions.clone()
            };
        }
        if config.history != self.config.history {
            self.shared.lock().expect("not poisoned").history = History::new(config.history);
        }
        self.shared.lock().expect("not poisoned").definitions = config.definitions.clone();
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
        self.writer.set_record_limit(config.record_max_bytes);
        self.buffer.set_config(config.buffer);
        self.outbox.set_limits(config.outbox);
        if config.interval != self.config.interval {
            self.new_interval = Some(config.interval);
        }
        tracing::info!(stream_id = %config.stream_id, "settings applied");
        self.config = config;
    }

    /// Starts connecting: with `credential` (a new token, for `reply`) or the current token.
    fn connect(&mut self, credential: Option<Credential>, reply: Option<Reply>) {
        let Some(connector) = &self.connector else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ReplaceError::NoConnector));
            }
            return;
        };
        let token = credential.as_ref().or(self.credential.as_ref()).cloned();
        if connector.uses_token() && token.is_none() {
            return;
        }
        let future = connector.connect(token);
        self.retry_at = None;
        // A slow retry after an error that needs the user keeps showing that error until it
        // works; a new token (with a reply) shows that it is being tried.
        let quiet_retry = reply.is_none() && matches!(self.status.state, PublisherState::Failed { .. });
        if self.publisher.is_none() && !quiet_retry {
            self.transition(Event::Connect);
        }
        if let Some(PendingConnect { reply: Some(superseded), .. }) =
            self.connecting.replace(PendingConnect { future, reply, credential })
        {
            let _ = superseded.send(Err(ReplaceError::Stopped));
        }
    }

    fn replace_token(&mut self, credential: Credential, reply: Reply) {
        if self.connector.as_ref().is_none_or(|c| !c.uses_token()) {
            let _ = reply.send(Err(ReplaceError::NoConnector));
            return;
        }
        tracing::info!("new streaming token from {}: connecting", credential.source);
        self.drain_until = None;
        self.connect(Some(credential), Some(reply));
    }

    fn on_connected(
        &mut self,
        connected: Result<Box<dyn Publisher>, ConnectError>,
        reply: Option<Reply>,
        credential: Option<Credential>,
    ) {
        match connected {
            Err(e) if self.publisher.is_some() => {
                tracing::error!("the new token cannot be used; publishing continues as before: {e}");
                self.status.last_error = Some(e.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
            }
            Err(e) => {
                if credential.is_some() {
                    self.credential = credential;
                }
                let reason = e.to_string();
                self.status.last_error = Some(reason.clone());
                if e.needs_user() {
                    // Before the agent ever published, this ends it (the user must act); after,
                    // it tries again now and then and shows the error meanwhile.
                    self.status.token_rejected = e.is_token_rejected();
                    let next_try_ms = self.connected_once.then(|| {
                        self.retry_at = Some(Instant::now() + SLOW_RETRY);
                        now_ns() / 1_000_000 + SLOW_RETRY.as_millis() as i64
                    });
                    match next_try_ms {
                        Some(_) => tracing::error!("cannot publish: {e}; trying again in {SLOW_RETRY:?}"),
                        None => tracing::error!("cannot publish: {e}"),
                    }
                    self.transition(Event::Fatal { reason, next_try_ms });
                } else {
                    tracing::warn!("cannot connect: {e}");
                    self.schedule_retry(reason);
                }
                self.publish_status();
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
            }
            Ok(new) if self.publisher.is_none() => {
                if credential.is_some() {
                    self.credential = credential;
                }
                self.publisher = Some(new);
                self.connected_once = true;
                self.window.reset(true);
                self.transition(Event::Connected);
                self.status.last_error = None;
                self.status.token_rejected = false;
                tracing::info!(queued = self.outbox.len(), "connected");
                self.pump();
                self.publish_status();
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Ok(publisher) => {
                if credential.is_some() {
                    self.credential = credential;
                }
                let reply = reply.unwrap_or_else(|| oneshot::channel().0);
                let deadline = Instant::now() + self.config.shutdown_timeout;
                if let Some(superseded) = self.switching.replace(Switch { publisher, deadline, reply }) {
                    let _ = superseded.reply.send(Err(ReplaceError::Stopped));
                }
                if self.window.count == 0 {
                    self.finish_switch();
                }
            }
        }
    }

    /// The new producer takes over; records held in the outbox meanwhile go out through it, in
    /// order. Records still unacknowledged on the old one are sent again.
    fn finish_switch(&mut self) {
        let Some(Switch { publisher, reply, .. }) = self.switching.take() else { return };
        let drained = self.window.count == 0;
        if let Some(old) = self.publisher.replace(publisher) {
            tokio::task::spawn_blocking(move || drop(old));
        }
        self.window.reset(!drained);
        tracing::info!(queued = self.outbox.len(), "switched to the new connection");
        let _ = reply.send(Ok(()));
        self.pump();
    }

    async fn stop(&mut self) {
        let configured = !matches!(self.status.state, PublisherState::Unconfigured);
        self.close_stream();
        self.transition(Event::Stop);
        self.publish_status();
        self.finish_switch();
        if self.publisher.is_some() && self.retry_at.is_none() {
            self.pump();
            let limit = self.config.shutdown_timeout;
            let drain = async {
                while !self.outbox.is_empty() {
                    match self.reports.next().await {
                        Some((generation, seq, bytes, result)) => self.on_delivery(generation, seq, bytes, result),
                        None => break,
                    }
                }
            };
            if tokio::time::timeout(limit, drain).await.is_err() {
                tracing::warn!(
                    pending = self.outbox.len(),
                    "stopped waiting for acknowledgements after {limit:?}; the rest stays in the outbox"
                );
            }
        }
        self.drop_publisher();
        self.transition(Event::Stopped { configured });
        self.publish_status();
    }
}

fn track(generation: u64, seq: i64, bytes: u64, delivery: Delivery) -> Tracked {
    Box::pin(async move {
        let result = delivery.await;
        (generation, seq, bytes, result)
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
    use crate::publisher::PublishError as PE;
    use crate::sampler::ScriptedSampler;
    use crate::token::TokenSource;
    use hostpulse_core::secret::Secret;
    use hostpulse_core::wire::ModelKey;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Records what was sent, with the (paused) time it was sent at, and what was acknowledged;
    /// acknowledges after `ack_after`. `down`: deliveries time out (retriable); `black_hole`:
    /// records sent meanwhile are never answered.
    /// Makes the error a test injects.
    type MakeError = fn() -> PublishError;

    #[derive(Clone, Default)]
    struct Memory {
        sent: Arc<Mutex<Vec<(Duration, Record)>>>,
        acked: Arc<Mutex<Vec<Record>>>,
        ack_after: Option<Duration>,
        fail: bool,
        down: Arc<AtomicBool>,
        black_hole: Arc<AtomicBool>,
        origin: Arc<Mutex<Option<Instant>>>,
        /// While set, `send` refuses every record with this error (as librdkafka does after a
        /// fatal error, or for a topic it knows is gone).
        refuse: Arc<Mutex<Option<MakeError>>>,
        /// `send` refuses records whose value contains this text as unsendable.
        unsendable: Option<&'static str>,
    }

    impl Publisher for Memory {
        fn send(&self, record: &Record) -> Result<Delivery, PublishError> {
            if let Some(error) = *self.refuse.lock().unwrap() {
                return Err(error());
            }
            if self.unsendable.is_some_and(|text| record.value.contains(text)) {
                return Err(PublishError::Unsendable("Broker: Message size too large".into()));
            }
            let origin = self.origin.lock().unwrap().get_or_insert_with(Instant::now).to_owned();
            self.sent.lock().unwrap().push((origin.elapsed(), record.clone()));
            let (ack_after, fail, down, acked) = (self.ack_after, self.fail, self.down.clone(), self.acked.clone());
            let lost = self.black_hole.load(Ordering::SeqCst);
            let record = record.clone();
            Ok(Box::pin(async move {
                match ack_after {
                    Some(d) if !lost => tokio::time::sleep(d).await,
                    _ => std::future::pending().await,
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
            buffer: BufferConfig { time_span: Some(Duration::from_millis(span_ms)), ..Default::default() },
            shutdown_timeout: Duration::from_secs(5),
            outbox: OutboxLimits::default(),
            stall_timeout: Duration::from_secs(60),
            record_max_bytes: 900 * 1024,
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
        assert_eq!(status.records_failed, status.records_sent);
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

    /// Hands out a prepared publisher (or a failure) for any token.
    struct Prepared(Mutex<Option<Result<Memory, String>>>);

    impl Connector for Prepared {
        fn uses_token(&self) -> bool {
            true
        }

        fn connect(&self, _: Option<Credential>) -> Connecting {
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

    fn token(source: TokenSource) -> Credential {
        Credential { token: Secret::new("token-2").unwrap(), source }
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
        let connector = Arc::new(Prepared(Mutex::new(Some(Err("refused".into())))));
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
        let connector = Arc::new(Prepared(Mutex::new(Some(Ok(new.clone())))));
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
        let failing = Arc::new(Prepared(Mutex::new(Some(Err("token rejected".into())))));
        let (agent, _) = spawn(config(200, 100), parts(ScriptedSampler::new(Vec::new()), None, Some(failing)));
        assert!(agent.replace_token(token(TokenSource::CredentialStore)).await.is_err());
        assert!(
            matches!(agent.status().state, PublisherState::Failed { ref reason, next_try_ms: None } if reason.contains("token rejected")),
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
                Err(ConnectError::Kafka(PE::Unreachable {
                    broker: "relay".into(),
                    reason: "Connection refused".into(),
                }))
            } else if let Some(error) = *self.error.lock().unwrap() {
                Err(error())
            } else {
                Ok(Box::new(self.memory.clone()) as Box<dyn Publisher>)
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
        let memory =
            Memory { ack_after: Some(Duration::from_millis(5)), unsendable: Some("[2.0]"), ..Default::default() };
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
        let earlier = Record {
            model: ModelKey::ParameterData,
            key: "test-stream".into(),
            value: "earlier".into(),
            timestamp_ms: 1,
        };
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
}
