//! `hostpulse token set|status|clear`, and the pid file through which `token set` tells a
//! running `hostpulse run` (SIGHUP) to switch to the new token.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hostpulse_agent::paths;
use hostpulse_agent::token::{SecretStore, TOKEN_ENV};
use hostpulse_core::secret::Secret;

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
    Secret::new(text).context("no token given: pipe the token to `hostpulse token set`, or type it at the prompt")
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

fn status(store: &dyn SecretStore) -> Result<()> {
    if std::env::var(TOKEN_ENV).ok().and_then(Secret::new).is_some() {
        println!("token: from the environment variable {TOKEN_ENV} (it overrides the credential store)");
        return Ok(());
    }
    match store.get() {
        Ok(Some(_)) => println!("token: stored in {}", store.describe()),
        Ok(None) => println!("token: none — run `hostpulse token set`, or set {TOKEN_ENV}"),
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

/// `<data dir>/run.pid`: written by `hostpulse run` in Quix mode, removed when it stops.
pub struct PidFile(PathBuf);

impl PidFile {
    fn path() -> Option<PathBuf> {
        paths::data_dir().map(|d| d.join("run.pid"))
    }

    /// Records this process as the running agent.
    pub fn create() -> Result<Self> {
        let path = Self::path().context("no data directory for this user (is HOME set?)")?;
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        hostpulse_agent::fsutil::write_private(&path, std::process::id().to_string().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }

    /// The pid of a running agent, if its pid file names a live process.
    pub fn running() -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(Self::path()?).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(unix)]
fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[cfg(not(unix))]
fn alive(_: i32) -> bool {
    false
}
