//! The one settings model: what the settings file holds (every field optional in the file, with
//! defaults so old files keep loading), and its validation into [`Checked`], the form the agent
//! runs on. Validation reports every problem at once, each naming the field, the allowed range
//! and the value given. The streaming token and SASL password are never settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::buffer::BufferConfig;
use crate::metrics::{Metric, parse_list};
use crate::notify::NotifyConfig;
use crate::stream::{StreamId, check_stream_name};

/// Shortest sampling interval. Linux: 100 ms, the agent reads `/proc/stat` itself. Elsewhere
/// sysinfo's minimum CPU update interval (200 ms); a shorter one would repeat its last reading.
pub const MIN_INTERVAL_MS: u64 = if cfg!(target_os = "linux") { 100 } else { 200 };
/// Longest sampling interval: one hour.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Longest buffer span / timeout: one minute.
pub const MAX_BUFFER_MS: u64 = 60_000;
/// Most rows in one record (a row is ~20 bytes; records stay far below Kafka's 1 MB).
pub const MAX_PACKET_SIZE: u64 = 10_000;
/// Longest wait for acknowledgements at shutdown: five minutes.
pub const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 300_000;
/// Most partitions HostPulse creates a missing topic with.
pub const MAX_PARTITIONS: i32 = 1_000;
/// Smallest outbox bound, KiB (a few dozen records).
pub const MIN_OUTBOX_KB: u64 = 10;
/// Largest outbox bound, KiB (16 GiB).
pub const MAX_OUTBOX_KB: u64 = 16 * 1024 * 1024;
/// Longest time a record may wait in the outbox: one year.
pub const MAX_OUTBOX_AGE_HOURS: u64 = 24 * 366;
/// Smallest and largest bound on one data record, KiB. The largest stays below the producer's
/// and the broker's default `message.max.bytes` (1000012 bytes) with room for key and framing.
pub const RECORD_MAX_KB: (u64, u64) = (16, 976);
/// Room kept in a record for the parameters of one row when tags are checked against
/// `record_max_kb` (a row of every metric on a machine with 128 cores fits in it).
const PARAMETER_ALLOWANCE: usize = 8 * 1024;
/// Shortest and longest wait for an acknowledgement before the producer is rebuilt.
pub const STALL_TIMEOUT_MS: (u64, u64) = (1_000, 3_600_000);

/// How much the outbox keeps before it drops the oldest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Bytes of records (key and value) kept at most.
    pub max_bytes: u64,
    /// Age after which an unsent record is dropped.
    pub max_age: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        let s = Settings::default();
        OutboxLimits { max_bytes: s.outbox_max_kb * 1024, max_age: Duration::from_secs(s.outbox_max_age_hours * 3600) }
    }
}

/// What the records on the topic look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// The Quix Streams envelope of quixstreams 0.5: read by quixstreams 0.5 and by 3.x with
    /// `value_deserializer="quix"`; it carries the stream name, units and ranges, host facts and
    /// the stream's end.
    #[default]
    Quix,
    /// One JSON object per sample (`timestamp` in ns, `host`, each parameter, each tag): what a
    /// default quixstreams 3 app reads.
    Json,
}

impl RecordFormat {
    /// The setting's value (`quix`, `json`).
    pub const fn id(self) -> &'static str {
        match self {
            RecordFormat::Quix => "quix",
            RecordFormat::Json => "json",
        }
    }

    /// What it is for, in one line (the window and `hostpulse check` show it).
    pub const fn describe(self) -> &'static str {
        match self {
            RecordFormat::Quix => {
                "Quix Streams envelope: quixstreams 0.5 and 3 with value_deserializer='quix', stream name, units, stream end"
            }
            RecordFormat::Json => "JSON rows: what quixstreams 3 reads by default",
        }
    }
}

/// How much HostPulse logs (`log_level`); `-v` flags raise it, `HOSTPULSE_LOG` replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// What happens: connections, outages, settings applied (the default).
    #[default]
    Info,
    /// Every sample and record.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, quietest first.
    pub const ALL: [LogLevel; 5] = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];

    /// The setting's value (`error` … `trace`).
    pub const fn id(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The level named `id`.
    pub fn parse(id: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.id() == id)
    }

    /// `steps` levels louder (each `-v`), at most `Trace`.
    pub fn raised(self, steps: u8) -> LogLevel {
        let at = LogLevel::ALL.iter().position(|l| *l == self).unwrap_or(2);
        LogLevel::ALL[(at + usize::from(steps)).min(LogLevel::ALL.len() - 1)]
    }
}

/// The field names of a JSON row besides its parameters and tags.
pub const JSON_ROW_FIELDS: [&str; 2] = ["timestamp", "host"];

