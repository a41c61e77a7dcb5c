//! HostPulse desktop: the HostPulse agent in the tray, with a settings window.
//!
//! An adapter only: it starts the same agent the CLI runs, hands the settings window's commands
//! to it (`commands`), and shows its status in the tray (`tray`). Closing the window hides it;
//! Quit flushes, closes the stream and exits within a few seconds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod tray;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hostpulse_agent::agent::{self, AgentConfig, AgentHandle, Parts};
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::publisher::KafkaSettings;
use hostpulse_agent::quix::{Connecting, Connector, Credential, DirectConnector, QuixConnector};
use hostpulse_agent::sampler::HostSampler;
use hostpulse_agent::token::{self, KeyringStore, SecretStore};
use hostpulse_agent::{machine, paths, settings_file};
use hostpulse_core::notify::{Notice, Notifier};
use hostpulse_core::settings::Settings;
use hostpulse_core::status::PublisherState;
use tauri::{AppHandle, Emitter as _, Manager as _, RunEvent, WindowEvent};
use tauri_plugin_notification::NotificationExt as _;

use commands::{App, StatusView, connector_for};

/// The settings window's label.
const SETTINGS_WINDOW: &str = "settings";
/// The event carrying [`StatusView`] to the window.
const STATUS_EVENT: &str = "status";
/// How long Quit waits for the broker before exiting anyway (the rest is reported, not hung on).
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Shows and focuses the settings window, creating it first: the window (and with it WebKit's
/// processes, a few hundred MB) exists only while it is open, so the tray app stays small.
pub fn show_settings(app: &AppHandle) {
    let window = match app.get_webview_window(SETTINGS_WINDOW) {
        Some(w) => w,
        None => {
            let Some(config) = app.config().app.windows.iter().find(|w| w.label == SETTINGS_WINDOW).cloned() else {
                return;
            };
            match tauri::WebviewWindowBuilder::from_config(app, &config).and_then(|b| b.build()) {
                Ok(w) => {
                    light_rendering(&w);
                    w
                }
                Err(e) => {
                    tracing::error!("cannot open the settings window: {e}");
                    return;
                }
            }
        }
    };
    let _ = window.unminimize();
    let _ = window.show();
    let _ = window.set_focus();
}

/// No accelerated compositing for the settings page (see Cargo.toml): measured under Xvfb, the
/// open window's web process used ~11 % CPU and 275 MB with it, ~2 % and 176 MB without.
#[cfg(target_os = "linux")]
fn light_rendering(window: &tauri::WebviewWindow) {
    let _ = window.with_webview(|webview| {
        use webkit2gtk::{SettingsExt as _, WebViewExt as _};
        if let Some(settings) = webview.inner().settings() {
            settings.set_hardware_acceleration_policy(webkit2gtk::HardwareAccelerationPolicy::Never);
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn light_rendering(_: &tauri::WebviewWindow) {}

/// Connects with whatever the connection settings are when the token arrives.
struct AppConnector(Arc<RwLock<QuixConnector>>);

impl Connector for AppConnector {
    fn connect(&self, credential: Option<Credential>) -> Connecting {
        let current = self.0.read().expect("not poisoned").clone();
        current.connect(credential)
    }

    fn uses_token(&self) -> bool {
        true
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    let agent = app.state::<App>().agent.clone();
    match id {
        tray::ids::TOGGLE => {
            tauri::async_runtime::spawn(async move {
                let paused = matches!(agent.status().state, PublisherState::Paused);
                agent.set_publishing(paused).await;
            });
        }
        tray::ids::SETTINGS => show_settings(app),
        tray::ids::QUIT => quit(app.clone(), agent),
        _ => {}
    }
}

fn quit(app: AppHandle, agent: AgentHandle) {
    tauri::async_runtime::spawn(async move {
        match tokio::time::timeout(QUIT_TIMEOUT, agent.shutdown()).await {
            Ok(status) => tracing::info!("quit: {}", status.summary()),
            Err(_) => tracing::warn!("quit: the broker did not acknowledge in time; exiting anyway"),
        }
        app.exit(0);
    });
}

/// Shows a desktop notification (org.freedesktop.Notifications on Linux).
fn notify(app: &AppHandle, notice: &Notice) {
    tracing::info!(kind = ?notice.kind, "notification: {}", notice.title);
    if let Err(e) = app.notification().builder().title(&notice.title).body(&notice.body).show() {
        tracing::warn!("cannot show a notification: {e}");
    }
}

fn setup(app: &mut tauri::App) -> Result<(), Box<dyn std::error::Error>> {
    let settings_path = settings_file::default_path()?;
    let (settings, problem) = match settings_file::load(&settings_path) {
        Ok(s) => (s, None),
        Err(e) => {
            tracing::error!("{e}");
            (Settings::default(), Some(e.to_string()))
        }
    };
    let facts = machine::facts();
    let (settings, problem) = match settings.check(&facts) {
        Ok(_) => (settings, problem),
        Err(e) => (
            Settings::default(),
            Some(format!("{e}\n(the file {} is kept as it is until you save)", settings_path.display())),
        ),
    };
    let checked = settings.check(&facts)?;
    let data_dir = paths::data_dir().ok_or("no data directory for this user (is HOME set?)")?;
    let connector = Arc::new(RwLock::new(connector_for(&checked, &data_dir)));
    let store: Arc<dyn SecretStore> = Arc::new(KeyringStore::new());
    let sampler = HostSampler::new()?;
    let config = AgentConfig::from_checked(&checked, &facts.hostname);
    // A `broker` in the settings file publishes there directly, without a token (a local broker,
    // benchmarks); the window then has no connection settings to change.
    let direct = checked.broker.as_ref().map(|b| KafkaSettings::direct(&checked, b));
    let connector_for_agent: Arc<dyn Connector> = match &direct {
        Some(kafka) => {
            tracing::info!(broker = %kafka.broker, "publishing directly to the configured broker");
            Arc::new(DirectConnector(kafka.clone()))
        }
        None => Arc::new(AppConnector(connector.clone())),
    };
    // Unsent records wait on disk; if the outbox cannot be opened, publishing still works with
    // one in memory, and the window says what is wrong.
    let (outbox, problem) = match Outbox::open(&Outbox::path_in(&data_dir, "app"), checked.outbox) {
        Ok(o) => (o, problem),
        Err(e) => {
            tracing::error!("{e}");
            let text = format!("{e}\nUntil then, unsent records are kept in memory only.");
            (Outbox::in_memory(checked.outbox), Some(problem.map_or(text.clone(), |p| format!("{p}\n{text}"))))
        }
    };
    let parts = Parts {
        sampler: Box::new(sampler),
        outbox,
        connector: Some(connector_for_agent),
        credential: None,
        publisher: None,
    };
    let (agent, _task) = tauri::async_runtime::block_on(async { agent::spawn(config, parts) });
    let token = token::resolve(store.as_ref());
    let first_run = !matches!(token, Ok(Some(_))) && direct.is_none();
    let notifier = Arc::new(Mutex::new(Notifier::new(checked.notify)));
    app.manage(App {
        notifier: notifier.clone(),
        agent: agent.clone(),
        store,
        settings_path,
        settings: Mutex::new(settings),
        settings_problem: Mutex::new(problem),
        facts,
        data_dir,
        connector,
        pending_portal: Mutex::new(None),
    });

    let handle = app.handle().clone();
    let mut tray = tray::Tray::build(&handle, on_menu)?;
    let mut status = agent.watch();
    let started = std::time::Instant::now();
    tauri::async_runtime::spawn(async move {
        loop {
            let s = status.borrow_and_update().clone();
            if let Err(e) = tray.apply(&tray::view(&s)) {
                tracing::warn!("tray update failed: {e}");
            }
            let notice = notifier.lock().expect("not poisoned").observe(started.elapsed(), &s);
            if let Some(notice) = notice {
                notify(&handle, &notice);
            }
            let _ = handle.emit_to(SETTINGS_WINDOW, STATUS_EVENT, StatusView::from(&s));
            if status.changed().await.is_err() {
                break;
            }
        }
    });

    match token {
        _ if direct.is_some() => {}
        Ok(Some((token, source))) => {
            tauri::async_runtime::spawn(async move {
                if let Err(e) = agent.replace_token(Credential { token, source }).await {
                    tracing::error!("cannot publish with the token from {source}: {e}");
                }
            });
        }
        Ok(None) => tracing::info!("no streaming token yet: opening the settings window"),
        Err(e) => tracing::error!("{e}"),
    }
    if first_run {
        show_settings(app.handle());
    }
    Ok(())
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTPULSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hostpulse_app=info,hostpulse_agent=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| show_settings(app)))
        .plugin(tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, None))
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![
            commands::get_state,
            commands::save_settings,
            commands::set_token,
            commands::remove_token,
            commands::set_publishing,
            commands::test_connection,
            commands::set_autostart,
            commands::get_history,
            commands::confirm_portal,
        ])
        .setup(setup)
        .on_window_event(|window, event| {
            if let WindowEvent::Destroyed = event {
                // Closing the window destroys it (WebKit's memory goes with it); the app keeps
                // publishing from the tray, and Settings… makes a new one.
                tracing::debug!(window = window.label(), "window closed");
            }
        })
        .build(tauri::generate_context!())
        .expect("the Tauri application could not be built");
    app.run(|_app, event| {
        if let RunEvent::ExitRequested { api, code: None, .. } = event {
            // No window left is not a reason to stop: the tray stays. Quit passes a code.
            api.prevent_exit();
        }
    });
}
