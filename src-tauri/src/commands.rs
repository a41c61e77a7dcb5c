//! The settings window's commands. Each validates its input and calls the agent, the token
//! store or the autostart plugin; errors are `{kind, message, fields}` so the page never matches
//! strings. No command returns the token: the page learns only whether one is stored and where.

use std::sync::{Arc, Mutex, RwLock};

use hostpulse_agent::agent::{AgentConfig, AgentHandle};
use hostpulse_agent::diagnose::{self, Step};
use hostpulse_agent::fsutil;
use hostpulse_agent::portal::PortalOptions;
use hostpulse_agent::publisher::KafkaSettings;
use hostpulse_agent::quix::{Credential, QuixConnector};
use hostpulse_agent::token::{self, SecretStore, TokenSource};
use hostpulse_core::history::Series;
use hostpulse_core::metrics::{self, Metric};
use hostpulse_core::notify::Notifier;
use hostpulse_core::sample::CPU_LOAD;
use hostpulse_core::secret::Secret;
use hostpulse_core::settings::{Checked, MachineFacts, Settings, parse_tags};
use hostpulse_core::status::{PublisherState, Status};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt as _;

/// Everything the commands share.
pub struct App {
    /// The running agent.
    pub agent: AgentHandle,
    /// Where the token is kept.
    pub store: Arc<dyn SecretStore>,
    /// The settings file and its current content.
    pub settings_path: std::path::PathBuf,
    /// The settings as saved (or defaults).
    pub settings: Mutex<Settings>,
    /// Why the settings file could not be read at start, if it could not (it is kept as is).
    pub settings_problem: Mutex<Option<String>>,
    /// Facts for defaults.
    pub facts: MachineFacts,
    /// Where the workspace CA goes.
    pub data_dir: std::path::PathBuf,
    /// What the agent reconnects with; updated when connection settings change.
    pub connector: Arc<RwLock<QuixConnector>>,
    /// Decides on notifications; its rules change with the settings.
    pub notifier: Arc<Mutex<Notifier>>,
    /// A Portal URL saved while a token was stored: the token is not sent there until the user
    /// confirms (or enters a token). Kept only in memory; the file keeps the confirmed URL.
    pub pending_portal: Mutex<Option<PendingPortal>>,
}

/// A new Portal URL waiting for the user's word before the stored token goes there.
#[derive(Debug, Clone)]
pub struct PendingPortal {
    /// The `portal_url` setting (`None`: the default Portal).
    setting: Option<String>,
    /// The URL itself, for people.
    url: String,
}

/// An error the page can act on.
#[derive(Debug, Serialize)]
pub struct CommandError {
    /// `invalid`, `credential_store`, `connect`, `unconfigured`, `settings_file`, `autostart`.
    pub kind: &'static str,
    /// For people.
    pub message: String,
    /// Per-field problems (`invalid`).
    pub fields: Vec<FieldProblem>,
}

/// One field's problem.
#[derive(Debug, Serialize)]
pub struct FieldProblem {
    /// The input's name (`stream_name`, `token`, ...).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl CommandError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        CommandError { kind, message: message.into(), fields: Vec::new() }
    }

    fn invalid(fields: Vec<FieldProblem>) -> Self {
        let message = fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
        CommandError { kind: "invalid", message, fields }
    }
}

type Result<T> = std::result::Result<T, CommandError>;

/// The page's whole state.
#[derive(Debug, Serialize)]
pub struct StateView {
    settings: SettingsView,
    token: TokenView,
    status: StatusView,
    /// A Portal URL the stored token has not been sent to yet: the page asks to confirm.
    portal_pending: Option<String>,
    autostart: bool,
    settings_problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct SettingsView {
    stream_name: String,
    buffer_span_ms: u64,
    topic: String,
    interval_ms: u64,
    portal_url: String,
    workspace_id: String,
    stream_id: String,
    tls_verify_hostname: bool,
    default_stream_name: String,
    default_stream_id: String,
    metrics: Vec<MetricView>,
    network_interfaces: String,
    tags: String,
    notify_high_cpu: bool,
    high_cpu_percent: u64,
    high_cpu_seconds: u64,
    notify_stopped: bool,
    notify_token_rejected: bool,
}

#[derive(Debug, Serialize)]
struct MetricView {
    id: &'static str,
    label: &'static str,
    on: bool,
}

#[derive(Debug, Serialize)]
struct TokenView {
    stored: bool,
    source: Option<TokenSource>,
    location: String,
    problem: Option<String>,
}

/// The status as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    state: &'static str,
    last_value: Option<f64>,
    samples: u64,
    sent: u64,
    acknowledged: u64,
    pending: u64,
    failed: u64,
    dropped: u64,
    /// When the next connection attempt starts (ms since the Unix epoch), while retrying.
    next_try_ms: Option<i64>,
    last_error: Option<String>,
}

