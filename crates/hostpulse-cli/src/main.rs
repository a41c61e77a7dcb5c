//! `hostpulse`: the headless HostPulse agent for servers.
//!
//! `hostpulse run` publishes this machine's CPU load (and the metrics chosen with `--metrics`,
//! listed by `hostpulse metrics`) as a Quix stream until Ctrl-C/SIGTERM,
//! through a Quix streaming token (default) or a configured broker; `token` keeps the token in
//! the OS credential store; `check` tries every step and says what is wrong; `dry-run` prints
//! the records it would send, without a broker.

mod check;
mod signals;
mod token_cmd;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use hostpulse_agent::agent::{self, AgentConfig, AgentHandle, Parts};
use hostpulse_agent::assembly::{self, EnvOverrides, Launch, LaunchError, SwitchableConnector};
use hostpulse_agent::connector::{Connector, Credential};
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::private_file;
use hostpulse_agent::publisher::{DeliveryReport, PublishError, Publisher};
use hostpulse_agent::sampler::{HostSampler, Sampler, SyntheticSampler};
use hostpulse_agent::settings_file;
use hostpulse_agent::token::{self, KeyringStore, SecretStore};
use hostpulse_core::metrics::Metric;
use hostpulse_core::sample::CPU_LOAD;
use hostpulse_core::settings::{Checked, RecordFormat, SaslMechanism, SecurityProtocol, Settings};
use hostpulse_core::status::{PublisherState, Status, StatusView};
use hostpulse_core::wire::Record;

