//! Where HostPulse keeps its files, per OS (`directories`): settings in the config dir, the
//! workspace CA (and later the outbox) in the data dir.

use std::path::PathBuf;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "hostpulse")
}

/// `~/.config/hostpulse` on Linux.
pub fn config_dir() -> Option<PathBuf> {
    dirs().map(|d| d.config_dir().to_path_buf())
}

/// `~/.local/share/hostpulse` on Linux.
pub fn data_dir() -> Option<PathBuf> {
    dirs().map(|d| d.data_dir().to_path_buf())
}
