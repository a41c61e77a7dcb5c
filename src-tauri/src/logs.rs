//! The desktop app's log: a file where the OS keeps logs (`paths::log_dir`), rotated daily with a
//! week kept, and standard error as well when the app was started from a terminal. The level is
//! `log_level` from the settings raised by `-v` flags, unless `HOSTPULSE_LOG` gives a filter of
//! its own; a `log_level` saved in the window takes effect at once.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use hostpulse_agent::assembly::{LOG_ENV, log_filter};
use hostpulse_agent::paths;
use hostpulse_core::settings::LogLevel;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// Log files kept (one a day).
const KEPT_FILES: usize = 7;

/// The log as set up: where its files are, and how to change its level.
pub struct Logs {
    /// The folder of the log files (none: no place for them, logging goes to standard error).
    pub dir: Option<PathBuf>,
    reload: reload::Handle<EnvFilter, Registry>,
    verbose: u8,
    /// `HOSTPULSE_LOG` set the filter: the settings do not change it.
    fixed: bool,
}

impl Logs {
    /// Sets up logging for the process, at `level` raised by `verbose`.
    pub fn init(level: LogLevel, verbose: u8) -> Logs {
        let from_env = std::env::var(LOG_ENV).ok().and_then(|f| EnvFilter::try_new(f).ok());
        let fixed = from_env.is_some();
        let (filter, reload) =
            reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(log_filter(level, verbose))));
        let dir = paths::log_dir().filter(|d| private_dir(d).is_ok());
        let file = dir.as_ref().and_then(|d| {
            RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("hostpulse-app")
                .filename_suffix("log")
                .max_log_files(KEPT_FILES)
                .build(d)
                .ok()
        });
        let to_file = file.map(|f| fmt::layer().with_ansi(false).with_writer(f));
        let to_terminal =
            (std::io::stderr().is_terminal() || to_file.is_none()).then(|| fmt::layer().with_writer(std::io::stderr));
        tracing_subscriber::registry().with(filter).with(to_file).with(to_terminal).init();
        match &dir {
            Some(d) => tracing::info!(dir = %d.display(), "logging to files in {}", d.display()),
            None => tracing::warn!("no folder for log files; logging to standard error only"),
        }
        Logs { dir, reload, verbose, fixed }
    }

    /// Applies a `log_level` saved in the window.
    pub fn set_level(&self, level: LogLevel) {
        if self.fixed {
            return;
        }
        if let Err(e) = self.reload.reload(EnvFilter::new(log_filter(level, self.verbose))) {
            tracing::warn!("the log level stays as it was: {e}");
        }
    }
}

/// Creates `dir`, readable only by the user on Unix.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `-v` flags on the app's command line (`-v`, `-vv`, `--verbose`), counted.
pub fn verbosity(args: impl IntoIterator<Item = String>) -> u8 {
    args.into_iter()
        .map(|a| match a.as_str() {
            "--verbose" => 1,
            s if s.len() > 1 && s.starts_with('-') && !s.starts_with("--") && s[1..].chars().all(|c| c == 'v') => {
                s.len() - 1
            }
            _ => 0,
        })
        .sum::<usize>()
        .min(usize::from(u8::MAX)) as u8
}