/// How the Kafka connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no login (a local broker).
    #[default]
    Plaintext,
    /// TLS, no login.
    Ssl,
    /// Login without TLS.
    SaslPlaintext,
    /// Login over TLS (Quix Cloud).
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's `security.protocol` value.
    pub const fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether a SASL login is part of the protocol.
    pub const fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// SASL mechanisms HostPulse supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// Plain user/password.
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanism` value.
    pub const fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The Quix Portal API used when no broker is configured (the host quixstreams 3 used until it
/// stopped having a default; customers with their own portal set theirs).
pub const DEFAULT_PORTAL_URL: &str = "https://portal-api.platform.quix.io/";

/// The Quix Portal APIs HostPulse knows, with what they serve (from Quix's documentation,
/// checked 2026-11-29). BYOC and on-premise installations have their own URL.
pub const KNOWN_PORTALS: [(&str, &str); 2] =
    [("https://portal-api.cloud.quix.io/", "Quix Cloud"), (DEFAULT_PORTAL_URL, "Quix legacy platform")];

/// The settings file (TOML). Every field may be left out; unknown fields are refused so that a
/// misspelt setting is reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Kafka bootstrap servers, `host:port[,host:port...]`. Unset: Quix mode, where the streaming
    /// token leads through the Portal API to the broker settings.
    pub broker: Option<String>,
    /// Quix Portal API base URL (Quix mode). The environment variable `Quix__Portal__Api` overrides.
    pub portal_url: Option<String>,
    /// Quix workspace id (Quix mode). `Quix__Workspace__Id` overrides; unset: the token's only workspace.
    pub workspace_id: Option<String>,
    /// Verify that the broker's TLS certificate names the host we connect to. Turning it off
    /// (as quixstreams 0.5.7 always did) is logged as a warning.
    pub tls_verify_hostname: bool,
    /// Topic name to publish to; created when missing.
    pub topic: String,
    /// What the records look like: `quix` (the Quix Streams envelope) or `json` (one JSON row
    /// per sample).
    pub format: RecordFormat,
    /// Partitions for a topic HostPulse creates.
    pub topic_partitions: i32,
    /// Stream id (the Kafka key). Default: derived from the machine id, stable across restarts.
    pub stream_id: Option<String>,
    /// Stream name shown in Quix. Default: `CPU Load - <hostname>`.
    pub stream_name: Option<String>,
    /// Time between samples, in ms.
    pub interval_ms: u64,
    /// Low-power mode: time between samples, in ms, while the machine runs on its battery;
    /// `0`: off (the same interval as on mains).
    pub battery_interval_ms: u64,
    /// Rows whose times span this many ms go out as one record; a lone row leaves after this long.
    pub buffer_span_ms: u64,
    /// Also flush when this many rows are buffered.
    pub buffer_packet_size: Option<u64>,
    /// Also flush after this many ms without a new row.
    pub buffer_timeout_ms: Option<u64>,
    /// At shutdown, wait at most this many ms for the broker to acknowledge what was sent;
    /// what is still unacknowledged stays in the outbox for the next start.
    pub shutdown_timeout_ms: u64,
    /// Unsent records kept on disk (the outbox), KiB; beyond it the oldest are dropped and counted.
    pub outbox_max_kb: u64,
    /// Unsent records older than this many hours are dropped and counted.
    pub outbox_max_age_hours: u64,
    /// With records in flight and no acknowledgement for this many ms, the producer is rebuilt.
    pub stall_timeout_ms: u64,
    /// A data record holds at most this many KiB (key and value): rows buffered beyond it go out
    /// in further records, so no record is ever too large for the broker.
    pub record_max_kb: u64,
    /// How much HostPulse logs: `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: LogLevel,
    /// Kafka `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// Kafka `sasl.mechanism` (required with a SASL protocol).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (required with a SASL protocol). The password comes from the environment
    /// variable `HOSTPULSE_SASL_PASSWORD`, never from a file or a flag.
    pub sasl_username: Option<String>,
    /// PEM file of the CA that signed the broker's certificate.
    pub ssl_ca_location: Option<PathBuf>,
    /// Metrics published next to `CPU_Load` (ids from the catalog, such as `memory`, or `all`).
    pub metrics: Vec<String>,
    /// Network interfaces the `network` metric publishes; empty: all but loopback.
    pub network_interfaces: Vec<String>,
    /// How many processes the `processes` metric publishes, 1 to 10.
    pub process_count: u64,
    /// Notify (desktop app) when the CPU load stays high.
    pub notify_high_cpu: bool,
    /// The high-CPU threshold, percent.
    pub high_cpu_percent: u64,
    /// How long, in seconds, the CPU load must stay at or above the threshold.
    pub high_cpu_seconds: u64,
    /// Notify when publishing stops because of an error.
    pub notify_stopped: bool,
    /// Notify when the streaming token is rejected.
    pub notify_token_rejected: bool,
    /// Tags added to every row, such as `site = "lab"`.
    pub tags: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker: None,
            portal_url: None,
            workspace_id: None,
            tls_verify_hostname: true,
            topic: "cpu-load".into(),
            format: RecordFormat::Quix,
            topic_partitions: 1,
            stream_id: None,
            stream_name: None,
            interval_ms: 1000,
            battery_interval_ms: 5000,
            buffer_span_ms: 100,
            buffer_packet_size: None,
            buffer_timeout_ms: None,
            shutdown_timeout_ms: 10_000,
            outbox_max_kb: 256 * 1024,
            outbox_max_age_hours: 24 * 7,
            stall_timeout_ms: 60_000,
            record_max_kb: 900,
            log_level: LogLevel::Info,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            ssl_ca_location: None,
            metrics: vec![Metric::Cpu.id().into()],
            network_interfaces: Vec::new(),
            process_count: 3,
            notify_high_cpu: true,
            high_cpu_percent: 90,
            high_cpu_seconds: 60,
            notify_stopped: true,
            notify_token_rejected: true,
            tags: BTreeMap::new(),
        }
    }
}

