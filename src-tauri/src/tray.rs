//! The tray: what it shows is computed from the agent's `Status` by [`view`] (pure, tested);
//! [`Tray`] applies that view to the tray icon and its menu. On Linux the tray has no click
//! events (libayatana-appindicator), so everything is in the menu.

use hostpulse_core::status::{PublisherState, Status};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Wry};

/// Menu item ids.
pub mod ids {
    /// The status line (disabled).
    pub const STATUS: &str = "status";
    /// The last error (disabled).
    pub const ERROR: &str = "error";
    /// Pause / Start publishing.
    pub const TOGGLE: &str = "toggle";
    /// Opens the settings window.
    pub const SETTINGS: &str = "settings";
    /// Flushes, closes the stream and exits.
    pub const QUIT: &str = "quit";
}

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// No token yet.
    Unconfigured,
    /// Publishing switched off.
    Paused,
    /// Samples flow.
    Publishing,
    /// Stopped by an error.
    Error,
}

impl Look {
    fn png(self) -> &'static [u8] {
        match self {
            Look::Unconfigured => include_bytes!("../../icons/tray-unconfigured@2x.png"),
            Look::Paused => include_bytes!("../../icons/tray-paused@2x.png"),
            Look::Publishing => include_bytes!("../../icons/tray-publishing@2x.png"),
            Look::Error => include_bytes!("../../icons/tray-error@2x.png"),
        }
    }

    /// The name used in the tray's tooltip/title (and by tests).
    pub fn name(self) -> &'static str {
        match self {
            Look::Unconfigured => "not configured",
            Look::Paused => "paused",
            Look::Publishing => "publishing",
            Look::Error => "error",
        }
    }
}

/// What the tray shows for a status.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayView {
    /// The icon.
    pub look: Look,
    /// "Publishing · CPU 12.5 % · 42 sent".
    pub status_line: String,
    /// "Last error: …", or `None`.
    pub error_line: Option<String>,
    /// "Pause publishing" or "Start publishing".
    pub toggle_label: &'static str,
    /// Whether the toggle does anything (not without a token).
    pub toggle_enabled: bool,
}

/// The tray view of `status`.
pub fn view(status: &Status) -> TrayView {
    let (look, state) = match &status.state {
        PublisherState::Unconfigured => (Look::Unconfigured, "Not configured"),
        PublisherState::Paused => (Look::Paused, "Paused"),
        PublisherState::Connecting => (Look::Publishing, "Connecting"),
        PublisherState::Publishing => (Look::Publishing, "Publishing"),
        PublisherState::Stopping => (Look::Paused, "Stopping"),
        PublisherState::Backoff { .. } => (Look::Error, "Retrying"),
        PublisherState::Failed { next_try_ms: None, .. } => (Look::Error, "Stopped by an error"),
        PublisherState::Failed { next_try_ms: Some(_), .. } => (Look::Error, "Error, trying again later"),
    };
    let cpu = status.last_value.map(|v| format!("CPU {v:.1} %")).unwrap_or_else(|| "CPU –".into());
    let mut status_line = format!("{state} · {cpu} · {} sent", status.records_acknowledged);
    if status.records_queued > 0 {
        status_line += &format!(" · {} waiting", status.records_queued);
    }
    if status.records_dropped > 0 {
        status_line += &format!(" · {} dropped", status.records_dropped);
    }
    let reason = match &status.state {
        PublisherState::Backoff { reason, .. } => Some(reason),
        _ => status.last_error.as_ref(),
    };
    let error_line = reason.map(|e| {
        let short: String = e.chars().take(80).collect();
        format!("Last error: {short}{}", if e.chars().count() > 80 { "…" } else { "" })
    });
    let paused = matches!(status.state, PublisherState::Paused);
    TrayView {
        look,
        status_line,
        error_line,
        toggle_label: if paused { "Start publishing" } else { "Pause publishing" },
        toggle_enabled: matches!(
            status.state,
            PublisherState::Paused
                | PublisherState::Publishing
                | PublisherState::Connecting
                | PublisherState::Backoff { .. }
        ),
    }
}

/// The tray icon and the menu items whose text changes.
pub struct Tray {
    icon: TrayIcon,
    status: MenuItem<Wry>,
    error: MenuItem<Wry>,
    toggle: MenuItem<Wry>,
    look: Option<Look>,
}

