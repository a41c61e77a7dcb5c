//! The settings window's commands: each parses its input and calls the agent, the assembly
//! (settings, route), the token store or the autostart plugin. Errors are `{kind, message,
//! fields}` so the page never matches strings. No command returns the token: the page learns
//! only whether one is stored and where.

use std::sync::{Arc, Mutex};

use hostpulse_agent::agent::AgentHandle;
use hostpulse_agent::assembly::{Launch, Route, SwitchableConnector};
use hostpulse_agent::connector::Credential;
use hostpulse_agent::diagnose::{self, Step};
use hostpulse_agent::portal::PortalOptions;
use hostpulse_agent::processes::ProcessView;
use hostpulse_agent::settings_file;
use hostpulse_agent::token::{self, SecretStore, TokenSource};
use hostpulse_core::form::SettingsForm;
use hostpulse_core::history::Series;
use hostpulse_core::metrics::{self, Metric};
use hostpulse_core::notify::Notifier;
use hostpulse_core::processes::TopProcess;
use hostpulse_core::sample::CPU_LOAD;
use hostpulse_core::secret::Secret;
use hostpulse_core::settings::{FieldError, KNOWN_PORTALS, RecordFormat, Settings};
use hostpulse_core::status::{PublisherState, StatusView};
use serde::Serialize;
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt as _;

/// Everything the commands share.
pub struct App {
    /// The running agent.
    pub agent: AgentHandle,
    /// Where the token is kept.
    pub store: Arc<dyn SecretStore>,
    /// The settings (as the file holds them, and as the agent runs them) and where they live.
    pub launch: Mutex<Launch>,
    /// Why the settings file could not be read at start, if it could not (it is kept as is, and
    /// copied aside at the first Save).
    pub settings_problem: Mutex<Option<String>>,
    /// Why the outbox file could not be opened at start (records are then kept in memory until
    /// the app restarts): shown beside the settings problem, never cleared by a Save, and no
    /// reason to copy a readable settings file aside.
    pub outbox_problem: Option<String>,
    /// What the agent connects with; replaced when connection settings change.
    pub connector: SwitchableConnector,
    /// Decides on notifications; its rules change with the settings.
    pub notifier: Arc<Mutex<Notifier>>,
    /// A Portal URL saved while a token was stored: the token is not sent there until the user
    /// confirms (or enters a token). Kept only in memory; the file keeps the confirmed URL.
    pub pending_portal: Mutex<Option<PendingPortal>>,
    /// The log files and their level.
    pub logs: crate::logs::Logs,
    /// The process list the window shows (read only while the window asks for it).
    pub processes: ProcessView,
}

/// A new Portal URL waiting for the user's word before the stored token goes there.
#[derive(Debug, Clone)]
pub struct PendingPortal {
    /// The `portal_url` setting (`None`: the default Portal).
    setting: Option<String>,
    /// The URL itself, for people.
    url: String,
}

/// What kind of error a command returns (the page decides by it, never by the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Input that is not valid; `fields` says which.
    Invalid,
    /// The OS credential store failed.
    CredentialStore,
    /// Connecting with the token failed.
    Connect,
    /// Publishing cannot be switched on without a token.
    Unconfigured,
    /// The settings file cannot be written.
    SettingsFile,
    /// Auto-start on login cannot be changed.
    Autostart,
    /// The log folder cannot be opened.
    Logs,
}

/// An error the page can act on.
#[derive(Debug, Serialize)]
pub struct CommandError {
    /// What kind.
    pub kind: ErrorKind,
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

impl From<FieldError> for FieldProblem {
    fn from(e: FieldError) -> Self {
        FieldProblem { field: e.field.into(), message: e.message }
    }
}

impl CommandError {
    fn new(kind: ErrorKind, message: impl ToString) -> Self {
        CommandError { kind, message: message.to_string(), fields: Vec::new() }
    }