impl From<&Status> for StatusView {
    fn from(s: &Status) -> Self {
        StatusView {
            state: match s.state {
                PublisherState::Unconfigured => "unconfigured",
                PublisherState::Connecting => "connecting",
                PublisherState::Publishing => "publishing",
                PublisherState::Paused => "paused",
                PublisherState::Stopping => "stopping",
                PublisherState::Backoff { .. } => "retrying",
                PublisherState::Failed { .. } => "error",
            },
            last_value: s.last_value,
            samples: s.samples,
            sent: s.records_sent,
            acknowledged: s.records_acknowledged,
            pending: s.records_pending(),
            failed: s.records_failed,
            dropped: s.records_dropped,
            next_try_ms: match s.state {
                PublisherState::Backoff { next_try_ms, .. } => Some(next_try_ms),
                PublisherState::Failed { next_try_ms, .. } => next_try_ms,
                _ => None,
            },
            last_error: match &s.state {
                PublisherState::Backoff { reason, .. } | PublisherState::Failed { reason, .. } => Some(reason.clone()),
                _ => s.last_error.clone(),
            },
        }
    }
}

/// What the page sends on Save: numbers as text, so that bad text is reported per field.
#[derive(Debug, Deserialize)]
pub struct SettingsInput {
    stream_name: String,
    buffer_span_ms: String,
    topic: String,
    interval_ms: String,
    portal_url: String,
    workspace_id: String,
    stream_id: String,
    tls_verify_hostname: bool,
    /// Ids of the metrics switched on.
    metrics: Vec<String>,
    /// Interface names separated by commas or spaces.
    network_interfaces: String,
    /// `name=value` pairs separated by commas or new lines.
    tags: String,
    notify_high_cpu: bool,
    high_cpu_percent: String,
    high_cpu_seconds: String,
    notify_stopped: bool,
    notify_token_rejected: bool,
}

impl App {
    fn checked(&self) -> std::result::Result<Checked, String> {
        self.settings.lock().expect("not poisoned").check(&self.facts).map_err(|e| e.to_string())
    }

    async fn view(&self, app: &AppHandle) -> StateView {
        let s = self.settings.lock().expect("not poisoned").clone();
        let token = match token::resolve_blocking(self.store.clone()).await {
            Ok(t) => TokenView {
                stored: t.is_some(),
                source: t.map(|(_, source)| source),
                location: self.store.describe(),
                problem: None,
            },
            Err(e) => {
                TokenView { stored: false, source: None, location: self.store.describe(), problem: Some(e.to_string()) }
            }
        };
        StateView {
            settings: SettingsView {
                stream_name: s.stream_name.clone().unwrap_or_default(),
                buffer_span_ms: s.buffer_span_ms,
                topic: s.topic.clone(),
                interval_ms: s.interval_ms,
                portal_url: s.portal_url.clone().unwrap_or_default(),
                workspace_id: s.workspace_id.clone().unwrap_or_default(),
                stream_id: s.stream_id.clone().unwrap_or_default(),
                tls_verify_hostname: s.tls_verify_hostname,
                default_stream_name: format!("CPU Load - {}", self.facts.hostname),
                default_stream_id: self.facts.default_stream_id.clone(),
                metrics: {
                    let on = metrics::parse_list(&s.metrics).unwrap_or_default();
                    Metric::ALL
                        .into_iter()
                        .map(|m| MetricView { id: m.id(), label: m.label(), on: on.contains(&m) })
                        .collect()
                },
                network_interfaces: s.network_interfaces.join(", "),
                tags: s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
                notify_high_cpu: s.notify_high_cpu,
                high_cpu_percent: s.high_cpu_percent,
                high_cpu_seconds: s.high_cpu_seconds,
                notify_stopped: s.notify_stopped,
                notify_token_rejected: s.notify_token_rejected,
            },
            token,
            status: StatusView::from(&self.agent.status()),
            portal_pending: self.pending_portal.lock().expect("not poisoned").as_ref().map(|p| p.url.clone()),
            autostart: app.autolaunch().is_enabled().unwrap_or(false),
            settings_problem: self.settings_problem.lock().expect("not poisoned").clone(),
        }
    }