#[derive(Parser)]
#[command(name = "hostpulse", version, about = "Publishes this machine's CPU load to Quix / Kafka as a Quix stream")]
struct Cli {
    /// Settings file (default: the OS config dir, e.g. ~/.config/hostpulse/settings.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// More log output than `log_level` (-v one level, -vv two). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish until Ctrl-C or SIGTERM, then flush, close the stream and print a summary.
    Run {
        /// Publish a generated test signal at HZ samples per second instead of measuring the CPU
        /// (`Sequence` counts samples, `CPU_Load` cycles 0–99.9): for soak runs and benchmarks.
        #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=1000))]
        synthetic: Option<u32>,
        /// Keep PATH holding the current status as one JSON object (`state` such as
        /// `connecting`, `publishing` or `retrying`, the counters, the error, `stream_id`),
        /// replaced atomically when the status changes (at most every 100 ms) and once more at
        /// exit: for scripts and health checks that wait for publishing to start.
        #[arg(long, value_name = "PATH")]
        status_file: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Keep the Quix streaming token in the OS credential store.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check settings, token, workspace, broker login and topic, step by step.
    Check(Overrides),
    /// List the metric catalog: each metric's id (for `--metrics`), its parameters on this
    /// machine, and what this machine cannot read.
    Metrics(Overrides),
    /// Sample a few times and print the records that would be sent (JSON lines), without a broker.
    DryRun {
        /// How many samples to take.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
        samples: u64,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Print the manual page (roff) for packaging: `hostpulse manpage | gzip > hostpulse.1.gz`.
    #[command(hide = true)]
    Manpage,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Store the token: read from standard input, or asked for without echo on a terminal.
    /// A running `hostpulse run` picks it up at once.
    Set,
    /// Say where the token comes from (never the token itself).
    Status,
    /// Remove the stored token.
    Clear,
}

/// Flags that override the settings file, one per settings field.
#[derive(Args, Default)]
struct Overrides {
    /// Kafka bootstrap servers, host:port[,host:port...]. Without it: Quix mode (streaming token).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Quix Portal API URL (Quix mode; env Quix__Portal__Api overrides the settings file).
    #[arg(long, value_name = "URL")]
    portal_url: Option<String>,
    /// Quix workspace id (Quix mode; env Quix__Workspace__Id); default: the token's only workspace.
    #[arg(long, value_name = "ID")]
    workspace_id: Option<String>,
    /// Verify the broker's TLS host name (true or false).
    #[arg(long, value_name = "BOOL")]
    tls_verify_hostname: Option<bool>,
    /// Topic name (created when missing).
    #[arg(long)]
    topic: Option<String>,
    /// Record format: `quix` (the Quix Streams envelope: quixstreams 0.5, and 3 with
    /// value_deserializer="quix") or `json` (one JSON row per sample, what quixstreams 3 reads by
    /// default).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<RecordFormat>,
    /// Partitions for a topic HostPulse creates.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    topic_partitions: Option<i32>,
    /// Stream id (default: derived from the machine id, stable across restarts).
    #[arg(long, value_name = "ID")]
    stream_id: Option<String>,
    /// Stream name (default: "CPU Load - <hostname>").
    #[arg(long, value_name = "NAME")]
    stream_name: Option<String>,
    /// Time between samples, ms (100 to 3600000 on Linux, 200 to 3600000 elsewhere).
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    interval_ms: Option<u64>,
    /// Buffer span, ms (1 to 60000): samples within it share a record; none waits longer.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    buffer_span_ms: Option<u64>,
    /// Also flush after this many buffered rows.
    #[arg(long, value_name = "ROWS", allow_negative_numbers = true)]
    buffer_packet_size: Option<u64>,
    /// Also flush after this long without a new row, ms.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    buffer_timeout_ms: Option<u64>,
    /// At shutdown, wait at most this long for acknowledgements, ms.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    shutdown_timeout_ms: Option<u64>,
    /// Unsent records kept on disk, KiB; beyond it the oldest are dropped and counted.
    #[arg(long, value_name = "KIB", allow_negative_numbers = true)]
    outbox_max_kb: Option<u64>,
    /// Unsent records older than this are dropped and counted, hours.
    #[arg(long, value_name = "HOURS", allow_negative_numbers = true)]
    outbox_max_age_hours: Option<u64>,
    /// Rebuild the producer when no acknowledgement arrives for this long, ms.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    stall_timeout_ms: Option<u64>,
    /// Largest data record, KiB (16 to 976): larger batches go out in several records.
    #[arg(long, value_name = "KIB", allow_negative_numbers = true)]
    record_max_kb: Option<u64>,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_protocol)]
    security_protocol: Option<SecurityProtocol>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password: env HOSTPULSE_SASL_PASSWORD).
    #[arg(long, value_name = "MECHANISM", value_parser = parse_mechanism)]
    sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, value_name = "USER")]
    sasl_username: Option<String>,
    /// PEM file of the CA that signed the broker's certificate.
    #[arg(long, value_name = "PATH")]
    ssl_ca_location: Option<PathBuf>,
    /// Metrics to publish besides CPU_Load, comma-separated, or `all` (see `hostpulse metrics`).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    metrics: Option<Vec<String>>,
    /// How many processes the `processes` metric publishes, 1 to 10 (default 3).
    #[arg(long, value_name = "N")]
    process_count: Option<u64>,
    /// Sampling interval on battery (low-power mode), ms; 0: off (default 5000).
    #[arg(long, value_name = "MS")]
    battery_interval_ms: Option<u64>,
    /// Network interfaces for the `network` metric, comma-separated (default: all but loopback).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    network_interfaces: Option<Vec<String>>,
    /// A tag added to every row, such as `site=lab` (repeatable; replaces the file's tag of that name).
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE, for example site=lab")?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn parse_format(s: &str) -> Result<RecordFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "quix" => Ok(RecordFormat::Quix),
        "json" => Ok(RecordFormat::Json),
        _ => Err("expected quix or json".into()),
    }
}

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "plaintext" => Ok(SecurityProtocol::Plaintext),
        "ssl" => Ok(SecurityProtocol::Ssl),
        "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
        "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
        _ => Err("expected plaintext, ssl, sasl_plaintext or sasl_ssl".into()),
    }
}

