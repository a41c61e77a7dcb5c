//! The tray: what it shows is computed from the agent's `Status` by core's pure
//! [`hostpulse_core::tray::view`], the icon drawn by [`hostpulse_core::tray::icon`] (the load as
//! a level, the state as a badge); [`Tray`] applies that view to the tray icon and its menu. On
//! Linux the tray has no click events (libayatana-appindicator), so everything is in the menu.

use hostpulse_core::tray::{ICON_SIZE, IconPacer, Look, TrayView};
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
    /// Opens the folder of the log files.
    pub const LOGS: &str = "logs";
    /// Flushes, closes the stream and exits.
    pub const QUIT: &str = "quit";
}

/// The icon for a look and a level.
fn image(look: Look, level: Option<u8>) -> Image<'static> {
    Image::new_owned(hostpulse_core::tray::icon(look, level), ICON_SIZE, ICON_SIZE)
}

/// The tray icon and the menu items whose text changes.
pub struct Tray {
    icon: TrayIcon,
    status: MenuItem<Wry>,
    error: MenuItem<Wry>,
    toggle: MenuItem<Wry>,
    /// What the tray shows now (`None` before the first view).
    shown: Option<TrayView>,
    /// When the icon is drawn again.
    pacer: IconPacer,
    started: std::time::Instant,
}

impl Tray {
    /// Builds the tray with its menu; `on_menu` gets the id of the clicked item.
    pub fn build(app: &AppHandle, on_menu: impl Fn(&AppHandle, &str) + Send + Sync + 'static) -> tauri::Result<Self> {
        let status = MenuItem::with_id(app, ids::STATUS, "Starting…", false, None::<&str>)?;
        let error = MenuItem::with_id(app, ids::ERROR, "No errors", false, None::<&str>)?;
        let toggle = MenuItem::with_id(app, ids::TOGGLE, "Pause publishing", false, None::<&str>)?;
        let settings = MenuItem::with_id(app, ids::SETTINGS, "Settings…", true, None::<&str>)?;
        let logs = MenuItem::with_id(app, ids::LOGS, "Open log folder", true, None::<&str>)?;
        let quit = MenuItem::with_id(app, ids::QUIT, "Quit", true, None::<&str>)?;
        let separator = PredefinedMenuItem::separator(app)?;
        let menu = Menu::with_items(app, &[&status, &error, &separator, &toggle, &settings, &logs, &quit])?;
        let icon = TrayIconBuilder::with_id("hostpulse")
            .icon(image(Look::Unconfigured, None))
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
        Ok(Tray {
            icon,
            status,
            error,
            toggle,
            shown: None,
            pacer: IconPacer::default(),
            started: std::time::Instant::now(),
        })
    }

    /// Shows `v`, touching only what changed since the last view: each change is a round trip
    /// to the GTK main thread (and a D-Bus update of the indicator), and most status changes
    /// only move the status line. The icon changes only when its picture does: a new badge at
    /// once, the load in another tenth at most once a second ([`IconPacer`]).
    pub fn apply(&mut self, v: &TrayView) -> tauri::Result<()> {
        let last = self.shown.take();
        if self.pacer.draw(self.started.elapsed(), v.look, v.level)
            && let Err(e) = self.icon.set_icon(Some(image(v.look, v.level)))
        {
            self.pacer = IconPacer::default(); // drawn again with the next view
            return Err(e);
        }
        if last.as_ref().map(|l| l.look) != Some(v.look) {
            self.icon.set_tooltip(Some(format!("HostPulse — {}", v.look.name())))?;
        }
        if last.as_ref().map(|l| &l.status_line) != Some(&v.status_line) {
            self.status.set_text(&v.status_line)?;
        }
        if last.as_ref().map(|l| &l.error_line) != Some(&v.error_line) {
            self.error.set_text(v.error_line.as_deref().unwrap_or("No errors"))?;
        }
        if last.as_ref().map(|l| (l.toggle_label, l.toggle_enabled)) != Some((v.toggle_label, v.toggle_enabled)) {
            self.toggle.set_text(v.toggle_label)?;
            self.toggle.set_enabled(v.toggle_enabled)?;
        }
        // Recorded only once all of it was shown: after a failure the next view redoes it all.
        self.shown = Some(v.clone());
        Ok(())
    }
}
