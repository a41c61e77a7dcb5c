//! Process signals: Ctrl-C/SIGTERM stop the agent; SIGHUP makes it read the token again.
//! Handlers are installed before anything slow happens, so a signal is never lost to the
//! default action (which would kill the process without closing the stream).

use anyhow::Result;
// Only the unix handlers attach context to their errors (unused, hence a warning, elsewhere).
#[cfg(unix)]
use anyhow::Context;

/// Installs the Ctrl-C/SIGTERM handlers now and returns a future that completes on either.
#[cfg(unix)]
pub fn shutdown() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Installs the Ctrl-C handler and returns a future that completes on it.
#[cfg(not(unix))]
pub fn shutdown() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// SIGHUP: "the token changed, read it again".
pub struct Reload {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Reload {
    /// Installs the handler.
    pub fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Reload { hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")? })
        }
        #[cfg(not(unix))]
        Ok(Reload {})
    }

    /// Completes on each SIGHUP (never on platforms without it).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.hup.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}
