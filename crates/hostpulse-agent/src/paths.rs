//! Where HostPulse keeps its files, per OS (`directories`): settings in the config dir, the
//! workspace CA, the outbox and the pid file in the data dir.

use std::path::PathBuf;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "hostpulse")
}

/// `~/.local/share/hostpulse` on Linux.
pub fn data_dir() -> Option<PathBuf> {
    dirs().map(|d| d.data_dir().to_path_buf())
}