/// Facts about this machine that defaults are derived from (read by the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFacts {
    /// The stable default stream id.
    pub default_stream_id: String,
    /// The host name for the default stream name.
    pub hostname: String,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct FieldError {
    /// The settings field (and CLI flag with `_` as `-`).
    pub field: &'static str,
    /// What is wrong and what is allowed, naming the field.
    pub message: String,
}

/// Every problem found in one set of settings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid settings:\n  {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n  "))]
pub struct SettingsErrors(pub Vec<FieldError>);

/// Kafka login settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// Mechanism and user name, present exactly when the protocol uses SASL.
    pub sasl: Option<(SaslMechanism, String)>,
    /// CA file for TLS.
    pub ssl_ca_location: Option<PathBuf>,
}

/// Settings after validation, with defaults resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Bootstrap servers, if configured (else Quix mode).
    pub broker: Option<String>,
    /// Portal API base URL, with a trailing `/`.
    pub portal_url: String,
    /// Workspace id, if configured.
    pub workspace_id: Option<String>,
    /// Verify the broker's TLS host name.
    pub tls_verify_hostname: bool,
    /// Topic name.
    pub topic: String,
    /// What the records look like.
    pub format: RecordFormat,
    /// Partitions for topic creation.
    pub topic_partitions: i32,
    /// Stream id.
    pub stream_id: StreamId,
    /// Stream name.
    pub stream_name: String,
    /// Sampling interval.
    pub interval: Duration,
    /// Sampling interval on battery (low-power mode), if on.
    pub battery_interval: Option<Duration>,
    /// Processes the `processes` metric publishes.
    pub process_count: usize,
    /// Buffer triggers.
    pub buffer: BufferConfig,
    /// Bound on the wait for acknowledgements at shutdown.
    pub shutdown_timeout: Duration,
    /// Outbox bounds.
    pub outbox: OutboxLimits,
    /// Wait for an acknowledgement before the producer is rebuilt.
    pub stall_timeout: Duration,
    /// Most bytes (key and value) of one data record.
    pub record_max_bytes: usize,
    /// How much to log.
    pub log_level: LogLevel,
    /// Connection security.
    pub security: Security,
    /// Metrics to publish (always with [`Metric::Cpu`]).
    pub metrics: Vec<Metric>,
    /// Network interfaces to publish; empty: all but loopback.
    pub network_interfaces: Vec<String>,
    /// Tags added to every row.
    pub tags: Vec<(Arc<str>, Arc<str>)>,
    /// Desktop notifications.
    pub notify: NotifyConfig,
}

fn range_error(
    field: &'static str,
    lo: impl std::fmt::Display,
    hi: impl std::fmt::Display,
    got: impl std::fmt::Display,
    unit: &str,
) -> FieldError {
    FieldError { field, message: format!("`{field}` must be between {lo} and {hi}{unit}, got {got}") }
}

fn check_range(errors: &mut Vec<FieldError>, field: &'static str, v: u64, lo: u64, hi: u64, unit: &str) {
    if !(lo..=hi).contains(&v) {
        errors.push(range_error(field, lo, hi, v, unit));
    }
}

/// Checks a Kafka topic name: 1–249 characters of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn check_topic(topic: &str) -> Result<(), FieldError> {
    let ok_chars = topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() || topic.len() > 249 || !ok_chars || topic == "." || topic == ".." {
        return Err(FieldError {
            field: "topic",
            message: format!("`topic` must be 1 to 249 characters of letters, digits, `.`, `_` and `-`, got {topic:?}"),
        });
    }
    Ok(())
}

/// Checks a Portal URL: `https://` and a host, no spaces or control characters. The streaming
/// token goes with every request, so plain `http://` is accepted only for a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`: test servers on this machine).
pub fn check_portal_url(url: &str) -> Result<(), FieldError> {
    let bad = |why: String| FieldError { field: "portal_url", message: format!("`portal_url` {why}, got {url:?}") };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces or control characters".into()));
    }
    let (scheme, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => ("https", rest),
        (None, Some(rest)) => ("http", rest),
        _ => return Err(bad(format!("must be an https:// URL such as {DEFAULT_PORTAL_URL}"))),
    };
    // No user info (`user@host`) and no backslash: URL parsers disagree on them (reqwest's `url`
    // ends a host at `\`), and a URL that reads as loopback here must be loopback there.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') || rest.contains('\\') {
        return Err(bad("must not contain user info (`user@`) or a backslash".into()));
    }
    let host = url_host(rest);
    if host.is_empty() {
        return Err(bad(format!("has no host: use an https:// URL such as {DEFAULT_PORTAL_URL}")));
    }
    if scheme == "http" && !is_loopback_host(host) {
        return Err(bad(format!(
            "must use https://: the streaming token would cross the network in clear text to {host} \
             (http:// is accepted only for this machine: localhost, 127.0.0.1, [::1])"
        )));
    }
    Ok(())
}

