//! Quix mode: a streaming token becomes a ready Kafka publisher (Portal resolution, then the
//! workspace broker). The [`Connector`] seam lets the agent do this again when the token is
//! replaced while it publishes.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use hostpulse_core::secret::Secret;
use thiserror::Error;

use crate::portal::{Portal, PortalError, PortalOptions, QuixTarget};
use crate::publisher::{KafkaPublisher, PublishError, Publisher};
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

/// A future that yields a connected publisher.
pub type Connecting = Pin<Box<dyn Future<Output = Result<Box<dyn Publisher>, ConnectError>> + Send>>;

/// Turns a token into a connected publisher.
pub trait Connector: Send + Sync + 'static {
    /// Resolves and connects with `token` (from `source`, named in errors).
    fn connect(&self, token: Secret, source: TokenSource) -> Connecting;
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
    fn connect(&self, token: Secret, source: TokenSource) -> Connecting {
        let this = self.clone();
        Box::pin(async move {
            let (publisher, _) = this.publisher(token, source).await?;
            Ok(Box::new(publisher) as Box<dyn Publisher>)
        })
    }
}