fn parse_mechanism(s: &str) -> Result<SaslMechanism, String> {
    match s.to_ascii_uppercase().as_str() {
        "PLAIN" => Ok(SaslMechanism::Plain),
        "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
        "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
        _ => Err("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into()),
    }
}

impl Overrides {
    fn apply(self, s: &mut Settings) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { s.$field = v; } )* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if self.$field.is_some() { s.$field = self.$field; } )* };
        }
        set!(
            topic,
            format,
            topic_partitions,
            interval_ms,
            battery_interval_ms,
            process_count,
            buffer_span_ms,
            shutdown_timeout_ms,
            outbox_max_kb,
            outbox_max_age_hours,
            stall_timeout_ms,
            record_max_kb,
            security_protocol,
            tls_verify_hostname
        );
        set_opt!(
            broker,
            portal_url,
            workspace_id,
            stream_id,
            stream_name,
            buffer_packet_size,
            buffer_timeout_ms,
            sasl_mechanism,
            sasl_username,
            ssl_ca_location
        );
        if let Some(metrics) = self.metrics {
            s.metrics = metrics;
        }
        if let Some(interfaces) = self.network_interfaces {
            s.network_interfaces = interfaces;
        }
        s.tags.extend(self.tags);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.config.as_deref(), cli.verbose);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = runtime.context("cannot start the async runtime").and_then(|rt| {
        let result = rt.block_on(dispatch(cli));
        // A connection attempt still waiting for the broker must not hold up the exit.
        rt.shutdown_timeout(std::time::Duration::from_secs(2));
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostpulse: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error (journald takes it under systemd) at the settings file's `log_level`
/// raised by `-v` flags, or as `HOSTPULSE_LOG` says; the filter is the app's
/// (`assembly::log_filter`). A settings file that cannot be read is reported by the command.
fn init_logging(config: Option<&std::path::Path>, verbose: u8) {
    let path = config.map(std::path::Path::to_path_buf).or_else(|| settings_file::default_path().ok());
    let level = path.and_then(|p| settings_file::load(&p).ok()).map(|s| s.log_level).unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_env(assembly::LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(assembly::log_filter(level, verbose)));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Settings from the file, then the Quix environment variables, then flags; checked.
fn load(config: Option<PathBuf>, overrides: Overrides) -> Result<Launch> {
    Launch::load(config, EnvOverrides::from_env(), |s| overrides.apply(s)).map_err(|e| match e {
        LaunchError::Invalid { path, errors } => anyhow::anyhow!(
            "{errors}\nfix the flag (e.g. --interval-ms for `interval_ms`) or the settings file {}",
            path.display()
        ),
        e => e.into(),
    })
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { synthetic, status_file, overrides } => {
            run(load(cli.config, overrides)?, synthetic, status_file).await
        }
        Command::DryRun { samples, overrides } => dry_run(load(cli.config, overrides)?.agent_config(), samples).await,
        Command::Check(o) => check::run(load(cli.config, o)?).await,
        Command::Metrics(o) => list_metrics(&load(cli.config, o)?.checked),
        Command::Token { command } => token_cmd::run(command, &KeyringStore::new()),
        Command::Manpage => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            Ok(())
        }
    }
}

async fn run(launch: Launch, synthetic: Option<u32>, status_file: Option<PathBuf>) -> Result<()> {
    let mut config = launch.agent_config();
    config.history = std::time::Duration::ZERO; // nobody looks at it here
    let sampler: Box<dyn Sampler> = match synthetic {
        Some(hz) => {
            config.interval = std::time::Duration::from_secs(1) / hz;
            config.definitions = agent::synthetic_definitions();
            tracing::warn!("publishing a synthetic test signal at {hz} Hz, not this machine's CPU load");
            Box::new(SyntheticSampler::default())
        }
        None => Box::new(HostSampler::new()?),
    };
    // Listen for Ctrl-C/SIGTERM before anything slow, so a stop while connecting is clean too.
    let stop = signals::shutdown()?;
    tokio::pin!(stop);
    let mut reload = signals::Reload::install()?;
    let store = KeyringStore::new();
    let route = launch.route();
    let quix = route.uses_token();
    let credential = match quix {
        true => Some(assembly::credential(&store)?.ok_or_else(|| anyhow::anyhow!(assembly::no_token_message(&store)))?),
        false => None,
    };
    let connector: Arc<dyn Connector> = Arc::new(SwitchableConnector::new(route));
    let outbox = launch.open_outbox("cli")?;
    let outbox_path = outbox.path().to_owned();
    let parts = Parts { sampler, outbox, connector: Some(connector), credential, publisher: None };
    let (agent, _task) = agent::spawn(config.clone(), parts);
    let status_file = match status_file {
        Some(path) => match StatusFile::start(path, config.stream_id.to_string(), &agent).await {
            Ok(file) => Some(file),
            Err(e) => {
                agent.shutdown().await;
                return Err(e);
            }
        },
        None => None,
    };
    // From here `hostpulse token set` finds this agent (a SIGHUP waits until the loop below).
    let _pid = match quix.then(token_cmd::PidFile::create).transpose() {
        Ok(pid) => pid,
        Err(e) => {
            shut_down(&agent, status_file).await;
            return Err(e);
        }
    };
    // The first connection decides: an error only the user can fix ends the run; an outage
    // does not (samples wait in the outbox while the agent retries).
    let mut watch = agent.watch();
    let first = tokio::select! {
        s = watch.wait_for(|s| !matches!(s.state, PublisherState::Connecting)) => s.map(|s| s.state.clone()).ok(),
        () = &mut stop => None,
    };
    match first {
        None => {
            let status = shut_down(&agent, status_file).await;
            println!("hostpulse: stopped while connecting: {}", status.summary());
            return Ok(());
        }
        Some(PublisherState::Failed { reason, next_try_ms: None }) => {
            shut_down(&agent, status_file).await;
            anyhow::bail!("{reason}");
        }
        Some(PublisherState::Backoff { reason, .. }) => tracing::warn!(
            "{reason}; samples wait in the outbox ({}) and are sent when the broker answers",
            outbox_path.display()
        ),
        Some(_) => {}
    }
    tracing::info!(
        stream_id = %config.stream_id,
        "publishing every {:?}, buffer span {:?}; Ctrl-C to stop (settings: {})",
        config.interval,
        launch.checked.buffer.time_span.unwrap_or_default(),
        launch.settings_path.display()
    );
    let store: Arc<dyn SecretStore> = Arc::new(store);
    let mut ended_for_good = None;
    loop {
        tokio::select! {
            () = &mut stop => break,
            // Before it ever published, an error only the user can fix ends the agent (after
            // that it keeps trying by itself): end the run with the message.
            s = watch.wait_for(|s| matches!(s.state, PublisherState::Failed { next_try_ms: None, .. })) => {
                if let Ok(s) = s && let PublisherState::Failed { reason, .. } = &s.state {
                    ended_for_good = Some(reason.clone());
                }
                break;
            }
            () = reload.recv() => {
                if !quix {
                    tracing::info!("SIGHUP ignored: no token in use (direct broker)");
                    continue;
                }
                // Off this loop: a stop must be honoured while the new token connects.
                let (agent, store) = (agent.clone(), store.clone());
                tokio::spawn(async move {
                    match token::resolve_blocking(store).await {
                        Ok(Some((token, source))) => match agent.replace_token(Credential::new(token, source)).await {
                            Ok(()) => tracing::info!("now publishing with the token from {source}"),
                            Err(e) => tracing::error!("token not replaced: {e}"),
                        },
                        Ok(None) => tracing::error!("SIGHUP: no token found; publishing continues with the current one"),
                        Err(e) => tracing::error!("SIGHUP: {e}; publishing continues with the current token"),
                    }
                });
            }
        }
    }
    if let Some(reason) = ended_for_good {
        shut_down(&agent, status_file).await;
        anyhow::bail!("{reason}");
    }
    tracing::info!("stopping: flushing and closing the stream");
    let status = shut_down(&agent, status_file).await;
    if status.records_pending() > 0 {
        tracing::warn!(
            pending = status.records_pending(),
            "unacknowledged records stay in the outbox ({}) and go first at the next start",
            outbox_path.display()
        );
    }
    println!("hostpulse: {}", status.summary());
    Ok(())
}

/// Stops the agent and writes its final status to the status file, if there is one.
async fn shut_down(agent: &AgentHandle, status_file: Option<StatusFile>) -> Status {
    let status = agent.shutdown().await;
    if let Some(file) = status_file {
        file.finish(&status).await;
    }
    status
}

/// `--status-file`: a file that holds the agent's current status as one JSON object, replaced
/// atomically (`private_file::write`) when the status changes, at most every
/// [`StatusFile::EVERY`] (the latest status wins), and once more with the final status.
struct StatusFile {
    path: PathBuf,
    stream_id: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusFile {
    const EVERY: Duration = Duration::from_millis(100);

    /// Writes the current status (an error names the flag and the path) and keeps writing.
    async fn start(path: PathBuf, stream_id: String, agent: &AgentHandle) -> Result<StatusFile> {
        let mut watch = agent.watch();
        let first = watch.borrow_and_update().clone();
        write_status(path.clone(), &stream_id, &first)
            .await
            .with_context(|| format!("cannot write the status file {} (--status-file)", path.display()))?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (task_path, task_id) = (path.clone(), stream_id.clone());
        let task = tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    changed = async {
                        tokio::time::sleep(Self::EVERY).await;
                        watch.changed().await
                    } => if changed.is_err() { break },
                }
                let status = watch.borrow_and_update().clone();
                if let Err(e) = write_status(task_path.clone(), &task_id, &status).await
                    && !std::mem::replace(&mut warned, true)
                {
                    tracing::warn!("cannot write the status file {}: {e}", task_path.display());
                }
            }
        });
        Ok(StatusFile { path, stream_id, stop, task })
    }

    /// Stops the updates (a write under way completes first) and writes `status`.
    async fn finish(self, status: &Status) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        if let Err(e) = write_status(self.path.clone(), &self.stream_id, status).await {
            tracing::warn!("cannot write the status file {}: {e}", self.path.display());
        }
    }
}

