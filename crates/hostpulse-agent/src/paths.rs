//! Where HostPulse keeps its files, per OS (`directories`): settings in the config dir, the
//! workspace CA, the outbox and the pid file in the data dir, the desktop app's logs where the
//! OS keeps logs.

use std::path::PathBuf;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "hostpulse")
}

/// `~/.local/share/hostpulse` on Linux.
pub fn data_dir() -> Option<PathBuf> {
    dirs().map(|d| d.data_dir().to_path_buf())
}

/// Where the desktop app writes its log files: `~/.local/state/hostpulse/logs` on Linux (the XDG
/// state dir), `~/Library/Logs/hostpulse` on macOS, `%LOCALAPPDATA%\hostpulse\logs` on Windows.
pub fn log_dir() -> Option<PathBuf> {
    log_dir_for(&dirs()?)
}

#[cfg(target_os = "linux")]
fn log_dir_for(d: &directories::ProjectDirs) -> Option<PathBuf> {
    d.state_dir().map(|s| s.join("logs"))
}

#[cfg(target_os = "macos")]
fn log_dir_for(_: &directories::ProjectDirs) -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().join("Library/Logs/hostpulse"))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn log_dir_for(d: &directories::ProjectDirs) -> Option<PathBuf> {
    Some(d.data_local_dir().join("logs"))
}