    /// Reconnects with the current token, if there is one (after a token or connection change).
    async fn reconnect(&self) -> Result<()> {
        let Some((token, source)) = token::resolve_blocking(self.store.clone())
            .await
            .map_err(|e| CommandError::new("credential_store", e.to_string()))?
        else {
            return Ok(());
        };
        self.agent
            .replace_token(Credential { token, source })
            .await
            .map_err(|e| CommandError::new("connect", e.to_string()))
    }
}

/// The connector for `c` (Quix mode).
pub fn connector_for(c: &Checked, data_dir: &std::path::Path) -> QuixConnector {
    QuixConnector {
        portal_url: c.portal_url.clone(),
        workspace_id: c.workspace_id.clone(),
        topic: c.topic.clone(),
        data_dir: data_dir.to_path_buf(),
        verify_hostname: c.tls_verify_hostname,
        options: PortalOptions::default(),
    }
}

#[tauri::command]
pub async fn get_state(app: AppHandle, state: State<'_, App>) -> Result<StateView> {
    Ok(state.view(&app).await)
}

fn parse_number(field: &str, unit: &str, text: &str, problems: &mut Vec<FieldProblem>) -> u64 {
    match text.trim().parse::<u64>() {
        Ok(v) => v,
        Err(_) => {
            problems.push(FieldProblem {
                field: field.into(),
                message: format!("`{field}` must be a whole number of {unit}, got {:?}", text.trim()),
            });
            0
        }
    }
}

