//! Assembling the agent: the one way both front ends (the `hostpulse` CLI and the desktop app)
//! get from a settings file to a running agent, so that they cannot drift apart.
//!
//! [`Launch::load`] reads the settings file (a missing file means defaults), applies the Quix
//! SDKs' environment variables (`Quix__Portal__Api`, `Quix__Workspace__Id`) and then the front
//! end's own overrides (flags), and validates. From a [`Launch`] come the [`Route`] to the broker
//! (a configured broker, or the Quix Portal with a token), the outbox, the agent's configuration,
//! and the connection check that `hostpulse check` and the window's "Test connection" share
//! ([`diagnose::run`](crate::diagnose::run) on the same checked settings).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hostpulse_core::settings::{Checked, LogLevel, MachineFacts, Settings, SettingsErrors};
use thiserror::Error;

use crate::agent::AgentConfig;
use crate::connector::{Connecting, Connector, Credential, DirectConnector, QuixConnector};
use crate::outbox::{Outbox, OutboxError};
use crate::portal::PortalOptions;
use crate::publisher::KafkaSettings;
use crate::settings_file::{self, SettingsFileError};
use crate::token::{self, SecretStore, SecretStoreError, TOKEN_CREDENTIAL, TOKEN_ENV};
use crate::{machine, paths};

/// The environment variable with the Portal API URL (both Quix SDKs read it).
pub const PORTAL_URL_ENV: &str = "Quix__Portal__Api";
/// The environment variable with the workspace id (both Quix SDKs read it).
pub const WORKSPACE_ENV: &str = "Quix__Workspace__Id";

/// The Quix SDKs' environment variables, which override the settings file (for deployed
/// services and scripts). Blank values count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    /// `Quix__Portal__Api`.
    pub portal_url: Option<String>,
    /// `Quix__Workspace__Id`.
    pub workspace_id: Option<String>,
}

impl EnvOverrides {
    /// Reads them from this process's environment.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        EnvOverrides { portal_url: var(PORTAL_URL_ENV), workspace_id: var(WORKSPACE_ENV) }
    }

    /// Puts them into `settings`.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(url) = &self.portal_url {
            settings.portal_url = Some(url.clone());
        }
        if let Some(ws) = &self.workspace_id {
            settings.workspace_id = Some(ws.clone());
        }
    }
}

/// Why the agent cannot be assembled.
#[derive(Debug, Error)]
pub enum LaunchError {
    /// The settings file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] SettingsFileError),
    /// The settings (file, environment, flags) are not valid.
    #[error("{errors}")]
    Invalid {
        /// The settings file.
        path: PathBuf,
        /// Every problem, each naming its field.
        errors: SettingsErrors,
    },
    /// No data directory for the outbox and the workspace CA.
    #[error("no data directory for this user (is HOME set?)")]
    NoDataDir,
}

/// Settings loaded, overridden and checked, with the machine facts and the data directory:
/// everything the agent is assembled from.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The settings file.
    pub settings_path: PathBuf,
    /// The settings as the file holds them (what the window edits and saves).
    pub settings: Settings,
    /// The settings the agent runs with: the file's, with the environment and flags applied.
    pub checked: Checked,
    /// Facts about this machine that defaults derive from.
    pub facts: MachineFacts,
    /// Where the outbox and the workspace CA live.
    pub data_dir: PathBuf,
    /// The environment overrides in force.
    pub env: EnvOverrides,
}

impl Launch {
    /// Loads `path` (default: the OS config dir's `hostpulse/settings.toml`), applies `env` and
    /// then `flags`, and checks the result.
    pub fn load(
        path: Option<PathBuf>,
        env: EnvOverrides,
        flags: impl FnOnce(&mut Settings),
    ) -> Result<Launch, LaunchError> {
        let settings_path = match path {
            Some(p) => p,
            None => settings_file::default_path()?,
        };
        let file = settings_file::load(&settings_path)?;
        Launch::from_file(settings_path, file, env, flags)
    }

