//! HostPulse desktop: the HostPulse agent in the tray, with a settings window.
//!
//! An adapter only: it starts the same agent the CLI runs, hands the settings window's commands
//! to it (`commands`), and shows its status in the tray (`tray`). Closing the window hides it;
//! Quit flushes, closes the stream and exits within a few seconds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod logs;
mod tray;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostpulse_agent::agent::{self, AgentHandle, Parts};
use hostpulse_agent::assembly::{self, EnvOverrides, Launch, Route, SwitchableConnector};
use hostpulse_agent::sampler::HostSampler;
use hostpulse_agent::token::{KeyringStore, SecretStore};
use hostpulse_core::notify::{Notice, Notifier};
use hostpulse_core::status::{PublisherState, StatusView};
use tauri::{AppHandle, Emitter as _, Manager as _, RunEvent, WindowEvent};
use tauri_plugin_notification::NotificationExt as _;

use commands::App;

/// The settings window's label.
const SETTINGS_WINDOW: &str = "settings";
/// The event carrying [`StatusView`] to the window.
const STATUS_EVENT: &str = "status";
/// How long Quit waits for the broker before exiting anyway (the rest is reported, not hung on).
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);

/// The [`STATUS_EVENT`]'s payload: the status, and the processes using the most CPU now.
#[derive(Clone, serde::Serialize)]
struct StatusEvent {
    #[serde(flatten)]
    status: StatusView,
    processes: Vec<hostpulse_core::processes::TopProcess>,
}

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
        tray::ids::LOGS => {
            if let Err(e) = commands::open_logs(&app.state::<App>()) {
                tracing::warn!("{}", e.message);
            }
        }
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

fn setup(
    app: &mut tauri::App,
    launch: Launch,
    problem: Option<String>,
    logs: logs::Logs,
) -> Result<(), Box<dyn std::error::Error>> {
    // The same assembly as `hostpulse run` (settings file, Quix environment overrides, route,
    // outbox), done in `main`. A file that cannot be used gave the defaults and a problem the
    // window shows; an outbox that cannot be opened gives one in memory and another.
    let (outbox, outbox_problem) = launch.open_outbox_or_memory("app");
    let route = launch.route();
    // A `broker` in the settings file publishes there directly, without a token (a local broker,
    // benchmarks); the window then has no connection settings to change.
    let direct = !route.uses_token();
    if let Route::Direct(kafka) = &route {
        tracing::info!(broker = %kafka.broker, "publishing directly to the configured broker");
    }
    let connector = SwitchableConnector::new(route);
    let store: Arc<dyn SecretStore> = Arc::new(KeyringStore::new());
    let sampler = HostSampler::new()?;
    let processes = sampler.process_view();
    let window_processes = processes.clone();
    let parts = Parts {
        sampler: Box::new(sampler),
        outbox,
        connector: Some(Arc::new(connector.clone())),
        credential: None,
        publisher: None,
    };
    let (agent, _task) = tauri::async_runtime::block_on(async { agent::spawn(launch.desktop_agent_config(), parts) });
    let token = assembly::credential(store.as_ref());
    let first_run = !matches!(token, Ok(Some(_))) && !direct;
    let notifier = Arc::new(Mutex::new(Notifier::new(launch.checked.notify)));
    app.manage(App {
        notifier: notifier.clone(),
        agent: agent.clone(),
        processes,
        store,
        launch: Mutex::new(launch),
        settings_problem: Mutex::new(problem),
        outbox_problem,
        connector,
        pending_portal: Mutex::new(None),
        logs,
    });

    let handle = app.handle().clone();
    let mut tray = tray::Tray::build(&handle, on_menu)?;
    let mut status = agent.watch();
    let started = std::time::Instant::now();
    tauri::async_runtime::spawn(async move {
        loop {
            let s = status.borrow_and_update().clone();
            if let Err(e) = tray.apply(&hostpulse_core::tray::view(&s)) {
                tracing::warn!("tray update failed: {e}");
            }
            let notice = notifier.lock().expect("not poisoned").observe(started.elapsed(), &s);
            if let Some(notice) = notice {
                notify(&handle, &notice);
            }
            // The window gets the status with the top processes, once per sample while it exists
            // (asking for them keeps the process table being read; no window, no reading).
            if handle.get_webview_window(SETTINGS_WINDOW).is_some() {
                let event = StatusEvent { status: StatusView::from(&s), processes: window_processes.top() };
                let _ = handle.emit_to(SETTINGS_WINDOW, STATUS_EVENT, event);
            }
            if status.changed().await.is_err() {
                break;
            }
        }
    });

    match token {
        _ if direct => {}
        Ok(Some(credential)) => {
            // Bound to the Portal URL of the settings file, the one last confirmed.
            let credential = credential.bound_to(&app.state::<App>().confirmed_portal());
            tauri::async_runtime::spawn(async move {
                let source = credential.source;
                if let Err(e) = agent.replace_token(credential).await {
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

/// GTK probes GLX when it opens the X11 display (to choose visuals for GL), which loads Mesa and,
/// through it, LLVM: measured ~30 MB of PSS in a tray process that never draws with GL (the
/// settings page renders without accelerated compositing, see [`light_rendering`]). So GL is off
/// in the app's process unless the user asked otherwise with `GDK_GL`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn no_gl_in_the_tray() {
    if std::env::var_os("GDK_GL").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("GDK_GL", "disable") };
    }
}

/// Hands the heap the closed window freed back to the system (glibc keeps it otherwise), so the
/// app's memory returns towards what it was before the window was opened.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    no_gl_in_the_tray();
    // The settings come first: they say how much to log. (What goes wrong meanwhile is kept in
    // the launch's problem and shown in the window.)
    let launch = Launch::load_or_defaults(None, EnvOverrides::from_env());
    let level = launch.as_ref().map(|(l, _)| l.checked.log_level).unwrap_or_default();
    let logs = logs::Logs::init(level, logs::verbosity(std::env::args().skip(1)));
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
            commands::open_log_folder,
            commands::get_processes,
        ])
        .setup(move |app| {
            let (launch, problem) = launch?;
            setup(app, launch, problem, logs)
        })
        .on_window_event(|window, event| {
            if let WindowEvent::Destroyed = event {
                // Closing the window destroys it (WebKit's memory goes with it); the app keeps
                // publishing from the tray, and Settings… makes a new one.
                tracing::debug!(window = window.label(), "window closed");
                release_freed_memory();
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