fn optional(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[tauri::command]
pub async fn save_settings(app: AppHandle, state: State<'_, App>, input: SettingsInput) -> Result<StateView> {
    let mut problems = Vec::new();
    let buffer_span_ms = parse_number("buffer_span_ms", "milliseconds", &input.buffer_span_ms, &mut problems);
    let interval_ms = parse_number("interval_ms", "milliseconds", &input.interval_ms, &mut problems);
    let high_cpu_percent = parse_number("high_cpu_percent", "percent", &input.high_cpu_percent, &mut problems);
    let high_cpu_seconds = parse_number("high_cpu_seconds", "seconds", &input.high_cpu_seconds, &mut problems);
    let old = state.settings.lock().expect("not poisoned").clone();
    let mut new = old.clone();
    new.stream_name = optional(&input.stream_name);
    new.topic = input.topic.trim().to_owned();
    new.portal_url = optional(&input.portal_url);
    new.workspace_id = optional(&input.workspace_id);
    new.stream_id = optional(&input.stream_id);
    new.tls_verify_hostname = input.tls_verify_hostname;
    new.metrics = input.metrics.clone();
    new.network_interfaces = input
        .network_interfaces
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    match parse_tags(&input.tags) {
        Ok(tags) => new.tags = tags,
        Err(message) => problems.push(FieldProblem { field: "tags".into(), message }),
    }
    new.notify_high_cpu = input.notify_high_cpu;
    new.notify_stopped = input.notify_stopped;
    new.notify_token_rejected = input.notify_token_rejected;
    for (field, value, target) in [
        ("high_cpu_percent", high_cpu_percent, &mut new.high_cpu_percent),
        ("high_cpu_seconds", high_cpu_seconds, &mut new.high_cpu_seconds),
    ] {
        if problems.iter().all(|p| p.field != field) {
            *target = value;
        }
    }
    if problems.iter().all(|p| p.field != "buffer_span_ms") {
        new.buffer_span_ms = buffer_span_ms;
    }
    if problems.iter().all(|p| p.field != "interval_ms") {
        new.interval_ms = interval_ms;
    }
    let checked = new.check(&state.facts);
    if let Err(e) = &checked {
        problems.extend(e.0.iter().map(|f| FieldProblem { field: f.field.into(), message: f.message.clone() }));
    }
    let mut checked = match checked {
        Ok(c) if problems.is_empty() => c,
        _ => return Err(CommandError::invalid(problems)),
    };
    // A new Portal URL gets the stored token only once the user says so (or enters a token):
    // until then the file and the connection keep the URL the token was used with.
    if new.portal_url == old.portal_url {
        *state.pending_portal.lock().expect("not poisoned") = None;
    } else if new.broker.is_none() && matches!(token::resolve_blocking(state.store.clone()).await, Ok(Some(_))) {
        tracing::info!(portal = %checked.portal_url, "new Portal URL: waiting for confirmation before the token goes there");
        *state.pending_portal.lock().expect("not poisoned") =
            Some(PendingPortal { setting: new.portal_url.clone(), url: checked.portal_url.clone() });
        new.portal_url = old.portal_url.clone();
        checked = new.check(&state.facts).map_err(|e| CommandError::new("invalid", e.to_string()))?;
    }
    write_settings(&state, &new)?;
    *state.settings.lock().expect("not poisoned") = new.clone();
    state.agent.apply(AgentConfig::from_checked(&checked, &state.facts.hostname)).await;
    state.notifier.lock().expect("not poisoned").set_config(checked.notify);
    let connection_changed = (&old.topic, &old.portal_url, &old.workspace_id, old.tls_verify_hostname)
        != (&new.topic, &new.portal_url, &new.workspace_id, new.tls_verify_hostname);
    if connection_changed {
        *state.connector.write().expect("not poisoned") = connector_for(&checked, &state.data_dir);
        state.reconnect().await?;
    }
    Ok(state.view(&app).await)
}

/// Sends the stored token to the Portal URL that waited for confirmation: the URL goes into the
/// file and the connection, and the agent connects there.
#[tauri::command]
pub async fn confirm_portal(app: AppHandle, state: State<'_, App>) -> Result<StateView> {
    if state.adopt_pending_portal()? {
        state.reconnect().await?;
    }
    Ok(state.view(&app).await)
}

impl App {
    /// Makes a Portal URL waiting for confirmation the one in force (file and connection);
    /// `false` when none was waiting.
    fn adopt_pending_portal(&self) -> Result<bool> {
        let Some(pending) = self.pending_portal.lock().expect("not poisoned").take() else { return Ok(false) };
        let mut new = self.settings.lock().expect("not poisoned").clone();
        new.portal_url = pending.setting;
        let checked = new.check(&self.facts).map_err(|e| CommandError::new("invalid", e.to_string()))?;
        write_settings(self, &new)?;
        *self.settings.lock().expect("not poisoned") = new;
        *self.connector.write().expect("not poisoned") = connector_for(&checked, &self.data_dir);
        tracing::info!(portal = %pending.url, "Portal URL confirmed");
        Ok(true)
    }
}

/// Writes the settings file atomically. A file that could not be read at start is kept next to
/// it (`settings.toml.unreadable`) before it is replaced, so nothing the user wrote is lost.
fn write_settings(state: &App, settings: &Settings) -> Result<()> {
    let fail =
        |e: String| CommandError::new("settings_file", format!("cannot save {}: {e}", state.settings_path.display()));
    let text = toml::to_string_pretty(settings).map_err(|e| fail(e.to_string()))?;
    if let Some(dir) = state.settings_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let mut problem = state.settings_problem.lock().expect("not poisoned");
    if problem.is_some() && state.settings_path.exists() {
        let keep = state.settings_path.with_extension("toml.unreadable");
        std::fs::copy(&state.settings_path, &keep).map_err(|e| fail(e.to_string()))?;
        tracing::warn!("the unreadable settings file was kept as {}", keep.display());
    }
    fsutil::write_private(&state.settings_path, text.as_bytes()).map_err(|e| fail(e.to_string()))?;
    *problem = None;
    Ok(())
}

#[tauri::command]
pub async fn set_token(app: AppHandle, state: State<'_, App>, token: String) -> Result<StateView> {
    let secret = Secret::token(token)
        .map_err(|e| CommandError::invalid(vec![FieldProblem { field: "token".into(), message: e.to_string() }]))?;
    store_blocking(&state.store, Some(secret.clone())).await?;
    // A token entered now is meant for the Portal URL on the page.
    state.adopt_pending_portal()?;
    state
        .agent
        .replace_token(Credential { token: secret, source: TokenSource::CredentialStore })
        .await
        .map_err(|e| CommandError::new("connect", e.to_string()))?;
    Ok(state.view(&app).await)
}

/// Stores `token` (or, with `None`, removes the stored one) off the async worker threads: the
/// credential store may block, asking the user to unlock it.
async fn store_blocking(store: &Arc<dyn SecretStore>, token: Option<Secret>) -> Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || match token {
        Some(t) => store.set(&t),
        None => store.clear().map(|_| ()),
    })
    .await
    .map_err(|e| CommandError::new("credential_store", e.to_string()))?
    .map_err(|e| CommandError::new("credential_store", e.to_string()))
}