/// The host of `rest`, the part of a URL after `scheme://`: without user info, port and path.
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.split_inclusive(']').next().unwrap_or(host_port);
    }
    host_port.split(':').next().unwrap_or_default()
}

/// Whether `host` (as written in a URL) names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a workspace id: 1–100 characters of letters, digits, `-` and `_`.
pub fn check_workspace_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > 100 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(FieldError {
            field: "workspace_id",
            message: format!("`workspace_id` must be 1 to 100 letters, digits, `-` or `_`, got {id:?}"),
        });
    }
    Ok(())
}

/// Checks a bootstrap list: comma-separated `host:port` with a port from 1 to 65535.
pub fn check_broker(broker: &str) -> Result<(), FieldError> {
    let bad = |why: &str| FieldError {
        field: "broker",
        message: format!("`broker` must be `host:port[,host:port...]` ({why}), got {broker:?}"),
    };
    if broker.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    for part in broker.split(',') {
        let part = part.trim();
        let Some((host, port)) = part.rsplit_once(':') else {
            return Err(bad(&format!("{part:?} has no port")));
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(&format!("{part:?} has no valid host")));
        }
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(bad(&format!("{part:?} has no port from 1 to 65535")));
        }
    }
    Ok(())
}

/// The most tags a row carries.
pub const MAX_TAGS: usize = 32;

/// Checks one tag: the name 1-64 characters of `A-Z a-z 0-9 _ . -`, the value 1-256 characters
/// without control characters.
pub fn check_tag(name: &str, value: &str) -> Result<(), String> {
    let name_ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !name_ok {
        return Err(format!("`tags`: tag name {name:?} must be 1-64 characters of letters, digits, `_`, `.` or `-`"));
    }
    if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
        return Err(format!("`tags`: the value of {name:?} must be 1-256 characters without control characters"));
    }
    Ok(())
}

/// Reads `name=value` tags separated by commas or new lines (the window's tag field, `--tag`).
pub fn parse_tags(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    for part in text.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("`tags`: {part:?} is not `name=value` (for example `site=lab`)"));
        };
        let (k, v) = (k.trim(), v.trim());
        check_tag(k, v)?;
        if tags.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("`tags`: {k:?} is given twice"));
        }
    }
    Ok(tags)
}

/// The most bytes a record of a single row with `tags` can take: the tags as written (each name
/// once, each value escaped), a timestamp, the envelope, and [`PARAMETER_ALLOWANCE`].
fn one_row_bytes(tags: &BTreeMap<String, String>) -> usize {
    let mut text = String::new();
    for (k, v) in tags {
        crate::json::push_str(&mut text, k);
        crate::json::push_str(&mut text, v);
        text.push_str(":[],");
    }
    text.len() + 256 + PARAMETER_ALLOWANCE
}