    fn from_file(
        settings_path: PathBuf,
        file: Settings,
        env: EnvOverrides,
        flags: impl FnOnce(&mut Settings),
    ) -> Result<Launch, LaunchError> {
        let mut effective = file.clone();
        env.apply(&mut effective);
        flags(&mut effective);
        let facts = machine::facts();
        let checked =
            effective.check(&facts).map_err(|errors| LaunchError::Invalid { path: settings_path.clone(), errors })?;
        let data_dir = paths::data_dir().ok_or(LaunchError::NoDataDir)?;
        Ok(Launch { settings_path, settings: file, checked, facts, data_dir, env })
    }

    /// [`load`](Self::load) for the desktop app, which must start whatever the file holds: a
    /// file that cannot be read or is not valid gives the defaults (the file is left as it is
    /// until the user saves) and the problem to show.
    pub fn load_or_defaults(path: Option<PathBuf>, env: EnvOverrides) -> Result<(Launch, Option<String>), LaunchError> {
        let settings_path = match path {
            Some(p) => p,
            None => settings_file::default_path()?,
        };
        let ignored = format!(
            "(the environment variables {PORTAL_URL_ENV} and {WORKSPACE_ENV} are ignored until they are fixed)"
        );
        match Launch::load(Some(settings_path.clone()), env.clone(), |_| {}) {
            Err(e @ (LaunchError::File(_) | LaunchError::Invalid { .. })) => {
                tracing::error!("{e}");
                // The environment alone may be at fault: the file is then used without it.
                if env != EnvOverrides::default()
                    && let Ok(launch) = Launch::load(Some(settings_path.clone()), EnvOverrides::default(), |_| {})
                {
                    return Ok((launch, Some(format!("{e}\n{ignored}"))));
                }
                let problem = format!("{e}\n(the file {} is kept as it is until you save)", settings_path.display());
                match Launch::from_file(settings_path.clone(), Settings::default(), env, |_| {}) {
                    Err(LaunchError::Invalid { .. }) => {
                        let launch =
                            Launch::from_file(settings_path, Settings::default(), EnvOverrides::default(), |_| {})?;
                        Ok((launch, Some(format!("{problem}\n{ignored}"))))
                    }
                    other => Ok((other?, Some(problem))),
                }
            }
            other => other.map(|launch| (launch, None)),
        }
    }

    /// `settings` (as the file would hold them) checked with this launch's environment
    /// overrides, as the agent would run them.
    pub fn check(&self, settings: &Settings) -> Result<Checked, SettingsErrors> {
        let mut effective = settings.clone();
        self.env.apply(&mut effective);
        effective.check(&self.facts)
    }

    /// The way to the broker the settings choose.
    pub fn route(&self) -> Route {
        Route::for_settings(&self.checked, &self.data_dir)
    }

    /// The agent's configuration for these settings.
    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig::from_checked(&self.checked, &self.facts.hostname)
    }

    /// The desktop app's configuration: [`agent_config`](Self::agent_config), with the top
    /// processes of a high-CPU spell tracked for its notification and tray.
    pub fn desktop_agent_config(&self) -> AgentConfig {
        AgentConfig { spell_threshold: Some(self.checked.notify.high_cpu_percent), ..self.agent_config() }
    }

    /// The outbox file of `program` (`cli` or `app`: the two never share one).
    pub fn open_outbox(&self, program: &str) -> Result<Outbox, OutboxError> {
        Outbox::open(&Outbox::path_in(&self.data_dir, program), self.checked.outbox)
    }

    /// [`open_outbox`](Self::open_outbox), or, when it cannot be opened, an outbox in memory and
    /// the reason to show: publishing goes on, but unsent records do not survive a restart.
    pub fn open_outbox_or_memory(&self, program: &str) -> (Outbox, Option<String>) {
        match self.open_outbox(program) {
            Ok(o) => (o, None),
            Err(e) => {
                tracing::error!("{e}; until then, unsent records are kept in memory only");
                let text = format!("{e}\nUntil then, unsent records are kept in memory only.");
                (Outbox::in_memory(self.checked.outbox), Some(text))
            }
        }
    }
}

