//! Connecting: the [`Connector`] seam through which the agent makes producers, at start, after
//! trouble (the watchdog) and when the token is replaced. Quix mode: a streaming token becomes a
//! ready Kafka publisher (Portal resolution, then the workspace broker); direct mode: a
//! configured broker.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use hostpulse_core::secret::Secret;
use thiserror::Error;

use crate::portal::{Portal, PortalError, PortalOptions, QuixTarget};
use crate::publisher::{KafkaPublisher, KafkaSettings, PublishError, Publisher};
use crate::token::TokenSource;

/// Why a token did not lead to a publisher.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The Portal step failed.
    #[error(transparent)]
    Portal(#[from] PortalError),
    /// The broker step failed.
    #[error(transparent)]
    Kafka(#[from] PublishError),
}

impl ConnectError {
    /// Whether the Quix Portal rejected the token (the user must enter another).
    pub fn is_token_rejected(&self) -> bool {
        matches!(self, ConnectError::Portal(PortalError::TokenRejected { .. }))
    }

    /// Whether only the user can fix it (a rejected token, a refused login, a setting): at the
    /// start this stops the agent with the message. Everything else (outages, a Portal answer
    /// HostPulse cannot use, a topic not ready yet, a CA file that cannot be written) is retried
    /// with backoff, as it may pass by itself.
    pub fn needs_user(&self) -> bool {
        match self {
            ConnectError::Portal(e) => e.needs_user(),
            ConnectError::Kafka(e) => e.needs_user(),
        }
    }
}

/// A streaming token, where it came from (named in errors), and the Portal it may be sent to.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The token.
    pub token: Secret,
    /// Where it came from.
    pub source: TokenSource,
    /// The only Portal API URL this token may go to (the desktop app binds the token to the URL
    /// the user confirmed, so that no reconnect sends it to a URL changed since); `None`: the one
    /// the settings name (the CLI's own settings and flags).
    pub portal_url: Option<String>,
}

impl Credential {
    /// A token for whichever Portal the settings name.
    pub fn new(token: Secret, source: TokenSource) -> Self {
        Credential { token, source, portal_url: None }
    }

    /// The same token, to be sent to `portal_url` only.
    pub fn bound_to(self, portal_url: &str) -> Self {
        Credential { portal_url: Some(portal_url.to_owned()), ..self }
    }
}

/// A future that yields a connected publisher.
pub type Connecting = Pin<Box<dyn Future<Output = Result<Box<dyn Publisher>, ConnectError>> + Send>>;

/// Makes connected publishers.
pub trait Connector: Send + Sync + 'static {
    /// Resolves and connects, with `credential` when the connector uses a token.
    fn connect(&self, credential: Option<Credential>) -> Connecting;

    /// Whether a token is needed (Quix mode).
    fn uses_token(&self) -> bool;
}

/// Connects to a configured broker (no token).
#[derive(Debug, Clone)]
pub struct DirectConnector(pub KafkaSettings);

impl Connector for DirectConnector {
    fn connect(&self, _: Option<Credential>) -> Connecting {
        let settings = self.0.clone();
        Box::pin(async move { Ok(Box::new(KafkaPublisher::connect(&settings).await?) as Box<dyn Publisher>) })
    }

    fn uses_token(&self) -> bool {
        false
    }
}

/// Connects through the Quix Portal.
#[derive(Debug, Clone)]
pub struct QuixConnector {
    /// Portal API base URL.
    pub portal_url: String,
    /// Workspace id, if chosen.
    pub workspace_id: Option<String>,
    /// Topic name.
    pub topic: String,
    /// Where the workspace CA is stored.
    pub data_dir: PathBuf,
    /// Verify the broker's TLS host name.
    pub verify_hostname: bool,
    /// Portal retries and waits.
    pub options: PortalOptions,
}

impl QuixConnector {
    /// Resolves the target through the Portal.
    pub async fn resolve(&self, token: Secret, source: TokenSource) -> Result<QuixTarget, PortalError> {
        let portal = Portal::new(&self.portal_url, token, source, self.options.clone())?;
        portal.resolve(self.workspace_id.as_deref(), &self.topic, &self.data_dir, self.verify_hostname).await
    }

    /// Resolves and connects.
    pub async fn publisher(
        &self,
        token: Secret,
        source: TokenSource,
    ) -> Result<(KafkaPublisher, QuixTarget), ConnectError> {
        let target = self.resolve(token, source).await?;
        tracing::info!(workspace = %target.workspace_id, topic = %target.topic_id, "Quix workspace resolved");
        let publisher = KafkaPublisher::connect_quix(&target).await?;
        Ok((publisher, target))
    }
}

impl Connector for QuixConnector {
    fn connect(&self, credential: Option<Credential>) -> Connecting {
        let this = self.clone();
        Box::pin(async move {
            let Credential { token, source, portal_url } = credential.ok_or(PortalError::Unreachable {
                url: this.portal_url.clone(),
                reason: "no streaming token".into(),
            })?;
            if portal_url.as_ref().is_some_and(|bound| *bound != this.portal_url) {
                return Err(PortalError::Url(format!(
                    "the stored streaming token was not confirmed for the Quix Portal at {}: confirm it, or enter the token for that Portal",
                    this.portal_url
                ))
                .into());
            }
            let (publisher, _) = this.publisher(token, source).await?;
            Ok(Box::new(publisher) as Box<dyn Publisher>)
        })
    }

    fn uses_token(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_bound_to_one_portal_is_never_sent_to_another() {
        let connector = QuixConnector {
            portal_url: "https://other.example/".into(),
            workspace_id: None,
            topic: "t".into(),
            data_dir: std::env::temp_dir(),
            verify_hostname: true,
            options: PortalOptions::default(),
        };
        let credential = Credential::new(Secret::new("sdk-x").unwrap(), TokenSource::CredentialStore)
            .bound_to("https://confirmed.example/");
        let e = connector.connect(Some(credential)).await.err().expect("refused");
        assert!(e.needs_user(), "{e}");
        assert!(e.to_string().contains("not confirmed for the Quix Portal at https://other.example/"), "{e}");
    }
}