impl Settings {
    /// Validates every field and resolves defaults from `machine`.
    pub fn check(&self, machine: &MachineFacts) -> Result<Checked, SettingsErrors> {
        let mut errors = Vec::new();
        check_range(&mut errors, "interval_ms", self.interval_ms, MIN_INTERVAL_MS, MAX_INTERVAL_MS, " ms");
        if self.battery_interval_ms != 0 && !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.battery_interval_ms) {
            errors.push(FieldError {
                field: "battery_interval_ms",
                message: format!(
                    "`battery_interval_ms` must be 0 (low-power mode off) or between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} ms, got {}",
                    self.battery_interval_ms
                ),
            });
        }
        check_range(&mut errors, "process_count", self.process_count, 1, crate::processes::MAX_COUNT as u64, "");
        check_range(&mut errors, "buffer_span_ms", self.buffer_span_ms, 1, MAX_BUFFER_MS, " ms");
        if let Some(n) = self.buffer_packet_size {
            check_range(&mut errors, "buffer_packet_size", n, 1, MAX_PACKET_SIZE, " rows");
        }
        if let Some(t) = self.buffer_timeout_ms {
            check_range(&mut errors, "buffer_timeout_ms", t, 1, MAX_BUFFER_MS, " ms");
        }
        check_range(&mut errors, "shutdown_timeout_ms", self.shutdown_timeout_ms, 0, MAX_SHUTDOWN_TIMEOUT_MS, " ms");
        check_range(&mut errors, "outbox_max_kb", self.outbox_max_kb, MIN_OUTBOX_KB, MAX_OUTBOX_KB, " KiB");
        check_range(&mut errors, "outbox_max_age_hours", self.outbox_max_age_hours, 1, MAX_OUTBOX_AGE_HOURS, " hours");
        let (lo, hi) = STALL_TIMEOUT_MS;
        check_range(&mut errors, "stall_timeout_ms", self.stall_timeout_ms, lo, hi, " ms");
        let (lo, hi) = RECORD_MAX_KB;
        check_range(&mut errors, "record_max_kb", self.record_max_kb, lo, hi, " KiB");
        if !(1..=MAX_PARTITIONS).contains(&self.topic_partitions) {
            errors.push(range_error("topic_partitions", 1, MAX_PARTITIONS, self.topic_partitions, ""));
        }
        if let Err(e) = check_topic(&self.topic) {
            errors.push(e);
        }
        if let Some(b) = &self.broker
            && let Err(e) = check_broker(b)
        {
            errors.push(e);
        }
        let portal_url = self.portal_url.clone().unwrap_or_else(|| DEFAULT_PORTAL_URL.into());
        if let Err(e) = check_portal_url(&portal_url) {
            errors.push(e);
        }
        if let Some(Err(e)) = self.workspace_id.as_deref().map(check_workspace_id) {
            errors.push(e);
        }
        let stream_id = match StreamId::parse(self.stream_id.as_deref().unwrap_or(&machine.default_stream_id)) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(FieldError { field: "stream_id", message: e.to_string() });
                None
            }
        };
        let stream_name = self.stream_name.clone().unwrap_or_else(|| format!("CPU Load - {}", machine.hostname));
        if let Err(e) = check_stream_name(&stream_name) {
            errors.push(FieldError { field: "stream_name", message: e.to_string() });
        }
        let sasl = self.check_sasl(&mut errors);
        if let Some(ca) = &self.ssl_ca_location
            && !matches!(self.security_protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
        {
            errors.push(FieldError {
                field: "ssl_ca_location",
                message: format!(
                    "`ssl_ca_location` ({}) needs `security_protocol` ssl or sasl_ssl, got {}",
                    ca.display(),
                    self.security_protocol.as_librdkafka()
                ),
            });
        }
        let metrics = parse_list(&self.metrics).unwrap_or_else(|message| {
            errors.push(FieldError { field: "metrics", message: format!("`metrics`: {message}") });
            Vec::new()
        });
        for name in &self.network_interfaces {
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                errors.push(FieldError {
                    field: "network_interfaces",
                    message: format!(
                        "`network_interfaces`: {name:?} is not an interface name (1-64 characters, no spaces)"
                    ),
                });
            }
        }
        if self.tags.len() > MAX_TAGS {
            errors.push(FieldError {
                field: "tags",
                message: format!("`tags`: at most {MAX_TAGS} tags, got {}", self.tags.len()),
            });
        }
        for (k, v) in &self.tags {
            if let Err(message) = check_tag(k, v) {
                errors.push(FieldError { field: "tags", message });
            }
        }
        if self.format == RecordFormat::Json {
            for name in self.tags.keys() {
                if JSON_ROW_FIELDS.contains(&name.as_str()) || crate::metrics::is_parameter_id(name) {
                    errors.push(FieldError {
                        field: "tags",
                        message: format!(
                            "`tags`: the tag {name:?} would collide with a field of the JSON rows (`timestamp`, `host` and the parameter ids such as `CPU_Load`): rename the tag"
                        ),
                    });
                }
            }
        }
        let row_bytes = one_row_bytes(&self.tags);
        if row_bytes as u64 > self.record_max_kb * 1024 {
            errors.push(FieldError {
                field: "tags",
                message: format!(
                    "`tags`: one row with these tags takes about {} KiB in a record, more than `record_max_kb` ({} KiB): \
                     shorten or remove tags, or raise `record_max_kb`",
                    row_bytes.div_ceil(1024),
                    self.record_max_kb
                ),
            });
        }
        check_range(&mut errors, "high_cpu_percent", self.high_cpu_percent, 1, 100, " %");
        check_range(&mut errors, "high_cpu_seconds", self.high_cpu_seconds, 1, 86_400, " s");
        match (errors.is_empty(), stream_id) {
            (true, Some(stream_id)) => Ok(Checked {
                broker: self.broker.clone(),
                portal_url: if portal_url.ends_with('/') { portal_url } else { format!("{portal_url}/") },
                workspace_id: self.workspace_id.clone(),
                tls_verify_hostname: self.tls_verify_hostname,
                topic: self.topic.clone(),
                format: self.format,
                topic_partitions: self.topic_partitions,
                stream_id,
                stream_name,
                interval: Duration::from_millis(self.interval_ms),
                battery_interval: (self.battery_interval_ms > 0)
                    .then(|| Duration::from_millis(self.battery_interval_ms)),
                process_count: self.process_count as usize,
                buffer: BufferConfig {
                    time_span: Some(Duration::from_millis(self.buffer_span_ms)),
                    packet_size: self.buffer_packet_size.map(|n| n as usize),
                    timeout: self.buffer_timeout_ms.map(Duration::from_millis),
                },
                shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
                outbox: OutboxLimits {
                    max_bytes: self.outbox_max_kb * 1024,
                    max_age: Duration::from_secs(self.outbox_max_age_hours * 3600),
                },
                stall_timeout: Duration::from_millis(self.stall_timeout_ms),
                record_max_bytes: (self.record_max_kb * 1024) as usize,
                log_level: self.log_level,
                security: Security {
                    protocol: self.security_protocol,
                    sasl,
                    ssl_ca_location: self.ssl_ca_location.clone(),
                },
                metrics,
                network_interfaces: self.network_interfaces.clone(),
                tags: self.tags.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))).collect(),
                notify: NotifyConfig {
                    high_cpu: self.notify_high_cpu,
                    high_cpu_percent: self.high_cpu_percent as f64,
                    high_cpu_for: Duration::from_secs(self.high_cpu_seconds),
                    stopped: self.notify_stopped,
                    token_rejected: self.notify_token_rejected,
                },
            }),
            _ => Err(SettingsErrors(errors)),
        }
    }

    fn check_sasl(&self, errors: &mut Vec<FieldError>) -> Option<(SaslMechanism, String)> {
        let protocol = self.security_protocol.as_librdkafka();
        if !self.security_protocol.uses_sasl() {
            for (field, set) in
                [("sasl_mechanism", self.sasl_mechanism.is_some()), ("sasl_username", self.sasl_username.is_some())]
            {
                if set {
                    errors.push(FieldError {
                        field,
                        message: format!(
                            "`{field}` needs `security_protocol` sasl_plaintext or sasl_ssl, got {protocol}"
                        ),
                    });
                }
            }
            return None;
        }
        let mechanism = self.sasl_mechanism.or_else(|| {
            errors.push(FieldError {
                field: "sasl_mechanism",
                message: format!(
                    "`sasl_mechanism` is required with `security_protocol` {protocol}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ),
            });
            None
        });
        let username = match self.sasl_username.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(u.to_owned()),
            _ => {
                errors.push(FieldError {
                    field: "sasl_username",
                    message: format!("`sasl_username` is required with `security_protocol` {protocol}"),
                });
                None
            }
        };
        mechanism.zip(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MachineFacts {
        MachineFacts { default_stream_id: "c0ffee00-0000-5000-8000-000000000000".into(), hostname: "web-1".into() }
    }

    fn errors(s: &Settings) -> Vec<String> {
        s.check(&machine()).unwrap_err().0.into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn defaults_are_the_quickstarts() {
        let c = Settings::default().check(&machine()).unwrap();
        assert_eq!(c.topic, "cpu-load");
        assert_eq!(c.stream_name, "CPU Load - web-1");
        assert_eq!(c.stream_id.as_str(), "c0ffee00-0000-5000-8000-000000000000");
        assert_eq!(c.interval, Duration::from_millis(1000));
        assert_eq!(c.buffer.time_span, Some(Duration::from_millis(100)));
        assert_eq!(c.security.protocol, SecurityProtocol::Plaintext);
        assert_eq!(c.outbox, OutboxLimits { max_bytes: 256 << 20, max_age: Duration::from_secs(7 * 24 * 3600) });
        assert_eq!(c.outbox, OutboxLimits::default());
        assert_eq!(c.stall_timeout, Duration::from_secs(60));
    }

    #[test]
    fn every_out_of_range_number_is_reported_with_field_and_range() {
        let s = Settings {
            interval_ms: MIN_INTERVAL_MS - 1,
            buffer_span_ms: 0,
            buffer_packet_size: Some(0),
            buffer_timeout_ms: Some(60_001),
            shutdown_timeout_ms: 300_001,
            outbox_max_kb: 9,
            outbox_max_age_hours: 0,
            stall_timeout_ms: 999,
            topic_partitions: -1,
            ..Default::default()
        };
        let interval =
            format!("`interval_ms` must be between {MIN_INTERVAL_MS} and 3600000 ms, got {}", MIN_INTERVAL_MS - 1);
        assert_eq!(
            errors(&s),
            [
                interval.as_str(),
                "`buffer_span_ms` must be between 1 and 60000 ms, got 0",
                "`buffer_packet_size` must be between 1 and 10000 rows, got 0",
                "`buffer_timeout_ms` must be between 1 and 60000 ms, got 60001",
                "`shutdown_timeout_ms` must be between 0 and 300000 ms, got 300001",
                "`outbox_max_kb` must be between 10 and 16777216 KiB, got 9",
                "`outbox_max_age_hours` must be between 1 and 8784 hours, got 0",
                "`stall_timeout_ms` must be between 1000 and 3600000 ms, got 999",
                "`topic_partitions` must be between 1 and 1000, got -1",
            ]
        );
    }

    #[test]
    fn limits_themselves_are_allowed() {
        for (lo, hi) in [(MIN_INTERVAL_MS, MAX_INTERVAL_MS)] {
            for v in [lo, hi] {
                assert!(Settings { interval_ms: v, ..Default::default() }.check(&machine()).is_ok());
            }
        }
        assert!(Settings { buffer_span_ms: MAX_BUFFER_MS, ..Default::default() }.check(&machine()).is_ok());
    }

    #[test]
    fn topic_broker_and_identity_are_checked() {
        let s = Settings {
            topic: "cpu load".into(),
            broker: Some("localhost".into()),
            stream_id: Some("a/b".into()),
            stream_name: Some(String::new()),
            ..Default::default()
        };
        let e = errors(&s);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("`topic` must be 1 to 249 characters"));
        assert!(e[1].starts_with("`broker` must be `host:port"), "{}", e[1]);
        assert!(e[2].starts_with("`stream_id` must not contain"));
        assert_eq!(e[3], "`stream_name` must not be empty");
        for good in ["127.0.0.1:9092", "a:1,b:2", "[::1]:9092"] {
            assert!(check_broker(good).is_ok(), "{good}");
        }
        for bad in ["", "h:0", "h:65536", ":9092", "h:x", "a:1,"] {
            assert!(check_broker(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn portal_url_and_workspace_are_checked() {
        let c = Settings { portal_url: Some("http://127.0.0.1:8080".into()), ..Default::default() }
            .check(&machine())
            .unwrap();
        assert_eq!(c.portal_url, "http://127.0.0.1:8080/", "a trailing slash keeps relative paths under the base");
        assert_eq!(Settings::default().check(&machine()).unwrap().portal_url, DEFAULT_PORTAL_URL);
        let s =
            Settings { portal_url: Some("ftp://x".into()), workspace_id: Some("ws 1".into()), ..Default::default() };
        let e = errors(&s);
        assert!(e[0].starts_with("`portal_url` must be an https:// URL"), "{e:?}");
        assert!(e[1].starts_with("`workspace_id` must be 1 to 100"), "{e:?}");
    }

    #[test]
    fn the_token_never_goes_to_another_host_over_plain_http() {
        for ok in [
            "https://portal-api.example.com/",
            "http://127.0.0.1:8080",
            "http://127.8.9.10/",
            "http://localhost:1/x",
            "http://LOCALHOST",
            "http://[::1]:8080/",
            "https://host:443/p?q",
        ] {
            assert!(check_portal_url(ok).is_ok(), "{ok}");
        }
        for (bad, host) in [
            ("http://portal-api.platform.quix.io/", "portal-api.platform.quix.io"),
            ("http://10.0.0.1:8080/", "10.0.0.1"),
            ("http://127.0.0.1.evil.example/", "127.0.0.1.evil.example"),
            ("http://[::2]/", "[::2]"),
        ] {
            let e = check_portal_url(bad).unwrap_err().message;
            assert!(e.starts_with("`portal_url` must use https://"), "{bad}: {e}");
            assert!(e.contains(&format!("in clear text to {host} ")), "{bad}: {e}");
        }
        assert!(check_portal_url("https:///path").unwrap_err().message.contains("has no host"));
        // What parsers read differently is refused outright.
        for tricky in ["http://evil.example\\@127.0.0.1/", "http://localhost@evil.example/", "https://user@host/"] {
            let e = check_portal_url(tricky).unwrap_err().message;
            assert!(e.contains("user info"), "{tricky}: {e}");
        }
    }

    #[test]
    fn a_row_too_large_for_one_record_is_refused_naming_the_fields() {
        let huge: BTreeMap<String, String> =
            (0..MAX_TAGS).map(|i| (format!("tag_{i:02}_{}", "n".repeat(50)), "\"".repeat(256))).collect();
        // 32 values of 256 quotes, each escaped to two bytes: about 17 KiB of tags in every row.
        let s = Settings { tags: huge.clone(), record_max_kb: 16, ..Default::default() };
        let e = errors(&s);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("`tags`: one row with these tags takes about 27 KiB"), "{e:?}");
        assert!(e[0].contains("`record_max_kb` (16 KiB)"), "{e:?}");
        let c = Settings { tags: huge, record_max_kb: 64, ..Default::default() }.check(&machine()).unwrap();
        assert_eq!(c.record_max_bytes, 64 * 1024);
        assert_eq!(Settings::default().check(&machine()).unwrap().record_max_bytes, 900 * 1024);
        let e = errors(&Settings { record_max_kb: 977, ..Default::default() });
        assert_eq!(e, ["`record_max_kb` must be between 16 and 976 KiB, got 977"]);
    }

    #[test]
    fn sasl_needs_mechanism_and_user_and_only_with_a_sasl_protocol() {
        let s = Settings { security_protocol: SecurityProtocol::SaslSsl, ..Default::default() };
        let e = errors(&s);
        assert!(e[0].starts_with("`sasl_mechanism` is required with `security_protocol` sasl_ssl"));
        assert_eq!(e[1], "`sasl_username` is required with `security_protocol` sasl_ssl");
        let s = Settings {
            sasl_mechanism: Some(SaslMechanism::Plain),
            ssl_ca_location: Some("/ca.pem".into()),
            ..Default::default()
        };
        let e = errors(&s);
        assert_eq!(e[0], "`sasl_mechanism` needs `security_protocol` sasl_plaintext or sasl_ssl, got plaintext");
        assert_eq!(e[1], "`ssl_ca_location` (/ca.pem) needs `security_protocol` ssl or sasl_ssl, got plaintext");
        let s = Settings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("svc".into()),
            ..Default::default()
        };
        assert_eq!(s.check(&machine()).unwrap().security.sasl, Some((SaslMechanism::ScramSha512, "svc".into())));
    }

    #[test]
    fn metrics_tags_and_notifications_are_checked_per_field() {
        let c = Settings::default().check(&machine()).unwrap();
        assert_eq!(c.metrics, [Metric::Cpu]);
        assert!(c.tags.is_empty());
        assert_eq!(c.notify, NotifyConfig::default());
        let s = Settings {
            metrics: vec!["memory".into(), "gpu".into()],
            network_interfaces: vec!["eth 0".into()],
            tags: [("site".into(), "lab".into()), ("bad name".into(), "x".into()), ("empty".into(), String::new())]
                .into(),
            high_cpu_percent: 101,
            high_cpu_seconds: 0,
            process_count: 11,
            battery_interval_ms: 50,
            ..Default::default()
        };
        let e = errors(&s);
        assert_eq!(e.len(), 8, "{e:#?}");
        for field in [
            "`process_count` must be between 1 and 10, got 11",
            "`battery_interval_ms` must be 0 (low-power mode off) or between",
            "`high_cpu_percent`",
            "`high_cpu_seconds`",
            "`metrics`: unknown metric \"gpu\"",
            "`network_interfaces`",
            "\"bad name\"",
            "\"empty\"",
        ] {
            assert!(e.iter().any(|m| m.contains(field)), "{field} in {e:#?}");
        }
        let s = Settings {
            metrics: vec!["all".into()],
            tags: [("site".into(), "lab".into())].into(),
            high_cpu_percent: 50,
            ..Default::default()
        };
        let c = s.check(&machine()).unwrap();
        assert_eq!(c.metrics, Metric::ALL[..Metric::ALL.len() - 1], "all but processes");
        assert_eq!((c.process_count, c.battery_interval), (3, Some(Duration::from_secs(5))), "defaults");
        assert_eq!(c.tags, [(Arc::from("site"), Arc::from("lab"))]);
        assert_eq!(c.notify.high_cpu_percent, 50.0);
    }

    #[test]
    fn log_levels_read_and_rise() {
        assert_eq!(toml::from_str::<Settings>("log_level = \"debug\"").unwrap().log_level, LogLevel::Debug);
        let e = toml::from_str::<Settings>("log_level = \"loud\"").unwrap_err().to_string();
        assert!(e.contains("log_level") || e.contains("unknown variant"), "{e}");
        assert_eq!(LogLevel::Info.raised(1), LogLevel::Debug);
        assert_eq!(LogLevel::Warn.raised(9), LogLevel::Trace);
        assert_eq!(LogLevel::parse("warn"), Some(LogLevel::Warn));
        assert_eq!(Settings::default().check(&machine()).unwrap().log_level, LogLevel::Info);
    }

    #[test]
    fn json_rows_refuse_tags_named_like_their_own_fields() {
        let tags = |names: &[&str]| names.iter().map(|n| (n.to_string(), "x".to_owned())).collect();
        let s = Settings {
            format: RecordFormat::Json,
            tags: tags(&["host", "timestamp", "CPU_Load", "Temp_x", "site"]),
            ..Default::default()
        };
        let e = errors(&s);
        assert_eq!(e.len(), 4, "{e:#?}");
        for name in ["\"host\"", "\"timestamp\"", "\"CPU_Load\"", "\"Temp_x\""] {
            assert!(e.iter().any(|m| m.contains(name) && m.contains("collide")), "{name}: {e:#?}");
        }
        // The envelope keeps tags apart from parameters: no collision there.
        assert!(Settings { tags: tags(&["host", "CPU_Load"]), ..Default::default() }.check(&machine()).is_ok());
        let c = Settings { format: RecordFormat::Json, ..Default::default() }.check(&machine()).unwrap();
        assert_eq!(c.format, RecordFormat::Json);
        assert_eq!(toml::from_str::<Settings>("format = \"json\"").unwrap().format, RecordFormat::Json);
        assert!(toml::from_str::<Settings>("format = \"xml\"").is_err());
    }

    #[test]
    fn tag_text_is_name_value_pairs() {
        let t = parse_tags(" site = lab , rack=3\nrole=db ").unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            [("rack", "3"), ("role", "db"), ("site", "lab")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(parse_tags("").unwrap().is_empty());
        assert!(parse_tags("site").unwrap_err().contains("`name=value`"));
        assert!(parse_tags("a=1,a=2").unwrap_err().contains("twice"));
        assert!(parse_tags("si te=lab").unwrap_err().contains("tag name"));
    }

    #[test]
    fn settings_with_tags_survive_a_round_trip_through_toml() {
        let s = Settings {
            metrics: vec!["memory".into()],
            tags: [("site".into(), "lab".into())].into(),
            ..Default::default()
        };
        let text = toml::to_string_pretty(&s).unwrap();
        assert!(text.contains("[tags]"), "{text}");
        assert_eq!(toml::from_str::<Settings>(&text).unwrap(), s);
    }

    #[test]
    fn errors_display_as_one_list() {
        let s = Settings { interval_ms: 1, topic: String::new(), ..Default::default() };
        let text = s.check(&machine()).unwrap_err().to_string();
        assert!(text.starts_with("invalid settings:\n  `interval_ms`"), "{text}");
        assert!(text.contains("\n  `topic`"), "{text}");
    }
}