/// How the agent reaches the broker.
#[derive(Debug, Clone)]
pub enum Route {
    /// A broker configured in the settings (`broker`), no token.
    Direct(KafkaSettings),
    /// The Quix Portal, with a streaming token.
    Quix(QuixConnector),
}

impl Route {
    /// The route `checked` chooses: `broker` set means direct.
    pub fn for_settings(checked: &Checked, data_dir: &Path) -> Route {
        match &checked.broker {
            Some(broker) => Route::Direct(KafkaSettings::direct(checked, broker)),
            None => Route::Quix(QuixConnector {
                portal_url: checked.portal_url.clone(),
                workspace_id: checked.workspace_id.clone(),
                topic: checked.topic.clone(),
                data_dir: data_dir.to_path_buf(),
                verify_hostname: checked.tls_verify_hostname,
                options: PortalOptions::default(),
            }),
        }
    }

    /// Whether a streaming token is needed.
    pub fn uses_token(&self) -> bool {
        matches!(self, Route::Quix(_))
    }
}

/// A connector whose route can be replaced while the agent runs (the window changes the Portal
/// URL, workspace or topic): each connection attempt takes the route in force at that moment.
#[derive(Clone)]
pub struct SwitchableConnector(Arc<RwLock<Route>>);

impl SwitchableConnector {
    /// Starts with `route`.
    pub fn new(route: Route) -> Self {
        SwitchableConnector(Arc::new(RwLock::new(route)))
    }

    /// Replaces the route for the next connection attempt.
    pub fn set(&self, route: Route) {
        *self.0.write().expect("not poisoned") = route;
    }
}

impl Connector for SwitchableConnector {
    fn connect(&self, credential: Option<Credential>) -> Connecting {
        match &*self.0.read().expect("not poisoned") {
            Route::Direct(kafka) => DirectConnector(kafka.clone()).connect(credential),
            Route::Quix(quix) => quix.connect(credential),
        }
    }

    fn uses_token(&self) -> bool {
        self.0.read().expect("not poisoned").uses_token()
    }
}

/// The environment variable whose filter replaces the log level (`tracing` filter syntax, such
/// as `debug` or `warn,hostpulse_agent=trace`).
pub const LOG_ENV: &str = "HOSTPULSE_LOG";

/// The log filter for `level` raised by `verbose` (`-v` flags): HostPulse's own crates at that
/// level, everything else (librdkafka's messages, Tauri, WebKit) at most at `warn`.
pub fn log_filter(level: LogLevel, verbose: u8) -> String {
    let ours = level.raised(verbose);
    let others = ours.min(LogLevel::Warn);
    let o = ours.id();
    format!("{},hostpulse={o},hostpulse_agent={o},hostpulse_core={o},hostpulse_app={o}", others.id())
}

/// The streaming token to use (environment first, then the OS credential store), with where it
/// came from.
pub fn credential(store: &dyn SecretStore) -> Result<Option<Credential>, SecretStoreError> {
    Ok(token::resolve(store)?.map(|(token, source)| Credential::new(token, source)))
}

