//! `hostpulse token set|status|clear`, and the pid file through which `token set` tells a
//! running `hostpulse run` (SIGHUP) to switch to the new token.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hostpulse_agent::paths;
use hostpulse_agent::token::{self, SecretStore, TOKEN_CREDENTIAL, TOKEN_ENV, TokenSource};
use hostpulse_core::secret::{Secret, TokenError};

use crate::TokenCommand;

pub fn run(command: TokenCommand, store: &dyn SecretStore) -> Result<()> {
    match command {
        TokenCommand::Set => set(store),
        TokenCommand::Status => status(store),
        TokenCommand::Clear => {
            if store.clear()? {
                println!("hostpulse: token removed from {}", store.describe());
            } else {
                println!("hostpulse: there was no token in {}", store.describe());
            }
            Ok(())
        }
    }
}

fn read_token() -> Result<Secret> {
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Quix streaming token (input hidden): ").context("cannot read the token")?
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the token from standard input")?;
        s
    };
    Secret::token(text).map_err(|e| match e {
        TokenError::Empty => {
            anyhow::anyhow!("no token given: pipe the token to `hostpulse token set`, or type it at the prompt")
        }
        TokenError::Malformed => anyhow::anyhow!("{e}"),
    })
}

fn set(store: &dyn SecretStore) -> Result<()> {
    let token = read_token()?;
    store.set(&token)?;
    println!("hostpulse: token stored in {}", store.describe());
    if std::env::var_os(TOKEN_ENV).is_some() {
        eprintln!("hostpulse: note: {TOKEN_ENV} is set in this environment and takes precedence over the stored token");
    }
    match PidFile::running() {
        Some(pid) => {
            signal_reload(pid)?;
            println!("hostpulse: the running agent (pid {pid}) switches to the new token now");
        }
        None => println!("hostpulse: `hostpulse run` will use it"),
    }
    Ok(())
}

/// Says which token `hostpulse run` would use and where it comes from, never the token.
fn status(store: &dyn SecretStore) -> Result<()> {
    match token::resolve(store) {
        Ok(Some((_, TokenSource::Environment))) => println!(
            "token: from the environment variable {TOKEN_ENV} (it overrides the systemd credential and the credential store)"
        ),
        Ok(Some((_, TokenSource::SystemdCredential))) => {
            println!("token: from the systemd credential {TOKEN_CREDENTIAL} (it overrides the credential store)")
        }
        Ok(Some((_, TokenSource::CredentialStore))) => println!("token: stored in {}", store.describe()),
        Ok(None) => println!(
            "token: none — run `hostpulse token set`, set {TOKEN_ENV}, or pass the systemd credential {TOKEN_CREDENTIAL}"
        ),
        Err(e) => bail!("token: unknown — {e}"),
    }
    Ok(())
}

#[cfg(unix)]
fn signal_reload(pid: i32) -> Result<()> {
    use nix::sys::signal::{Signal, kill};
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).with_context(|| format!("cannot signal pid {pid}"))
}

#[cfg(not(unix))]
fn signal_reload(_: i32) -> Result<()> {
    println!("hostpulse: restart the running agent to use the new token");
    Ok(())
}

/// `<data dir>/run.pid`: written by `hostpulse run` in Quix mode and locked (`flock`) for as long
/// as it runs. The lock, not the file, says the agent lives: after a `kill -9`, an OOM kill or a
/// power cut the file stays, but its lock is gone, so a stale file (whose pid may belong to any
/// other process by now) is never trusted.
pub struct PidFile {
    path: PathBuf,
    /// Holds the lock until dropped.
    _file: std::fs::File,
}

impl PidFile {
    fn path() -> Option<PathBuf> {
        paths::data_dir().map(|d| d.join("run.pid"))
    }

    /// Records this process as the running agent and locks the file.
    pub fn create() -> Result<Self> {
        let path = Self::path().context("no data directory for this user (is HOME set?)")?;
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                bail!("another `hostpulse run` is running (its pid is in {}): stop it first", path.display())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        // Replaced in place: the lock belongs to this file, a rename would leave it behind.
        file.set_len(0)?;
        (&file).write_all(std::process::id().to_string().as_bytes())?;
        file.sync_all()?;
        Ok(PidFile { path, _file: file })
    }

    /// The pid of the running agent: the one in a pid file whose lock is held. A file nobody
    /// holds is stale and ignored.
    pub fn running() -> Option<i32> {
        let path = Self::path()?;
        let file = std::fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                eprintln!("hostpulse: note: {} is left from an agent that no longer runs; ignored", path.display());
                None
            }
            Err(std::fs::TryLockError::WouldBlock) => std::io::read_to_string(&file).ok()?.trim().parse().ok(),
            Err(std::fs::TryLockError::Error(_)) => None,
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the file handle right after.
        let _ = std::fs::remove_file(&self.path);
    }
}
