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
use hostpulse_core::settings::{Checked, OutboxLimits, RecordFormat};
use hostpulse_core::status::{PublisherState, StateEvent, Status};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::{ModelKey, ParameterDefinition, Record, StreamEndType, StreamProperties};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff::Backoff;
use crate::connector::{ConnectError, Connecting, Connector, Credential};
use crate::outbox::{InFlight, Outbox, Stored};
use crate::publisher::{DeliveryError, DeliveryReport, PublishError, Publisher};
use crate::sampler::{Sampler, now_ns};

/// Records handed to the producer and not yet acknowledged, at most (also the most a restart
/// after a crash can send twice).
pub const MAX_IN_FLIGHT: usize = 500;

/// Waits between connection attempts: 1 s doubling to 1 min, with jitter.
pub const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), u32::MAX);

/// How often the actor looks at the producer's health and the outbox's age bound.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// The power source is read this often (low-power mode on).
const POWER_CHECK: Duration = Duration::from_secs(5);

/// When housekeeping first runs after the ticker starts at `interval`, and how often: in step
/// with the ticker (at 1 Hz both are one wake-up), every second at faster rates, and every
/// [`POWER_CHECK`] at slower ones (on battery it wakes less, yet still notices the mains and the
/// outbox's age bound within seconds).
fn housekeeping_timing(interval: Duration) -> (Duration, Duration) {
    let period = interval.clamp(HOUSEKEEPING, POWER_CHECK);
    (interval.min(period), period)
}

/// A wall-clock step this much larger than the monotonic one means the machine slept.
const SLEEP_DETECTION: Duration = Duration::from_secs(5);

/// The wall clock the agent reads, ns since the Unix epoch: for the outbox's age bound, the next
/// try shown to people, the stream's properties heartbeat and the chart's window. (Samples carry
/// their sampler's time; scheduling uses tokio's monotonic clock.) Injected so that tests run
/// it on paused tokio time.
pub trait Clock: Send + Sync + 'static {
    /// Now, ns since the Unix epoch.
    fn now_ns(&self) -> i64;

    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now_ns().div_euclid(1_000_000)
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        now_ns()
    }
}

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
    /// Time between samples while the machine runs on its battery (low-power mode), if on.
    pub battery_interval: Option<Duration>,
    /// Processes the `processes` metric publishes when selected.
    pub process_count: usize,
    /// The CPU load from which a high-CPU spell's top processes are tracked (the desktop app's
    /// notification and tray); `None`: not tracked (the headless agent).
    pub spell_threshold: Option<f64>,
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
    /// The Quix Streams envelope, or one JSON row per sample.
    pub format: RecordFormat,
    /// This machine's name, as JSON rows give it.
    pub host: String,
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
            battery_interval: c.battery_interval,
            process_count: c.process_count,
            spell_threshold: None,
            buffer: c.buffer,
            shutdown_timeout: c.shutdown_timeout,
            outbox: c.outbox,
            stall_timeout: c.stall_timeout,
            record_max_bytes: c.record_max_bytes,
            format: c.format,
            host: hostname.to_owned(),
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
    ReplaceToken { credential: Credential, reply: ReplaceReply },
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
pub fn spawn(config: AgentConfig, parts: Parts) -> (AgentHandle, JoinHandle<()>) {
    spawn_with_clock(config, parts, Arc::new(SystemClock))
}