/// Replaces the status file with `status` as JSON, off the runtime's one worker (it fsyncs).
async fn write_status(path: PathBuf, stream_id: &str, status: &Status) -> std::io::Result<()> {
    let json = status_json(status, stream_id);
    tokio::task::spawn_blocking(move || private_file::write(&path, json.as_bytes()))
        .await
        .map_err(std::io::Error::other)?
}

/// The status file's content: the fields of [`StatusView`] (the window's vocabulary) and
/// `stream_id`, as one JSON object on one line (ending in a newline).
fn status_json(status: &Status, stream_id: &str) -> String {
    #[derive(serde::Serialize)]
    struct StatusLine<'a> {
        #[serde(flatten)]
        view: StatusView,
        stream_id: &'a str,
    }
    let line = serde_json::to_string(&StatusLine { view: StatusView::from(status), stream_id });
    line.expect("a status serializes") + "\n"
}

/// Prints each record as a JSON line `{"key":..,"timestamp_ms":..,"value":<the envelope>}` and
/// acknowledges it at once.
struct PrintPublisher;

impl Publisher for PrintPublisher {
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError> {
        let mut key = String::new();
        hostpulse_core::json::push_str(&mut key, &record.key);
        let line = format!(r#"{{"key":{key},"timestamp_ms":{},"value":{}}}"#, record.timestamp_ms, record.value);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| PublishError::Enqueue(e.to_string()))?;
        Ok(Box::pin(async { Ok(()) }))
    }
}

/// Prints the catalog with this machine's parameters (network: after the include list).
fn list_metrics(checked: &Checked) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for metric in Metric::ALL {
        let mut sampler = HostSampler::new()?;
        let defs = sampler.select(&[metric], &checked.network_interfaces).unwrap_or_default();
        let defs: Vec<_> = defs.iter().filter(|d| metric == Metric::Cpu || d.id != CPU_LOAD).collect();
        let on = if checked.metrics.contains(&metric) { "on " } else { "off" };
        writeln!(out, "{on} {:<12} {}", metric.id(), metric.label())?;
        if defs.is_empty() {
            writeln!(out, "      (not readable on this machine)")?;
        }
        for d in defs {
            let unit = d.unit.as_deref().map(|u| format!(" [{u}]")).unwrap_or_default();
            writeln!(out, "      {:<32} {}{unit}", d.id, d.location)?;
        }
    }
    Ok(())
}

async fn dry_run(config: AgentConfig, samples: u64) -> Result<()> {
    let parts = Parts {
        sampler: Box::new(HostSampler::new()?),
        outbox: Outbox::in_memory(config.outbox),
        connector: None,
        credential: None,
        publisher: Some(Box::new(PrintPublisher)),
    };
    let (agent, _task) = agent::spawn(config, parts);
    wait_for_samples(&agent, samples).await;
    let status = agent.shutdown().await;
    eprintln!("hostpulse: dry run: {}", status.summary());
    Ok(())
}

async fn wait_for_samples(agent: &AgentHandle, n: u64) {
    let mut watch = agent.watch();
    let _ = watch.wait_for(|s| s.samples >= n).await;
}