#[tauri::command]
pub async fn remove_token(app: AppHandle, state: State<'_, App>) -> Result<StateView> {
    store_blocking(&state.store, None).await?;
    *state.pending_portal.lock().expect("not poisoned") = None;
    state.agent.disconnect().await;
    Ok(state.view(&app).await)
}

#[tauri::command]
pub async fn set_publishing(app: AppHandle, state: State<'_, App>, on: bool) -> Result<StateView> {
    if matches!(state.agent.status().state, PublisherState::Unconfigured) {
        return Err(CommandError::new("unconfigured", "save a streaming token first"));
    }
    state.agent.set_publishing(on).await;
    Ok(state.view(&app).await)
}

#[tauri::command]
pub async fn test_connection(state: State<'_, App>) -> Result<Vec<Step>> {
    let checked = state.checked().map_err(|e| CommandError::new("invalid", e))?;
    Ok(diagnose::run(diagnose::Inputs {
        checked: &checked,
        store: state.store.clone(),
        direct: checked.broker.as_deref().map(|b| KafkaSettings::direct(&checked, b)),
        data_dir: state.data_dir.clone(),
        options: PortalOptions::default(),
    })
    .await)
}

/// What the chart shows: the parameters published now and one parameter's last hour.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    parameters: Vec<ParameterView>,
    series: Series,
    interval_ms: u64,
}

#[derive(Debug, Serialize)]
struct ParameterView {
    id: String,
    name: String,
    unit: Option<String>,
    group: String,
}

/// The last hour of parameter `id` (default `CPU_Load`), from the agent's local history: kept
/// while offline too, with what became of each row.
#[tauri::command]
pub async fn get_history(state: State<'_, App>, id: Option<String>) -> Result<HistoryView> {
    let parameters: Vec<ParameterView> = state
        .agent
        .definitions()
        .into_iter()
        .map(|d| ParameterView {
            name: d.name.unwrap_or_else(|| d.id.clone()),
            id: d.id,
            unit: d.unit,
            group: d.location,
        })
        .collect();
    let id = id.filter(|id| parameters.iter().any(|p| &p.id == id)).unwrap_or_else(|| CPU_LOAD.to_owned());
    let interval_ms = state.settings.lock().expect("not poisoned").interval_ms;
    Ok(HistoryView { series: state.agent.history(&id), parameters, interval_ms })
}

#[tauri::command]
pub async fn set_autostart(app: AppHandle, on: bool) -> Result<bool> {
    let launcher = app.autolaunch();
    let r = if on { launcher.enable() } else { launcher.disable() };
    r.map_err(|e| CommandError::new("autostart", e.to_string()))?;
    launcher.is_enabled().map_err(|e| CommandError::new("autostart", e.to_string()))
}