/// What to tell a user who has no token.
pub fn no_token_message(store: &dyn SecretStore) -> String {
    format!(
        "no Quix streaming token: run `hostpulse token set` (keeps it in {}), set {TOKEN_ENV}, or pass the \
         systemd credential {TOKEN_CREDENTIAL}; or set `broker` to publish to a Kafka broker directly",
        store.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "portal_url = \"https://file.example/\"\nworkspace_id = \"file-ws\"\ntopic = \"t\"\n")
            .unwrap();
        let env = EnvOverrides { portal_url: Some("https://env.example/".into()), workspace_id: Some("env-ws".into()) };
        let launch = Launch::load(Some(path.clone()), env.clone(), |s| s.topic = "from-flag".into()).unwrap();
        assert_eq!(launch.checked.portal_url, "https://env.example/");
        assert_eq!(launch.checked.workspace_id.as_deref(), Some("env-ws"));
        assert_eq!(launch.checked.topic, "from-flag");
        assert_eq!(launch.settings.portal_url.as_deref(), Some("https://file.example/"), "the file's own value stays");
        // The window's settings are checked with the same overrides.
        let edited = Settings { workspace_id: Some("window-ws".into()), ..launch.settings.clone() };
        assert_eq!(launch.check(&edited).unwrap().workspace_id.as_deref(), Some("env-ws"));
        // An override that is not valid is reported like a bad setting, naming the file.
        let bad = EnvOverrides { portal_url: Some("http://portal.example/".into()), workspace_id: None };
        let e = Launch::load(Some(path.clone()), bad, |_| {}).unwrap_err();
        assert!(matches!(&e, LaunchError::Invalid { path: p, .. } if *p == path), "{e}");
        assert!(e.to_string().contains("`portal_url` must use https://"), "{e}");
    }

    #[test]
    fn a_broken_file_gives_the_app_defaults_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "interval_ms = \"fast\"").unwrap();
        let (launch, problem) = Launch::load_or_defaults(Some(path.clone()), EnvOverrides::default()).unwrap();
        assert_eq!(launch.settings, Settings::default());
        assert_eq!(launch.settings_path, path, "saving goes to the user's file");
        let problem = problem.unwrap();
        assert!(problem.contains("interval_ms") && problem.contains("is kept as it is until you save"), "{problem}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "interval_ms = \"fast\"");
    }

    #[test]
    fn a_bad_environment_variable_is_ignored_and_named_and_the_app_still_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "interval_ms = 2000").unwrap();
        let bad = EnvOverrides { portal_url: Some("http://portal.example/".into()), workspace_id: None };
        // A good file: used, without the environment.
        let (launch, problem) = Launch::load_or_defaults(Some(path.clone()), bad.clone()).unwrap();
        assert_eq!(launch.settings.interval_ms, 2000);
        assert_eq!(launch.env, EnvOverrides::default(), "a Save is checked without it");
        let problem = problem.unwrap();
        assert!(problem.contains("`portal_url` must use https://"), "{problem}");
        assert!(problem.contains("Quix__Portal__Api and Quix__Workspace__Id are ignored"), "{problem}");
        assert!(!problem.contains("is kept as it is"), "the file is not to blame: {problem}");
        // A broken file too: the defaults, and both problems.
        std::fs::write(&path, "interval_ms = \"fast\"").unwrap();
        let (launch, problem) = Launch::load_or_defaults(Some(path.clone()), bad).unwrap();
        assert_eq!(launch.settings, Settings::default());
        let problem = problem.unwrap();
        assert!(problem.contains("is kept as it is") && problem.contains("are ignored"), "{problem}");
    }

    #[test]
    fn the_log_filter_raises_ours_and_keeps_the_others_quiet() {
        assert_eq!(
            log_filter(LogLevel::Info, 0),
            "warn,hostpulse=info,hostpulse_agent=info,hostpulse_core=info,hostpulse_app=info"
        );
        assert!(log_filter(LogLevel::Info, 2).starts_with("warn,hostpulse=trace,"));
        assert!(log_filter(LogLevel::Error, 0).starts_with("error,hostpulse=error,"));
    }

    #[test]
    fn the_route_follows_the_broker_setting() {
        let facts = MachineFacts { default_stream_id: "id-1".into(), hostname: "h".into() };
        let quix = Settings::default().check(&facts).unwrap();
        assert!(
            matches!(Route::for_settings(&quix, Path::new("/d")), Route::Quix(q) if q.portal_url == quix.portal_url)
        );
        let direct = Settings { broker: Some("k:9092".into()), ..Default::default() }.check(&facts).unwrap();
        let route = Route::for_settings(&direct, Path::new("/d"));
        assert!(matches!(&route, Route::Direct(k) if k.broker == "k:9092"));
        assert!(!route.uses_token());
        let switchable = SwitchableConnector::new(route);
        assert!(!switchable.uses_token());
        switchable.set(Route::for_settings(&quix, Path::new("/d")));
        assert!(switchable.uses_token(), "the next attempt takes the new route");
    }
}