/// [`spawn`] with the wall clock the agent reads (tests run it on paused tokio time).
pub fn spawn_with_clock(mut config: AgentConfig, parts: Parts, clock: Arc<dyn Clock>) -> (AgentHandle, JoinHandle<()>) {
    let Parts { mut sampler, mut outbox, connector, credential, publisher } = parts;
    sampler.watch(config.process_count, config.spell_threshold);
    let low_power = config.battery_interval.is_some() && sampler.on_battery() == Some(true);
    let selected = sampler.select(&config.metrics, &config.network_interfaces);
    let sampler_defines = selected.is_some();
    if let Some(definitions) = selected {
        config.definitions = definitions;
    }
    let shared = Arc::new(Mutex::new(Shared {
        history: kept_history(&outbox, config.history, clock.now_ns()),
        definitions: config.definitions.clone(),
    }));
    outbox.set_limits(config.outbox);
    let mut status =
        Status::new(if publisher.is_some() { PublisherState::Publishing } else { PublisherState::Unconfigured });
    status.records_queued = outbox.len();
    status.low_power = low_power;
    status.interval_ms = match config.battery_interval {
        Some(battery) if low_power => battery,
        _ => config.interval,
    }
    .as_millis() as u64;
    // Records of a kind this version does not know (written by another version) were removed
    // when the outbox was opened: they can never be sent by this one.
    status.records_failed = outbox.unknown_removed();
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let writer = writer_for(&config);
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
        new_interval: None,
        low_power,
        power_checked: Instant::now(),
        connecting: None,
        retry_at: None,
        attempt: 0,
        switching: None,
        alone_in_flight: false,
        drain_until: None,
        connected_once,
        clock,
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

/// A stream writer for `config`: its stream, record bound, format and host.
fn writer_for(config: &AgentConfig) -> StreamWriter {
    let mut writer = StreamWriter::new(config.stream_id.clone(), config.properties.clone(), config.definitions.clone());
    writer.set_record_limit(config.record_max_bytes);
    writer.set_format(config.format, &config.host);
    writer
}

/// The history window filled with the rows an earlier run kept in the outbox file.
fn kept_history(outbox: &Outbox, window: Duration, now_ns: i64) -> History {
    let mut history = History::new(window);
    if window.is_zero() {
        return history;
    }
    let since = now_ns.saturating_sub(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX));
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

type ReplaceReply = oneshot::Sender<Result<(), ReplaceError>>;

/// A delivery report with what it answers.
type Tracked = std::pin::Pin<Box<dyn std::future::Future<Output = (Handed, Result<(), DeliveryError>)> + Send>>;

/// A record handed to a producer: the window generation and outbox position it belongs to, its
/// bytes, and whether it went alone (nothing else awaited a report meanwhile, so a broker that
/// refused it refused it alone, not a batch it was part of).
#[derive(Debug, Clone, Copy)]
struct Handed {
    generation: u64,
    seq: i64,
    bytes: u64,
    alone: bool,
}

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
    /// A record of this window failed while a new connection was being made, so it could not be
    /// rebuilt yet: nothing more goes through this producer, and what it did not deliver is sent
    /// again through the next one.
    troubled: Option<String>,
    /// Records up to this position go one at a time, each alone in the producer: the broker
    /// refused a batch holding one of them as too large (it refuses whole batches), and only a
    /// record refused on its own is removed as unsendable.
    alone_through: i64,
}

impl Window {
    fn new() -> Self {
        Window {
            generation: 0,
            cursor: 0,
            count: 0,
            bytes: 0,
            last_progress: Instant::now(),
            troubled: None,
            alone_through: 0,
        }
    }

    /// A new window with nothing in flight. With `resend`, everything still in the outbox is
    /// sent again from its start; without, sending goes on after the cursor (all answered).
    fn reset(&mut self, resend: bool) {
        self.generation += 1;
        self.count = 0;
        self.bytes = 0;
        self.troubled = None;
        self.last_progress = Instant::now();
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
        if seq >= self.alone_through {
            // The refused batch is behind: records go as usual after this one is answered.
            self.alone_through = 0;
        }
    }

    /// The next record to send goes alone ([`Window::alone_through`]).
    fn one_at_a_time(&self) -> bool {
        self.cursor < self.alone_through
    }

    /// What the outbox's bounds must spare: up to the cursor, and while records go one at a
    /// time, the refused batch too (its reports may still come).
    fn in_flight(&self) -> InFlight {
        InFlight { upto: self.cursor.max(self.alone_through), bytes: self.bytes }
    }
}

/// A connection being made, who asked for it (a new token) and with which token.
struct PendingConnect {
    future: Connecting,
    reply: Option<ReplaceReply>,
    credential: Option<Credential>,
    /// A new token came while the producer of a removed one still drained the outbox: that
    /// producer takes nothing new, and a failure leaves the agent without a connection.
    after_removal: bool,
}

