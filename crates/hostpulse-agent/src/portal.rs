//! The Quix Portal API client: from a streaming token to Kafka producer settings and a ready
//! topic (`docs/spec/quix-portal-api.md`, "Recommended flow for the Rust app").
//!
//! token -> workspace (configured, or the token's only one) -> broker settings
//! (`/workspaces/{ws}/broker/librdkafka`, or the workspace's `broker` object plus the certificate
//! ZIP when the Portal lacks that endpoint) -> topic `{ws}-{name}` (created when missing, polled
//! until `Ready`). Every request carries `Authorization: Bearer` and `X-Version: 2.0`. Server
//! errors and timeouts are retried with capped exponential backoff and jitter; a rejected token
//! is reported with the source it came from. The token never appears in an error or a log.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hostpulse_core::secret::Secret;
use hostpulse_core::settings::{check_topic, check_workspace_id};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::backoff::Backoff;
use crate::token::TokenSource;

/// What the Portal calls its API version; sent on every request as 3.x does.
const API_VERSION: &str = "2.0";

/// Why the Portal did not give us a place to publish.
#[derive(Debug, Error)]
pub enum PortalError {
    /// 401/403: the token is wrong, expired or revoked.
    #[error(
        "the Quix Portal rejected the streaming token from {token_source} (HTTP {status}{}): replace it with a valid streaming token",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    TokenRejected {
        /// Where the token came from.
        token_source: TokenSource,
        /// 401 or 403.
        status: u16,
        /// The Portal's message.
        message: Option<String>,
    },
    /// 404 for a workspace.
    #[error(
        "the Quix Portal has no workspace `{workspace}` for this token: check `workspace_id` (or Quix__Workspace__Id)"
    )]
    WorkspaceNotFound {
        /// The workspace id asked for.
        workspace: String,
    },
    /// The token sees no workspace.
    #[error("the streaming token has access to no workspace: use a streaming token of a Quix workspace")]
    NoWorkspaces,
    /// The token sees several workspaces and none was chosen.
    #[error("the streaming token has access to several workspaces; set `workspace_id` to one of: {}", list.join(", "))]
    SeveralWorkspaces {
        /// `id (name)` of each.
        list: Vec<String>,
    },
    /// The topic could not be created or became unusable.
    #[error("Quix topic `{topic}` is not usable: {reason}")]
    Topic {
        /// The topic name.
        topic: String,
        /// Status or error text from the Portal.
        reason: String,
    },
    /// Any other unexpected status, after retries for 5xx.
    #[error("the Quix Portal at {url} answered HTTP {status} to {method} {path}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The Portal URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Method.
        method: String,
        /// Path relative to the Portal URL.
        path: String,
        /// The Portal's message.
        message: Option<String>,
    },
    /// The Portal could not be reached (connection refused, DNS, TLS, timeout), after retries.
    #[error(
        "cannot reach the Quix Portal at {url}: {reason}; check `portal_url` (or Quix__Portal__Api) and the network"
    )]
    Unreachable {
        /// The Portal URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A 2xx answer that is not what the spec describes (a maintenance page, a proxy's answer,
    /// a value HostPulse will not use).
    #[error("the Quix Portal sent an answer HostPulse cannot use for {url}: {reason}; check `portal_url`")]
    Malformed {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An answer larger than HostPulse reads.
    #[error(
        "the Quix Portal answered {url} with more than {} KiB, more than HostPulse reads; check `portal_url`",
        MAX_BODY / 1024
    )]
    TooLarge {
        /// The URL asked.
        url: String,
    },
    /// `portal_url` is not a URL HostPulse sends the token to.
    #[error("{0}")]
    Url(String),
    /// The workspace CA could not be stored.
    #[error("cannot store the workspace CA certificate in {path}: {reason}")]
    Certificate {
        /// Where we tried.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl PortalError {
    /// Whether the same request may work a moment later (server errors, 429, the network): the
    /// client retries those itself, a few times, before it gives up on a connection attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            PortalError::Unreachable { .. } => true,
            PortalError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The error with every occurrence of `secret` (the token) blacked out. Answers with a 2xx
    /// status are quoted in errors (a parser's complaint, an id, a setting's value, a topic's
    /// last error): a server that echoes the request can put the token in any of them.
    fn redacted(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let r = |text: String| if text.contains(secret) { text.replace(secret, "[redacted]") } else { text };
        let ro = |text: Option<String>| text.map(r);
        match self {
            PortalError::TokenRejected { token_source, status, message } => {
                PortalError::TokenRejected { token_source, status, message: ro(message) }
            }
            PortalError::WorkspaceNotFound { workspace } => PortalError::WorkspaceNotFound { workspace: r(workspace) },
            PortalError::NoWorkspaces => PortalError::NoWorkspaces,
            PortalError::SeveralWorkspaces { list } => {
                PortalError::SeveralWorkspaces { list: list.into_iter().map(r).collect() }
            }
            PortalError::Topic { topic, reason } => PortalError::Topic { topic: r(topic), reason: r(reason) },
            PortalError::Status { url, status, method, path, message } => {
                PortalError::Status { url: r(url), status, method, path: r(path), message: ro(message) }
            }
            PortalError::Unreachable { url, reason } => PortalError::Unreachable { url: r(url), reason: r(reason) },
            PortalError::Malformed { url, reason } => PortalError::Malformed { url: r(url), reason: r(reason) },
            PortalError::TooLarge { url } => PortalError::TooLarge { url: r(url) },
            PortalError::Url(text) => PortalError::Url(r(text)),
            PortalError::Certificate { path, reason } => PortalError::Certificate { path, reason: r(reason) },
        }
    }

    /// Whether only the user can fix it: a rejected token, a workspace to choose or that does
    /// not exist, a Portal URL HostPulse will not send the token to. Everything else the agent
    /// tries again later, as it may pass by itself.
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            PortalError::TokenRejected { .. }
                | PortalError::WorkspaceNotFound { .. }
                | PortalError::NoWorkspaces
                | PortalError::SeveralWorkspaces { .. }
                | PortalError::Url(_)
        )
    }
}

