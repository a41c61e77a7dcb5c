//! The settings file: where it lives, how it is read and written. A missing file means defaults;
//! a file that cannot be parsed is an error naming the file, the line and the field, and the file
//! is left untouched. Saving is atomic and the file readable only by the user.

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
    /// The file could not be written.
    #[error("cannot save {path}: {source}")]
    Write {
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

/// Writes `settings` to `path` atomically, readable only by the user. With `keep_old`, the file
/// that was there (one that could not be read, say) is first copied to `settings.toml.unreadable`
/// next to it, so nothing the user wrote is lost; its path is returned.
pub fn save(path: &Path, settings: &Settings, keep_old: bool) -> Result<Option<PathBuf>, SettingsFileError> {
    let fail = |source: std::io::Error| SettingsFileError::Write { path: path.into(), source };
    let text = toml::to_string_pretty(settings).map_err(|e| fail(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let kept = if keep_old && path.exists() {
        let keep = path.with_extension("toml.unreadable");
        std::fs::copy(path, &keep).map_err(fail)?;
        Some(keep)
    } else {
        None
    };
    crate::private_file::write(path, text.as_bytes()).map_err(fail)?;
    Ok(kept)
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
    fn saved_settings_load_back_and_an_unreadable_file_is_kept_beside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/settings.toml");
        let s = Settings { topic: "saved".into(), tags: [("site".into(), "lab".into())].into(), ..Default::default() };
        assert_eq!(save(&p, &s, false).unwrap(), None);
        assert_eq!(load(&p).unwrap(), s);
        std::fs::write(&p, "garbage = [").unwrap();
        let kept = save(&p, &s, true).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "garbage = [");
        assert_eq!(load(&p).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
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