    fn invalid(fields: Vec<FieldProblem>) -> Self {
        let message = fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
        CommandError { kind: ErrorKind::Invalid, message, fields }
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
    /// The folder of the log files.
    log_dir: Option<String>,
}

#[derive(Debug, Serialize)]
struct SettingsView {
    stream_name: String,
    buffer_span_ms: u64,
    topic: String,
    format: &'static str,
    /// Each record format with what it is for.
    formats: Vec<Choice>,
    /// The Quix Portal APIs HostPulse knows, offered beside the free URL field.
    portals: Vec<Choice>,
    interval_ms: u64,
    battery_interval_ms: u64,
    process_count: u64,
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
    outbox_max_kb: u64,
    outbox_max_age_hours: u64,
    stall_timeout_ms: u64,
    log_level: &'static str,
}

impl SettingsView {
    fn new(s: &Settings, launch: &Launch) -> Self {
        let on = metrics::parse_list(&s.metrics).unwrap_or_default();
        SettingsView {
            stream_name: s.stream_name.clone().unwrap_or_default(),
            buffer_span_ms: s.buffer_span_ms,
            topic: s.topic.clone(),
            format: s.format.id(),
            formats: [RecordFormat::Quix, RecordFormat::Json]
                .map(|f| Choice { value: f.id(), text: f.describe() })
                .into(),
            portals: KNOWN_PORTALS.map(|(url, name)| Choice { value: url, text: name }).into(),
            interval_ms: s.interval_ms,
            battery_interval_ms: s.battery_interval_ms,
            process_count: s.process_count,
            portal_url: s.portal_url.clone().unwrap_or_default(),
            workspace_id: s.workspace_id.clone().unwrap_or_default(),
            stream_id: s.stream_id.clone().unwrap_or_default(),
            tls_verify_hostname: s.tls_verify_hostname,
            default_stream_name: format!("CPU Load - {}", launch.facts.hostname),
            default_stream_id: launch.facts.default_stream_id.clone(),
            metrics: Metric::ALL
                .into_iter()
                .map(|m| MetricView { id: m.id(), label: m.label(), on: on.contains(&m) })
                .collect(),
            network_interfaces: s.network_interfaces.join(", "),
            tags: hostpulse_core::form::tags_text(&s.tags),
            notify_high_cpu: s.notify_high_cpu,
            high_cpu_percent: s.high_cpu_percent,
            high_cpu_seconds: s.high_cpu_seconds,
            notify_stopped: s.notify_stopped,
            notify_token_rejected: s.notify_token_rejected,
            outbox_max_kb: s.outbox_max_kb,
            outbox_max_age_hours: s.outbox_max_age_hours,
            stall_timeout_ms: s.stall_timeout_ms,
            log_level: s.log_level.id(),
        }
    }
}

/// One choice offered to the user: the value and what it means.
#[derive(Debug, Serialize)]
struct Choice {
    value: &'static str,
    text: &'static str,
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

impl App {
    async fn view(&self, app: &AppHandle) -> StateView {
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
        let settings = {
            let launch = self.launch.lock().expect("not poisoned");
            SettingsView::new(&launch.settings, &launch)
        };
        StateView {
            settings,
            token,
            status: StatusView::from(&self.agent.status()),
            portal_pending: self.pending_portal.lock().expect("not poisoned").as_ref().map(|p| p.url.clone()),
            autostart: app.autolaunch().is_enabled().unwrap_or(false),
            settings_problem: {
                let settings = self.settings_problem.lock().expect("not poisoned").clone();
                match (settings, self.outbox_problem.clone()) {
                    (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
                    (a, b) => a.or(b),
                }
            },
            log_dir: self.logs.dir.as_ref().map(|d| d.display().to_string()),
        }
    }

    /// The Portal URL in force, which the user confirmed for the stored token: tokens given to the
    /// agent are bound to it, so no reconnect sends them anywhere else.
    pub fn confirmed_portal(&self) -> String {
        self.launch.lock().expect("not poisoned").checked.portal_url.clone()
    }

    /// Reconnects with the current token, if there is one (after a token or connection change).
    async fn reconnect(&self) -> Result<()> {
        let Some((token, source)) = token::resolve_blocking(self.store.clone())
            .await
            .map_err(|e| CommandError::new(ErrorKind::CredentialStore, e))?
        else {
            return Ok(());
        };
        let credential = Credential::new(token, source).bound_to(&self.confirmed_portal());
        self.agent.replace_token(credential).await.map_err(|e| CommandError::new(ErrorKind::Connect, e))
    }

    /// Writes `settings` to the file and puts them in force: the agent's configuration, the
    /// notification rules and the route of the next connection. Returns whether the connection
    /// settings changed.
    async fn put_in_force(&self, settings: Settings) -> Result<bool> {
        let (checked, changed, config) = {
            let mut launch = self.launch.lock().expect("not poisoned");
            let checked = launch
                .check(&settings)
                .map_err(|e| CommandError::invalid(e.0.into_iter().map(FieldProblem::from).collect()))?;
            let mut problem = self.settings_problem.lock().expect("not poisoned");
            let kept = settings_file::save(&launch.settings_path, &settings, problem.is_some())
                .map_err(|e| CommandError::new(ErrorKind::SettingsFile, e))?;
            if let Some(kept) = kept {
                tracing::warn!("the unreadable settings file was kept as {}", kept.display());
            }
            *problem = None;
            let old = &launch.checked;
            let changed = (&old.topic, &old.portal_url, &old.workspace_id, old.tls_verify_hostname)
                != (&checked.topic, &checked.portal_url, &checked.workspace_id, checked.tls_verify_hostname);
            launch.settings = settings;
            launch.checked = checked.clone();
            (checked, changed, launch.desktop_agent_config())
        };
        self.agent.apply(config).await;
        self.notifier.lock().expect("not poisoned").set_config(checked.notify);
        self.logs.set_level(checked.log_level);
        if changed {
            let data_dir = self.launch.lock().expect("not poisoned").data_dir.clone();
            self.connector.set(Route::for_settings(&checked, &data_dir));
        }
        Ok(changed)
    }

    /// Makes a Portal URL waiting for confirmation the one in force (file and connection);
    /// `false` when none was waiting. If that fails, it keeps waiting.
    async fn adopt_pending_portal(&self) -> Result<bool> {
        let Some(pending) = self.pending_portal.lock().expect("not poisoned").clone() else { return Ok(false) };
        let mut settings = self.launch.lock().expect("not poisoned").settings.clone();
        settings.portal_url = pending.setting;
        self.put_in_force(settings).await?;
        *self.pending_portal.lock().expect("not poisoned") = None;
        tracing::info!(portal = %pending.url, "Portal URL confirmed");
        Ok(true)
    }
}

#[tauri::command]
pub async fn get_state(app: AppHandle, state: State<'_, App>) -> Result<StateView> {
    Ok(state.view(&app).await)
}

#[tauri::command]
pub async fn save_settings(app: AppHandle, state: State<'_, App>, input: SettingsForm) -> Result<StateView> {
    let (old, old_url) = {
        let launch = state.launch.lock().expect("not poisoned");
        (launch.settings.clone(), launch.checked.portal_url.clone())
    };
    let (mut new, problems) = input.merge(&old);
    let mut problems: Vec<FieldProblem> = problems.into_iter().map(FieldProblem::from).collect();
    let checked = state.launch.lock().expect("not poisoned").check(&new);
    match checked {
        Err(e) => problems.extend(e.0.into_iter().map(FieldProblem::from)),
        Ok(_) if !problems.is_empty() => {}
        Ok(checked) => {
            // A new Portal URL gets the stored token only once the user says so (or enters a
            // token): until then the file and the connection keep the URL the token was used with.
            if checked.portal_url == old_url {
                *state.pending_portal.lock().expect("not poisoned") = None;
            } else if checked.broker.is_none()
                // A store that cannot say counts as holding a token: ask rather than send.
                && !matches!(token::resolve_blocking(state.store.clone()).await, Ok(None))
            {
                tracing::info!(portal = %checked.portal_url, "new Portal URL: waiting for confirmation before the token goes there");
                *state.pending_portal.lock().expect("not poisoned") =
                    Some(PendingPortal { setting: new.portal_url.clone(), url: checked.portal_url.clone() });
                new.portal_url = old.portal_url.clone();
            }
        }
    }
    if !problems.is_empty() {
        return Err(CommandError::invalid(problems));
    }
    if state.put_in_force(new).await? {
        state.reconnect().await?;
    }
    Ok(state.view(&app).await)
}

/// Sends the stored token to the Portal URL that waited for confirmation: the URL goes into the
/// file and the connection, and the agent connects there.
#[tauri::command]
pub async fn confirm_portal(app: AppHandle, state: State<'_, App>) -> Result<StateView> {
    if state.adopt_pending_portal().await? {
        state.reconnect().await?;
    }
    Ok(state.view(&app).await)
}

#[tauri::command]
pub async fn set_token(app: AppHandle, state: State<'_, App>, token: String) -> Result<StateView> {
    let secret = Secret::token(token)
        .map_err(|e| CommandError::invalid(vec![FieldProblem { field: "token".into(), message: e.to_string() }]))?;
    store_blocking(&state.store, Some(secret.clone())).await?;
    // A token entered now is meant for the Portal URL on the page.
    state.adopt_pending_portal().await?;
    state
        .agent
        .replace_token(Credential::new(secret, TokenSource::CredentialStore).bound_to(&state.confirmed_portal()))
        .await
        .map_err(|e| CommandError::new(ErrorKind::Connect, e))?;
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
    .map_err(|e| CommandError::new(ErrorKind::CredentialStore, e))?
    .map_err(|e| CommandError::new(ErrorKind::CredentialStore, e))
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
        return Err(CommandError::new(ErrorKind::Unconfigured, "save a streaming token first"));
    }
    state.agent.set_publishing(on).await;
    Ok(state.view(&app).await)
}

/// The same check as `hostpulse check`, on the settings the agent runs with.
#[tauri::command]
pub async fn test_connection(state: State<'_, App>) -> Result<Vec<Step>> {
    let (checked, data_dir) = {
        let launch = state.launch.lock().expect("not poisoned");
        (launch.checked.clone(), launch.data_dir.clone())
    };
    Ok(diagnose::run(&checked, state.store.clone(), data_dir, PortalOptions::default()).await)
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
        .filter(|d| !metrics::is_text_id(&d.id))
        .map(|d| ParameterView {
            name: d.name.unwrap_or_else(|| d.id.clone()),
            id: d.id,
            unit: d.unit,
            group: d.location,
        })
        .collect();
    let id = id.filter(|id| parameters.iter().any(|p| &p.id == id)).unwrap_or_else(|| CPU_LOAD.to_owned());
    // The chart breaks its line where samples are further apart than a few intervals: the
    // longest interval in use (the battery one, when low-power mode has been on this hour).
    let interval_ms = {
        let s = &state.launch.lock().expect("not poisoned").settings;
        s.interval_ms.max(s.battery_interval_ms)
    };
    Ok(HistoryView { series: state.agent.history(&id), parameters, interval_ms })
}

/// The processes using the most CPU now, for the window's list when its page loads (then they
/// come with each status): asking keeps the process table being read at the list's pace. Empty
/// until the second sample after the first request (the first read only primes).
#[tauri::command]
pub async fn get_processes(state: State<'_, App>) -> Result<Vec<TopProcess>> {
    Ok(state.processes.top())
}

/// Opens the folder of the log files in the file manager.
pub fn open_logs(state: &App) -> Result<()> {
    let dir =
        state.logs.dir.as_ref().ok_or_else(|| {
            CommandError::new(ErrorKind::Logs, "there is no log folder: the app logs to standard error")
        })?;
    tauri_plugin_opener::open_path(dir, None::<&str>)
        .map_err(|e| CommandError::new(ErrorKind::Logs, format!("cannot open {}: {e}", dir.display())))
}

#[tauri::command]
pub async fn open_log_folder(state: State<'_, App>) -> Result<()> {
    open_logs(&state)
}

#[tauri::command]
pub async fn set_autostart(app: AppHandle, on: bool) -> Result<bool> {
    let launcher = app.autolaunch();
    let r = if on { launcher.enable() } else { launcher.disable() };
    r.map_err(|e| CommandError::new(ErrorKind::Autostart, e))?;
    launcher.is_enabled().map_err(|e| CommandError::new(ErrorKind::Autostart, e))
}