/// A connected producer waiting for the old one's records in flight, until a deadline.
struct Switch {
    publisher: Box<dyn Publisher>,
    deadline: Instant,
    reply: ReplaceReply,
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
    /// A changed sampling interval for the run loop to apply.
    new_interval: Option<Duration>,
    /// Low-power mode: the machine runs on its battery and samples at the battery interval.
    low_power: bool,
    /// When the power source was last read.
    power_checked: Instant,
    connecting: Option<PendingConnect>,
    /// The next connection attempt after trouble.
    retry_at: Option<Instant>,
    /// Failed attempts in a row (for the backoff).
    attempt: u32,
    switching: Option<Switch>,
    /// A record sent alone ([`Window::one_at_a_time`]) awaits its report: nothing joins it in
    /// the producer's batch until then.
    alone_in_flight: bool,
    /// The token was removed: the producer goes once the outbox is sent or at this deadline.
    drain_until: Option<Instant>,
    /// A producer was connected once: from then on no error stops the agent for good.
    connected_once: bool,
    /// The wall clock (the outbox's age bound, next tries, the properties heartbeat, the chart).
    clock: Arc<dyn Clock>,
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
        let interval = self.interval();
        let mut ticker = tokio::time::interval_at(origin + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // In step with the ticker, so that at 1 Hz both are one wake-up, not two.
        let (first, period) = housekeeping_timing(interval);
        let mut housekeeping = tokio::time::interval_at(origin + first, period);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.pump();
        loop {
            let deadline = self.buffer.deadline().map(|d| origin + d);
            let switch_deadline = self.switching.as_ref().map(|s| s.deadline);
            // The watchdog watches the producer only while it is on its own: a connection being
            // made or a retry scheduled replaces it anyway (and a deadline left armed meanwhile
            // would fire at once, again and again).
            // Also while the reports of a refused batch are awaited before records go one at a
            // time (the window is empty then, but the producer still has to answer).
            let awaited = self.window.count > 0 || (self.window.one_at_a_time() && !self.reports.is_empty());
            let stall = (awaited && self.publisher.is_some() && self.connecting.is_none() && self.retry_at.is_none())
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
                Some((handed, result)) = self.reports.next(), if !self.reports.is_empty() => {
                    self.on_delivery(handed, result);
                }
                connected = async { (&mut self.connecting.as_mut().expect("guarded").future).await }, if self.connecting.is_some() => {
                    let PendingConnect { reply, credential, after_removal, .. } = self.connecting.take().expect("guarded");
                    self.on_connected(connected, reply, credential, after_removal);
                }
                _ = sleep_until(switch_deadline) => {
                    tracing::warn!("the old connection still has unacknowledged records; switching anyway, they are sent again");
                    self.finish_switch();
                }
                _ = sleep_until(self.retry_at) => {
                    self.retry_at = None;
                    if self.publisher.is_some() {
                        // No connector to build a new producer: send again through this one.
                        self.transition(StateEvent::Connected);
                        self.pump();
                    } else {
                        self.connect(None, None);
                    }
                }
                _ = sleep_until(stall) => {
                    let waited = self.config.stall_timeout;
                    self.recover(format!("no acknowledgement from the broker for {waited:?}"));
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
                let now = Instant::now();
                ticker = tokio::time::interval_at(now + interval, interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let (first, period) = housekeeping_timing(interval);
                housekeeping = tokio::time::interval_at(now + first, period);
                housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
            self.publish_status();
        }
    }

    /// The sampling interval in force: the battery interval in low-power mode.
    fn interval(&self) -> Duration {
        match self.config.battery_interval {
            Some(battery) if self.low_power => battery,
            _ => self.config.interval,
        }
    }

    /// Reads the power source (low-power mode on): on battery, samples every battery interval;
    /// on mains again, every interval. The rows keep their true times, so the gap shows.
    fn check_power(&mut self) {
        let on_battery = self.config.battery_interval.is_some() && self.sampler.on_battery() == Some(true);
        if on_battery != self.low_power {
            self.low_power = on_battery;
            let interval = self.interval();
            tracing::info!(?interval, "{}", if on_battery { "on battery: low-power mode" } else { "on mains again" });
            self.set_interval(interval);
        }
    }

    /// Samples every `interval` from now on (the run loop restarts its ticker).
    fn set_interval(&mut self, interval: Duration) {
        if interval.as_millis() as u64 != self.status.interval_ms {
            self.status.interval_ms = interval.as_millis() as u64;
            self.new_interval = Some(interval);
        }
        self.status.low_power = self.low_power;
    }

    /// Every state change goes through core's transition table.
    fn transition(&mut self, event: StateEvent) {
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

    /// Publishing switched off by the user (the stream is closed; sampling goes on). The state
    /// says so: nothing but the user's resume leaves `Paused` (see core's transition table).
    fn paused(&self) -> bool {
        matches!(self.status.state, PublisherState::Paused)
    }

    /// Whether samples become records: publishing is on and a broker or token is configured.
    fn active(&self) -> bool {
        !matches!(self.status.state, PublisherState::Paused | PublisherState::Unconfigured | PublisherState::Stopping)
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
        self.status.spell_top = self.sampler.spell_top();
        tracing::debug!(timestamp_ns = row.timestamp_ns, values = ?row.values, "sampled");
        let active = self.active();
        self.remember(&row, active);
        if !active {
            return;
        }
        if let Some(rows) = self.buffer.push(row, now) {
            self.publish(&rows);
        }
        // A buffer due before the next sample can come holds the same rows then as now: send it
        // now, and spare the wake-up at its deadline (one of the few an idle agent has).
        if self.buffer.deadline().is_some_and(|d| d <= now + self.interval())
            && let Some(rows) = self.buffer.flush()
        {
            self.publish(&rows);
        }
    }

    fn publish(&mut self, rows: &[Row]) {
        for record in self.writer.data(rows, self.clock.now_ns()) {
            if self.store(&record).is_some() && matches!(record.model, ModelKey::ParameterData | ModelKey::JsonRow) {
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
        match self.outbox.append_after(record, self.clock.now_ms(), &self.window.in_flight()) {
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
                // This record, and the older ones dropped to make room before it failed.
                self.status.records_dropped += 1 + e.dropped;
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
        if self.switching.is_some()
            || self.retry_at.is_some()
            || self.publisher.is_none()
            || self.window.troubled.is_some()
            || self.connecting.as_ref().is_some_and(|c| c.after_removal)
        {
            return;
        }
        loop {
            if self.alone_in_flight {
                return;
            }
            // Alone means with no report outstanding, from this window or an earlier one.
            let alone = self.window.one_at_a_time();
            let room = match alone {
                true if self.reports.is_empty() => 1,
                true => return,
                false => MAX_IN_FLIGHT.saturating_sub(self.window.count),
            };
            if room == 0 {
                return;
            }
            let batch = match self.outbox.after(self.window.cursor, room) {
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
                        let handed = Handed { generation: self.window.generation, seq, bytes, alone };
                        self.reports.push(track(handed, delivery));
                        if alone {
                            self.alone_in_flight = true;
                            break;
                        }
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
                        self.recover(format!("{e}; unsent records stay in the outbox"));
                        return;
                    }
                }
            }
        }
    }

    fn on_delivery(&mut self, handed: Handed, result: Result<(), DeliveryError>) {
        let Handed { generation, seq, bytes, alone } = handed;
        if alone {
            self.alone_in_flight = false;
        }
        let current = generation == self.window.generation;
        if current {
            self.window.count -= 1;
            self.window.bytes = self.window.bytes.saturating_sub(bytes);
        }
        match result {
            Ok(()) => {
                if self.window.one_at_a_time() {
                    // Waiting for the last reports before going one at a time is progress too.
                    self.window.last_progress = Instant::now();
                }
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
                        self.transition(StateEvent::Connected);
                    }
                }
            }
            Err(e) if e.unsendable && alone => {
                let _ = self.outbox.remove(seq);
                self.status.records_failed += 1;
                tracing::error!("record refused by the broker, removed from the outbox: {e}");
                self.status.last_error = Some(e.to_string());
            }
            Err(e) if e.unsendable && current => {
                // The broker refuses a whole batch for one record too large for the topic: each
                // record sent so far goes again, alone, once every report is in (so none is
                // sent twice), and only one refused on its own is removed.
                tracing::warn!("a batch of records was refused ({e}); sending them again one at a time");
                self.window.alone_through = self.window.alone_through.max(self.window.cursor);
                self.window.reset(true);
            }
            Err(e) if current => self.recover(format!("{e}; unacknowledged records stay in the outbox")),
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
    fn recover(&mut self, reason: String) {
        if self.retry_at.is_some() {
            return;
        }
        if self.connecting.is_some() {
            // The producer cannot be rebuilt while a new one is being made: it takes nothing
            // more, and the new connection (or, if it fails, this recovery) sends again what it
            // did not deliver.
            tracing::warn!("{reason}; waiting for the connection being made");
            self.window.troubled.get_or_insert(reason);
            return;
        }
        tracing::warn!("{reason}");
        if matches!(self.status.state, PublisherState::Unconfigured) {
            // The token was removed while the outbox drained: no retry without one. What is left
            // stays in the outbox for the next token.
            self.drop_publisher();
            return;
        }
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
        let next_try_ms = self.clock.now_ms() + delay.as_millis() as i64;
        tracing::info!("next connection attempt in {delay:.1?}");
        self.transition(StateEvent::Retry { reason, next_try_ms });
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
        if self.config.battery_interval.is_some() && self.power_checked.elapsed() >= POWER_CHECK {
            self.power_checked = Instant::now();
            self.check_power();
        }
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
            if let Err(e) = self.outbox.prune_history(self.clock.now_ns().saturating_sub(window)) {
                tracing::debug!("{e}");
            }
        }
        match self.outbox.expire_after(self.clock.now_ms(), self.window.cursor) {
            Ok(0) => {}
            Ok(n) => {
                self.status.records_dropped += n;
                tracing::warn!(dropped = n, "records older than the outbox's age bound were dropped");
            }
            Err(e) => tracing::error!("{e}"),
        }
        let Some(publisher) = self.publisher.as_deref() else { return };
        match publisher.trouble() {
            Some(t) if t.fatal => self.recover(t.reason),
            Some(t) if matches!(self.status.state, PublisherState::Publishing) => {
                // librdkafka reconnects by itself; the watchdog steps in at the stall timeout.
                let next_try_ms = self.clock.now_ms()
                    + (self.window.last_progress + self.config.stall_timeout)
                        .saturating_duration_since(Instant::now())
                        .as_millis() as i64;
                tracing::warn!("{}", t.reason);
                self.status.last_error = Some(t.reason.clone());
                self.transition(StateEvent::Retry { reason: t.reason, next_try_ms });
            }
            _ => {}
        }
        self.pump();
    }

    fn set_publishing(&mut self, on: bool) {
        if on != self.paused() {
            return;
        }
        if on {
            self.writer.reopen();
            self.transition(StateEvent::Resume { connected: self.publisher.is_some() });
            // Resuming tries at once (a scheduled retry, even a slow one, is brought forward);
            // an error kept quiet while paused comes back with this attempt.
            if self.publisher.is_none() && self.connecting.is_none() {
                self.connect(None, None);
            }
            tracing::info!("publishing resumed");
        } else {
            self.close_stream();
            self.transition(StateEvent::Pause);
            tracing::info!("publishing paused; the stream is closed");
        }
    }

    /// Flushes the buffer and ends the stream (once).
    fn close_stream(&mut self) {
        if self.paused() || self.writer.is_closed() || matches!(self.status.state, PublisherState::Unconfigured) {
            return;
        }
        let rest = self.buffer.flush().unwrap_or_default();
        for record in self.writer.close(&rest, StreamEndType::Closed, self.clock.now_ns()) {
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
        self.transition(StateEvent::Unconfigure);
        tracing::info!("disconnected: no token");
    }

    fn apply(&mut self, mut config: AgentConfig) {
        if self.sampler_defines {
            let selection =
                |c: &AgentConfig| (c.metrics.clone(), c.network_interfaces.clone(), c.process_count, c.spell_threshold);
            config.definitions = if selection(&config) != selection(&self.config) {
                self.sampler.watch(config.process_count, config.spell_threshold);
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
            self.writer = writer_for(&config);
        } else {
            if let Some(rows) = self.buffer.flush() {
                self.publish(&rows);
            }
            self.writer.set_properties(config.properties.clone());
            self.writer.set_definitions(config.definitions.clone());
        }
        self.writer.set_record_limit(config.record_max_bytes);
        if config.format != self.writer.format() || config.host != self.config.host {
            // From the next sample on: what is buffered goes out as it was, an envelope stream
            // ends (StreamEnd), and coming back to the envelope starts a new stream life.
            let from = self.writer.format();
            self.close_stream();
            self.writer.set_format(config.format, &config.host);
            self.writer.reopen();
            tracing::info!(from = from.id(), to = config.format.id(), "record format changed");
        }
        self.buffer.set_config(config.buffer);
        self.outbox.set_limits(config.outbox);
        tracing::info!(stream_id = %config.stream_id, "settings applied");
        self.config = config;
        if self.config.battery_interval.is_none() {
            self.low_power = false;
        }
        self.check_power();
        self.set_interval(self.interval());
    }

    /// Starts connecting: with `credential` (a new token, for `reply`) or the current token.
    fn connect(&mut self, credential: Option<Credential>, reply: Option<ReplaceReply>) {
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
        // The token was removed and its producer still drains the outbox: the new token starts
        // publishing as a first one does.
        let after_removal = (self.publisher.is_some() && matches!(self.status.state, PublisherState::Unconfigured))
            || self.connecting.as_ref().is_some_and(|c| c.after_removal);
        if (self.publisher.is_none() || after_removal) && !quiet_retry {
            self.transition(StateEvent::Connect);
        }
        if let Some(PendingConnect { reply: Some(superseded), .. }) =
            self.connecting.replace(PendingConnect { future, reply, credential, after_removal })
        {
            let _ = superseded.send(Err(ReplaceError::Stopped));
        }
    }

    fn replace_token(&mut self, credential: Credential, reply: ReplaceReply) {
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
        reply: Option<ReplaceReply>,
        credential: Option<Credential>,
        after_removal: bool,
    ) {
        if after_removal && connected.is_err() {
            // No going back to the removed token: what its producer did not deliver waits in
            // the outbox for a token that works.
            self.drop_publisher();
        }
        match connected {
            Err(e) if self.publisher.is_some() => {
                tracing::error!("the new token cannot be used; publishing continues as before: {e}");
                self.status.last_error = Some(e.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
                // A record failed meanwhile: the producer is in trouble after all.
                if let Some(reason) = self.window.troubled.take() {
                    self.recover(reason);
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
                        self.clock.now_ms() + SLOW_RETRY.as_millis() as i64
                    });
                    match next_try_ms {
                        Some(_) => tracing::error!("cannot publish: {e}; trying again in {SLOW_RETRY:?}"),
                        None => tracing::error!("cannot publish: {e}"),
                    }
                    self.transition(StateEvent::Fatal { reason, next_try_ms });
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
                self.transition(StateEvent::Connected);
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
        // Everything answered, and nothing failed on the old producer: sending goes on after
        // the cursor; otherwise the new one sends again all that is unacknowledged.
        let drained = self.window.count == 0 && self.window.troubled.is_none();
        if let Some(old) = self.publisher.replace(publisher) {
            tokio::task::spawn_blocking(move || drop(old));
        }
        self.window.reset(!drained);
        if matches!(self.status.state, PublisherState::Connecting) {
            // A token given while a removed one's producer drained (see `connect`).
            self.transition(StateEvent::Connected);
            self.status.last_error = None;
            self.status.token_rejected = false;
        }
        tracing::info!(queued = self.outbox.len(), "switched to the new connection");
        let _ = reply.send(Ok(()));
        self.pump();
    }

    async fn stop(&mut self) {
        let configured = !matches!(self.status.state, PublisherState::Unconfigured);
        self.close_stream();
        self.transition(StateEvent::Stop);
        self.publish_status();
        self.finish_switch();
        if self.publisher.is_some() && self.retry_at.is_none() {
            self.pump();
            let limit = self.config.shutdown_timeout;
            let drain = async {
                while !self.outbox.is_empty() {
                    match self.reports.next().await {
                        Some((handed, result)) => self.on_delivery(handed, result),
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
        self.transition(StateEvent::Stopped { configured });
        self.publish_status();
    }
}

fn track(handed: Handed, delivery: DeliveryReport) -> Tracked {
    Box::pin(async move { (handed, delivery.await) })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
