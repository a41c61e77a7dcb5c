//! The settings file: where it lives and how it is read. A missing file means defaults; a file
//! that cannot be parsed is an error naming the file, the line and the field, and the file is
//! left untouched.

use std::path::{Path, PathBuf};

use hostpulse_core::settings::Settings;
use thiserror::Error;

/// Why the settings file could not be used.
#[derive(Debug, Error)]
pub enum SettingsFileError {
    /// No config directory could be determined (no home directory).
    #[error("no config directory for this user; pass --config PATH")]
    NoConfigDir,
    /// The file exists but could not be read.
    #[error("cannot read settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid settings TOML.
    #[error("settings file {path} is invalid: {message}fix the file or move it away to start from defaults")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming line, column and field.
        message: String,
    },
}

/// `<OS config dir>/hostpulse/settings.toml` (`~/.config/hostpulse/settings.toml` on Linux).
pub fn default_path() -> Result<PathBuf, SettingsFileError> {
    let dirs = directories::ProjectDirs::from("", "", "hostpulse").ok_or(SettingsFileError::NoConfigDir)?;
    Ok(dirs.config_dir().join("settings.toml"))
}

/// Reads settings from `path`; a file that does not exist gives the defaults.
pub fn load(path: &Path) -> Result<Settings, SettingsFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(source) => {
            return Err(SettingsFileError::Read { path: path.into(), source });
        }
    };
    toml::from_str(&text).map_err(|e| SettingsFileError::Parse { path: path.into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_values_override_them() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("none.toml")).unwrap(), Settings::default());
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "topic = \"metrics\"\nbuffer_span_ms = 250\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n").unwrap();
        let s = load(&p).unwrap();
        assert_eq!(s.topic, "metrics");
        assert_eq!(s.buffer_span_ms, 250);
        assert_eq!(s.interval_ms, 1000, "unset fields keep their defaults");
    }

    #[test]
    fn bad_files_name_the_field_and_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        for (text, needle) in [
            ("buffer_span_ms = \"fast\"", "buffer_span_ms"),
            ("interval_ms = -5", "interval_ms"),
            ("topik = \"x\"", "topik"),
            ("security_protocol = \"tls\"", "security_protocol"),
            ("\u{0}garbage", "line 1"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "the file is not rewritten");
        }
    }
}