/// The most HostPulse reads of one Portal answer (JSON or the certificate ZIP): the real ones
/// are a few KiB; anything larger is not the Portal HostPulse knows.
pub const MAX_BODY: usize = 1 << 20;

/// The most HostPulse unpacks of `ca.cert` from the certificate ZIP (a CA is a few KiB).
pub const MAX_CA_CERT: u64 = 256 * 1024;

/// The most characters of a Portal message HostPulse repeats in logs and the window.
const MAX_MESSAGE_CHARS: usize = 200;

/// How the Portal client retries and waits.
#[derive(Debug, Clone)]
pub struct PortalOptions {
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Retries of 5xx, 429 and transport errors.
    pub backoff: Backoff,
    /// Pause between topic status polls.
    pub topic_poll: Duration,
    /// Longest wait for a new topic to become `Ready`.
    pub topic_ready_timeout: Duration,
}

impl Default for PortalOptions {
    fn default() -> Self {
        PortalOptions {
            request_timeout: Duration::from_secs(30),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(16), 5),
            topic_poll: Duration::from_secs(1),
            topic_ready_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the connection leads: the Kafka settings and topic to produce to.
#[derive(Clone)]
pub struct QuixTarget {
    /// The workspace used.
    pub workspace_id: String,
    /// The Kafka topic (the Portal topic's `id`, `{workspaceId}-{name}`).
    pub topic_id: String,
    /// librdkafka connection settings (contains the SASL password: never log).
    pub kafka: BTreeMap<String, String>,
}

impl std::fmt::Debug for QuixTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuixTarget")
            .field("workspace_id", &self.workspace_id)
            .field("topic_id", &self.topic_id)
            .field("kafka_keys", &self.kafka.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A Portal API client for one token.
pub struct Portal {
    http: reqwest::Client,
    base: String,
    token: Secret,
    source: TokenSource,
    options: PortalOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Workspace {
    workspace_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    broker: Option<WorkspaceBroker>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceBroker {
    address: String,
    #[serde(default)]
    security_mode: Option<String>,
    #[serde(default)]
    sasl_mechanism: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    has_certificate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Topic {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    last_error: Option<String>,
}

/// librdkafka keys we take from the Portal: connection and security only, so the Portal cannot
/// change our delivery guarantees (acks, idempotence) nor turn TLS host name verification off
/// (only `tls_verify_hostname = false` does that).
const PORTAL_KEYS: &[&str] = &[
    "bootstrap.servers",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "client.id",
];

impl Portal {
    /// A client for `base_url` (ending in `/`) using `token` from `source`.
    pub fn new(
        base_url: &str,
        token: Secret,
        source: TokenSource,
        options: PortalOptions,
    ) -> Result<Self, PortalError> {
        hostpulse_core::settings::check_portal_url(base_url).map_err(|e| PortalError::Url(e.message))?;
        // And as the HTTP client reads it: plain http only to this machine.
        let parsed =
            reqwest::Url::parse(base_url).map_err(|e| PortalError::Url(format!("`portal_url` {base_url:?}: {e}")))?;
        if parsed.scheme() != "https" && !parsed.host_str().is_some_and(hostpulse_core::settings::is_loopback_host) {
            return Err(PortalError::Url(format!("`portal_url` must use https://, got {base_url:?}")));
        }
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .user_agent(concat!("hostpulse/", env!("CARGO_PKG_VERSION")))
            // The Portal API does not redirect; following one could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        // A proxy from `http_proxy`/`ALL_PROXY` would get a plain-http request, bearer token and
        // all, on its way to this machine (reqwest does not exempt loopback hosts): plain http
        // goes direct. Over https a proxy sees only an encrypted tunnel, and may be the way out.
        let http = if parsed.scheme() == "http" { http.no_proxy() } else { http };
        let http =
            http.build().map_err(|e| PortalError::Unreachable { url: base_url.into(), reason: e.to_string() })?;
        let base = if base_url.ends_with('/') { base_url.to_owned() } else { format!("{base_url}/") };
        Ok(Portal { http, base, token, source, options })
    }

    /// Resolves the workspace, broker settings (CA stored under `data_dir`) and topic.
    pub async fn resolve(
        &self,
        workspace: Option<&str>,
        topic: &str,
        data_dir: &Path,
        verify_hostname: bool,
    ) -> Result<QuixTarget, PortalError> {
        let workspace_id = match workspace {
            Some(ws) => ws.to_owned(),
            None => self.discover_workspace().await?,
        };
        let kafka = self.broker_settings(&workspace_id, data_dir, verify_hostname).await?;
        let topic_id = self.ensure_topic(&workspace_id, topic).await?;
        Ok(QuixTarget { workspace_id, topic_id, kafka })
    }

    /// The token's only workspace.
    pub async fn discover_workspace(&self) -> Result<String, PortalError> {
        self.redact(self.only_workspace().await)
    }

    /// The librdkafka connection settings of workspace `ws` (CA stored under `data_dir`).
    pub async fn broker_settings(
        &self,
        ws: &str,
        data_dir: &Path,
        verify_hostname: bool,
    ) -> Result<BTreeMap<String, String>, PortalError> {
        self.redact(self.workspace_broker_settings(ws, data_dir, verify_hostname).await)
    }

    /// The Kafka topic id of topic `name` in `ws`, creating it and waiting until it is Ready.
    pub async fn ensure_topic(&self, ws: &str, name: &str) -> Result<String, PortalError> {
        self.redact(self.ready_topic(ws, name).await)
    }

    /// `result` with the token blacked out of its error ([`PortalError::redacted`]): every
    /// error leaves the client through here.
    fn redact<T>(&self, result: Result<T, PortalError>) -> Result<T, PortalError> {
        result.map_err(|e| e.redacted(self.token.expose()))
    }

    async fn only_workspace(&self) -> Result<String, PortalError> {
        let list: Vec<Workspace> = self.get_json("workspaces").await?;
        match list.as_slice() {
            [] => Err(PortalError::NoWorkspaces),
            // The id goes into URLs and the CA file's path: the settings field's rule applies.
            [one] => match check_workspace_id(&one.workspace_id) {
                Ok(()) => Ok(one.workspace_id.clone()),
                Err(_) => Err(PortalError::Malformed {
                    url: self.url("workspaces"),
                    reason: format!(
                        "the workspace id {:?} is not 1 to 100 letters, digits, `-` or `_`",
                        quote(&one.workspace_id, self.token.expose())
                    ),
                }),
            },
            many => Err(PortalError::SeveralWorkspaces {
                list: many
                    .iter()
                    .map(|w| format!("{} ({})", w.workspace_id, w.name.as_deref().unwrap_or("unnamed")))
                    .collect(),
            }),
        }
    }

    async fn workspace_broker_settings(
        &self,
        ws: &str,
        data_dir: &Path,
        verify_hostname: bool,
    ) -> Result<BTreeMap<String, String>, PortalError> {
        let path = format!("workspaces/{ws}/broker/librdkafka");
        let mut kafka = match self.request(Method::GET, &path, None).await {
            Ok((_, body)) => self.map_librdkafka(ws, &path, &body, data_dir)?,
            Err(PortalError::Status { status: 404, .. }) => {
                tracing::info!("the Portal has no librdkafka settings endpoint; using the workspace's broker object");
                self.map_workspace_broker(ws, data_dir).await?
            }
            Err(e) => return Err(e),
        };
        if !kafka.contains_key("bootstrap.servers") {
            return Err(PortalError::Malformed { url: self.url(&path), reason: "no `bootstrap.servers`".into() });
        }
        if !verify_hostname {
            tracing::warn!("TLS host name verification of the broker is off (`tls_verify_hostname = false`)");
            kafka.insert("ssl.endpoint.identification.algorithm".into(), "none".into());
        }
        Ok(kafka)
    }

    fn map_librdkafka(
        &self,
        ws: &str,
        path: &str,
        body: &[u8],
        data_dir: &Path,
    ) -> Result<BTreeMap<String, String>, PortalError> {
        let malformed = |reason: String| PortalError::Malformed { url: self.url(path), reason };
        let map: BTreeMap<String, Value> = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        let mut kafka = BTreeMap::new();
        for (k, v) in &map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                _ => return Err(malformed(format!("`{k}` is not a string"))),
            };
            if k == "ssl.ca.cert" {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| malformed(format!("`ssl.ca.cert` is not base64: {e}")))?;
                let file = store_ca(data_dir, ws, &pem)?;
                kafka.insert("ssl.ca.location".into(), file.to_string_lossy().into_owned());
            } else if PORTAL_KEYS.contains(&k.as_str()) {
                let key = if k == "sasl.mechanisms" { "sasl.mechanism".to_owned() } else { k.clone() };
                kafka.insert(key, text);
            } else {
                tracing::debug!(key = %quote(k, self.token.expose()), "ignoring a Portal librdkafka setting that is not about the connection");
            }
        }
        if let Some(p) = kafka.get_mut("security.protocol") {
            *p = p.to_ascii_lowercase();
        }
        if let Some(m) = kafka.get_mut("sasl.mechanism") {
            *m = m.to_ascii_uppercase();
        }
        Ok(kafka)
    }

    /// The 0.5.7 path (`docs/spec/quix-portal-api.md`, "0.5.7 (from the workspace `broker` object)"): the workspace's `broker` object and the certificate ZIP.
    async fn map_workspace_broker(&self, ws: &str, data_dir: &Path) -> Result<BTreeMap<String, String>, PortalError> {
        let path = format!("workspaces/{ws}");
        let w: Workspace = self.get_json(&path).await?;
        if w.status.as_deref() == Some("Deleting") {
            return Err(PortalError::Malformed {
                url: self.url(&path),
                reason: format!("workspace {ws} is being deleted"),
            });
        }
        let malformed = |reason: String| PortalError::Malformed { url: self.url(&path), reason };
        let b = w.broker.ok_or_else(|| malformed("no `broker`".into()))?;
        let mode = b.security_mode.as_deref().unwrap_or("PlainText");
        let (protocol, tls, sasl) = match mode {
            "PlainText" => ("plaintext", false, false),
            "Sasl" => ("sasl_plaintext", false, true),
            "Ssl" => ("ssl", true, false),
            "SaslSsl" => ("sasl_ssl", true, true),
            other => {
                let other = quote(other, self.token.expose());
                return Err(malformed(format!("unknown `broker.securityMode` {other:?}")));
            }
        };
        let mut kafka = BTreeMap::from([
            ("bootstrap.servers".to_owned(), b.address.clone()),
            ("security.protocol".to_owned(), protocol.to_owned()),
        ]);
        if sasl {
            let mechanism = match b.sasl_mechanism.as_deref() {
                Some("Plain") => "PLAIN",
                Some("ScramSha256") => "SCRAM-SHA-256",
                Some("ScramSha512") => "SCRAM-SHA-512",
                Some("Gssapi") => "GSSAPI",
                other => {
                    let got = quote(other.unwrap_or("(none)"), self.token.expose());
                    return Err(malformed(format!(
                        "unsupported `broker.saslMechanism` {got:?}: HostPulse supports Plain, ScramSha256, ScramSha512 and Gssapi"
                    )));
                }
            };
            kafka.insert("sasl.mechanism".into(), mechanism.into());
            kafka.insert("sasl.username".into(), b.username.clone().unwrap_or_default());
            kafka.insert("sasl.password".into(), b.password.clone().unwrap_or_default());
        }
        // 0.5.7 assumes a certificate when `hasCertificate` is absent.
        if tls && b.has_certificate.unwrap_or(true) {
            let cert_path = format!("workspaces/{ws}/certificates");
            let (status, zip) = self.request(Method::GET, &cert_path, None).await?;
            if status != StatusCode::NO_CONTENT && !zip.is_empty() {
                let pem =
                    ca_from_zip(&zip).map_err(|reason| PortalError::Malformed { url: self.url(&cert_path), reason })?;
                let file = store_ca(data_dir, ws, &pem)?;
                kafka.insert("ssl.ca.location".into(), file.to_string_lossy().into_owned());
            }
        }
        Ok(kafka)
    }

    async fn ready_topic(&self, ws: &str, name: &str) -> Result<String, PortalError> {
        let topic_error = |reason: String| PortalError::Topic { topic: name.into(), reason };
        let path = format!("{ws}/topics/{name}");
        let topic: Topic = match self.get_json(&path).await {
            Ok(t) => t,
            Err(PortalError::Status { status: 404, .. }) => {
                tracing::info!(topic = name, workspace = ws, "creating the Quix topic");
                let body = serde_json::json!({ "name": name });
                match self.request(Method::POST, &format!("{ws}/topics"), Some(body)).await {
                    Ok(_) => {}
                    Err(PortalError::Status { status: 400 | 409, message: Some(m), .. })
                        if m.contains("already exists") => {}
                    Err(e @ PortalError::Status { .. }) => return Err(topic_error(format!("creating it failed: {e}"))),
                    Err(e) => return Err(e),
                }
                self.get_json(&path).await?
            }
            Err(e) => return Err(e),
        };
        let deadline = tokio::time::Instant::now() + self.options.topic_ready_timeout;
        let mut topic = topic;
        loop {
            match topic.status.as_deref().unwrap_or("Ready") {
                "Ready" => return self.topic_id(&path, topic.id),
                "Creating" => {}
                "Error" => {
                    return Err(topic_error(format!(
                        "the Portal reports an error: {}",
                        quote(topic.last_error.as_deref().unwrap_or("no details"), self.token.expose())
                    )));
                }
                "Deleting" => return Err(topic_error("it is being deleted".into())),
                other => {
                    tracing::warn!(
                        topic = name,
                        status = quote(other, self.token.expose()),
                        "Quix topic is not Ready; using it anyway"
                    );
                    return self.topic_id(&path, topic.id);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(topic_error(format!(
                    "still Creating after {} s",
                    self.options.topic_ready_timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.options.topic_poll).await;
            topic = self.get_json(&path).await?;
        }
    }

    /// The Kafka topic the Portal named, if it is a valid Kafka topic name.
    fn topic_id(&self, path: &str, id: String) -> Result<String, PortalError> {
        match check_topic(&id) {
            Ok(()) => Ok(id),
            Err(_) => Err(PortalError::Malformed {
                url: self.url(path),
                reason: format!("the topic id {:?} is not a valid Kafka topic name", quote(&id, self.token.expose())),
            }),
        }
    }

    /// The full URL of `path`, for messages.
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, PortalError> {
        let (_, body) = self.request(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // A proxy's or a maintenance page answers 200 with HTML: say so rather than where
            // the JSON parser stumbled.
            let html = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
            let reason = if html { "an HTML page, not the Portal API's JSON".to_owned() } else { e.to_string() };
            PortalError::Malformed { url: self.url(path), reason }
        })
    }

    /// One request with retries for transient failures; 2xx gives the body, anything else an error.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Vec<u8>), PortalError> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0;
        loop {
            let result = self.request_once(method.clone(), &url, path, body.as_ref()).await;
            match result {
                Err(e) if e.is_transient() && attempt + 1 < self.options.backoff.attempts() => {
                    let wait = self.options.backoff.delay(attempt);
                    tracing::warn!("{e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn request_once(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), PortalError> {
        let mut req =
            self.http.request(method.clone(), url).bearer_auth(self.token.expose()).header("X-Version", API_VERSION);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| PortalError::Unreachable { url: self.base.clone(), reason: describe(&e) };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let too_large = || PortalError::TooLarge { url: url.to_owned() };
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, bytes));
        }
        // A proxy's page may echo the request, Authorization header and all.
        let message = portal_message(&bytes, self.token.expose());
        Err(match status.as_u16() {
            401 | 403 => PortalError::TokenRejected { token_source: self.source, status: status.as_u16(), message },
            404 if path.starts_with("workspaces/") && path.matches('/').count() == 1 => {
                PortalError::WorkspaceNotFound { workspace: path.trim_start_matches("workspaces/").into() }
            }
            s => PortalError::Status {
                url: self.base.clone(),
                status: s,
                method: method.to_string(),
                path: path.into(),
                message,
            },
        })
    }
}

/// The transport error without the URL's query (we put nothing secret there, but keep it short).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The Portal's `{"message": ...}` (or the body text), with `secret` (the token) blacked out,
/// shortened for logs and the window. (A proxy's error page may echo the request's headers.)
fn portal_message(body: &[u8], secret: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.get("message").and_then(Value::as_str)
    {
        return Some(quote(m, secret));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| quote(text, secret))
}

/// `text` from the Portal as HostPulse repeats it in errors and logs: `secret` (the token)
/// blacked out first, then [`shorten`]ed (cut first, a piece of the token could remain).
fn quote(text: &str, secret: &str) -> String {
    if secret.is_empty() { shorten(text) } else { shorten(&text.replace(secret, "[redacted]")) }
}

/// `text` from the Portal as HostPulse repeats it: one line (control characters as spaces), at
/// most [`MAX_MESSAGE_CHARS`] characters, `…` where it was cut.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The PEM of the `ca.cert` entry of the Portal's certificate ZIP, unpacked only up to
/// [`MAX_CA_CERT`] whatever the ZIP claims (a ZIP bomb stops there).
fn ca_from_zip(zip: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| format!("not a ZIP archive: {e}"))?;
    let entry = archive.by_name("ca.cert").map_err(|_| "the certificate ZIP has no `ca.cert`".to_owned())?;
    let too_large = || format!("`ca.cert` in the certificate ZIP is larger than {} KiB", MAX_CA_CERT / 1024);
    if entry.size() > MAX_CA_CERT {
        return Err(too_large());
    }
    let mut pem = Vec::new();
    entry.take(MAX_CA_CERT + 1).read_to_end(&mut pem).map_err(|e| format!("cannot read `ca.cert`: {e}"))?;
    if pem.len() as u64 > MAX_CA_CERT {
        return Err(too_large());
    }
    Ok(pem)
}

/// Writes the workspace CA to `<data_dir>/certificates/<ws>/ca.pem`, readable only by the user.
fn store_ca(data_dir: &Path, ws: &str, pem: &[u8]) -> Result<PathBuf, PortalError> {
    let dir = data_dir.join("certificates").join(ws);
    let file = dir.join("ca.pem");
    let fail = |e: std::io::Error| PortalError::Certificate { path: file.clone(), reason: e.to_string() };
    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(PortalError::Certificate {
            path: file.clone(),
            reason: "the Portal's CA is not a PEM certificate".into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(fail)?;
    crate::private_file::write(&file, pem).map_err(fail)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_messages_are_taken_from_json_or_text() {
        assert_eq!(
            portal_message(br#"{"message":"Token is invalid","correlationId":"c"}"#, "sdk-x").as_deref(),
            Some("Token is invalid")
        );
        assert_eq!(portal_message(b"Bad gateway", "sdk-x").as_deref(), Some("Bad gateway"));
        assert_eq!(portal_message(b"", "sdk-x"), None);
        let echo = portal_message(b"<pre>Authorization: Bearer sdk-secret-123</pre>", "sdk-secret-123").unwrap();
        assert_eq!(
            echo, "<pre>Authorization: Bearer [redacted]</pre>",
            "a page echoing the header never repeats the token"
        );
    }

    #[test]
    fn a_zip_without_ca_cert_is_reported() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("other.txt", zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut w, b"x").unwrap();
            w.finish().unwrap();
        }
        assert_eq!(ca_from_zip(buf.get_ref()).unwrap_err(), "the certificate ZIP has no `ca.cert`");
        assert!(ca_from_zip(b"not a zip").unwrap_err().starts_with("not a ZIP archive"));
    }

    #[test]
    fn only_what_the_user_must_fix_stops_a_connection_for_good() {
        let url = || "https://portal.example/x".to_owned();
        let retried = [
            PortalError::Status {
                url: url(),
                status: 408,
                method: "GET".into(),
                path: "workspaces".into(),
                message: None,
            },
            PortalError::Status {
                url: url(),
                status: 400,
                method: "POST".into(),
                path: "ws/topics".into(),
                message: None,
            },
            PortalError::Malformed { url: url(), reason: "an HTML page".into() },
            PortalError::TooLarge { url: url() },
            PortalError::Topic { topic: "cpu-load".into(), reason: "still Creating after 60 s".into() },
            PortalError::Certificate { path: "/full/disk/ca.pem".into(), reason: "No space left on device".into() },
            PortalError::Unreachable { url: url(), reason: "timed out".into() },
        ];
        for e in retried {
            assert!(!e.needs_user(), "{e}");
        }
        let final_at_start = [
            PortalError::TokenRejected { token_source: TokenSource::CredentialStore, status: 403, message: None },
            PortalError::WorkspaceNotFound { workspace: "ws".into() },
            PortalError::NoWorkspaces,
            PortalError::SeveralWorkspaces { list: vec!["a".into(), "b".into()] },
            PortalError::Url("`portal_url` must use https://".into()),
        ];
        for e in final_at_start {
            assert!(e.needs_user(), "{e}");
        }
    }

    #[test]
    fn portal_text_is_one_line_of_sane_length() {
        let long = format!("line one\nline two\u{1b}[31m {}", "x".repeat(500));
        let m =
            portal_message(format!(r#"{{"message":{}}}"#, serde_json::to_string(&long).unwrap()).as_bytes(), "sdk-x")
                .unwrap();
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1, "cut, with an ellipsis");
        assert!(m.starts_with("line one line two [31m") && m.ends_with('…'), "{m}");
        assert!(!m.chars().any(char::is_control));
    }

    #[test]
    fn rejected_tokens_name_their_source_not_their_value() {
        let e = PortalError::TokenRejected {
            token_source: TokenSource::Environment,
            status: 401,
            message: Some("expired".into()),
        };
        assert_eq!(
            e.to_string(),
            "the Quix Portal rejected the streaming token from the environment variable Quix__Sdk__Token (HTTP 401: expired): replace it with a valid streaming token"
        );
        assert!(!e.is_transient());
        let e = PortalError::Status {
            url: "https://p.example/".into(),
            status: 503,
            method: "GET".into(),
            path: "workspaces".into(),
            message: None,
        };
        assert_eq!(e.to_string(), "the Quix Portal at https://p.example/ answered HTTP 503 to GET workspaces");
        assert!(e.is_transient());
    }
}