impl Tray {
    /// Builds the tray with its menu; `on_menu` gets the id of the clicked item.
    pub fn build(app: &AppHandle, on_menu: impl Fn(&AppHandle, &str) + Send + Sync + 'static) -> tauri::Result<Self> {
        let status = MenuItem::with_id(app, ids::STATUS, "Starting…", false, None::<&str>)?;
        let error = MenuItem::with_id(app, ids::ERROR, "No errors", false, None::<&str>)?;
        let toggle = MenuItem::with_id(app, ids::TOGGLE, "Pause publishing", false, None::<&str>)?;
        let settings = MenuItem::with_id(app, ids::SETTINGS, "Settings…", true, None::<&str>)?;
        let quit = MenuItem::with_id(app, ids::QUIT, "Quit", true, None::<&str>)?;
        let separator = PredefinedMenuItem::separator(app)?;
        let menu = Menu::with_items(app, &[&status, &error, &separator, &toggle, &settings, &quit])?;
        let icon = TrayIconBuilder::with_id("hostpulse")
            .icon(Image::from_bytes(Look::Unconfigured.png())?)
            .tooltip("HostPulse")
            .menu(&menu)
            .show_menu_on_left_click(false)
            .on_menu_event(move |app, event| on_menu(app, event.id.as_ref()))
            .on_tray_icon_event(|tray, event| {
                // macOS/Windows: a left click opens the window (Linux trays send no clicks).
                if let tauri::tray::TrayIconEvent::Click { button: tauri::tray::MouseButton::Left, .. } = event {
                    crate::show_settings(tray.app_handle());
                }
            })
            .build(app)?;
        Ok(Tray { icon, status, error, toggle, look: None })
    }

    /// Shows `v`.
    pub fn apply(&mut self, v: &TrayView) -> tauri::Result<()> {
        if self.look != Some(v.look) {
            self.icon.set_icon(Some(Image::from_bytes(v.look.png())?))?;
            self.icon.set_tooltip(Some(format!("HostPulse — {}", v.look.name())))?;
            self.look = Some(v.look);
        }
        self.status.set_text(&v.status_line)?;
        self.error.set_text(v.error_line.as_deref().unwrap_or("No errors"))?;
        self.toggle.set_text(v.toggle_label)?;
        self.toggle.set_enabled(v.toggle_enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: PublisherState) -> Status {
        Status { last_value: Some(12.34), records_acknowledged: 42, ..Status::new(state) }
    }

    #[test]
    fn each_state_has_its_own_look_and_toggle() {
        let cases = [
            (PublisherState::Unconfigured, Look::Unconfigured, "Pause publishing", false),
            (PublisherState::Paused, Look::Paused, "Start publishing", true),
            (PublisherState::Publishing, Look::Publishing, "Pause publishing", true),
            (PublisherState::Failed { reason: "x".into(), next_try_ms: None }, Look::Error, "Pause publishing", false),
            (PublisherState::Backoff { reason: "x".into(), next_try_ms: 1 }, Look::Error, "Pause publishing", true),
        ];
        for (state, look, label, enabled) in cases {
            let v = view(&status(state.clone()));
            assert_eq!((v.look, v.toggle_label, v.toggle_enabled), (look, label, enabled), "{state:?}");
        }
    }

    #[test]
    fn the_status_line_shows_state_cpu_and_sent_and_errors_are_shortened() {
        let v = view(&status(PublisherState::Publishing));
        assert_eq!(v.status_line, "Publishing · CPU 12.3 % · 42 sent");
        assert_eq!(v.error_line, None);
        let mut s = status(PublisherState::Publishing);
        s.last_value = None;
        s.last_error = Some("e".repeat(100));
        let v = view(&s);
        assert_eq!(v.status_line, "Publishing · CPU – · 42 sent");
        assert_eq!(v.error_line.unwrap().chars().count(), "Last error: ".len() + 81);
    }

    #[test]
    fn retrying_shows_the_reason_and_the_outbox_counts() {
        let mut s = status(PublisherState::Backoff { reason: "cannot reach the broker".into(), next_try_ms: 1 });
        s.records_queued = 17;
        s.records_dropped = 3;
        let v = view(&s);
        assert_eq!(v.status_line, "Retrying · CPU 12.3 % · 42 sent · 17 waiting · 3 dropped");
        assert_eq!(v.error_line.as_deref(), Some("Last error: cannot reach the broker"));
    }
}
