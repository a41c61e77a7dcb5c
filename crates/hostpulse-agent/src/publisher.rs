//! Getting records to the broker: the [`Publisher`] seam and its Kafka implementation (rdkafka).
//!
//! A record counts as delivered only when its delivery report says the broker acknowledged it
//! (`acks=all`, idempotent producer, so librdkafka's own retries neither lose nor duplicate).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hostpulse_core::secret::Secret;
use hostpulse_core::settings::Security;
use hostpulse_core::wire::Record;
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::atomic::{AtomicBool, Ordering};

/// How long the delivery-report thread sleeps while nothing is in flight (it serves librdkafka's
/// error events then). rdkafka's own polling thread wakes every 100 ms even when idle, which was
/// most of an idle agent's CPU time (see BENCHMARKS.md).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// While records are in flight, the thread looks for their reports 1 ms after a send or a served
/// report, then after 2, 4, … up to this.
const BUSY_WAIT: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(64));
/// At most this many events are served per look (the rest at the next, 1 ms later).
const EVENTS_PER_LOOK: usize = 1024;

/// Where a record's delivery report goes.
type ReportSender = tokio::sync::oneshot::Sender<Result<(), DeliveryError>>;
use thiserror::Error;

use crate::portal::QuixTarget;

/// How long connecting and topic look-ups may take before we call the broker unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A delivery report to await: `Ok` once the broker acknowledged the record.
pub type DeliveryReport = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send>>;

/// Why a record was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("delivery failed: {reason}")]
pub struct DeliveryError {
    /// librdkafka's reason.
    pub reason: String,
    /// The broker refused this record because of its own content (too large, invalid): it can
    /// never be sent. Everything else (timeouts, connection loss, a fatal client error, a topic
    /// deleted or no longer writable) is trouble with the connection, and the record stays.
    pub unsendable: bool,
}

/// librdkafka codes that blame the record itself: sending it again can never work.
fn blames_the_record(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::InvalidRecord
            | C::MessageBatchTooLarge
            | C::InvalidArgument
    )
}

impl DeliveryError {
    /// A failure that may pass: the record stays in the outbox.
    pub fn transient(reason: impl Into<String>) -> Self {
        DeliveryError { reason: reason.into(), unsendable: false }
    }

    /// The broker refused this record for good, because of what it holds.
    pub fn unsendable(reason: impl Into<String>) -> Self {
        DeliveryError { reason: reason.into(), unsendable: true }
    }
}

/// A delivery report's error as the agent sees it.
pub fn delivery_error(e: &KafkaError) -> DeliveryError {
    DeliveryError { reason: e.to_string(), unsendable: e.rdkafka_error_code().is_some_and(blames_the_record) }
}

/// What a refusal of `send` means: the queue is full (wait), the record is to blame (drop it),
/// or the connection is (keep everything, rebuild).
fn send_error(e: KafkaError) -> PublishError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull,
        Some(code) if blames_the_record(code) => PublishError::Unsendable(e.to_string()),
        // `__FATAL`, an unknown topic or partition, and the like.
        _ => PublishError::Enqueue(e.to_string()),
    }
}

/// Something wrong with a producer as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    /// What, for people.
    pub reason: String,
    /// The producer cannot recover by itself and must be rebuilt.
    pub fatal: bool,
}

/// Why publishing could not start or a record could not be handed over.
#[derive(Debug, Error)]
pub enum PublishError {
    /// librdkafka refused the configuration.
    #[error("cannot create the Kafka client: {0}")]
    Client(String),
    /// The SASL password is missing.
    #[error(
        "`security_protocol` {0} needs a SASL password: set the environment variable HOSTPULSE_SASL_PASSWORD, or pass the systemd credential kafka-sasl-password"
    )]
    MissingPassword(&'static str),
    /// The broker did not answer.
    #[error("cannot reach the Kafka broker at {broker}: {reason}; check `broker` and that the broker runs")]
    Unreachable {
        /// Bootstrap servers.
        broker: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The broker refused the SASL login.
    #[error("the Kafka broker at {broker} refused the login: {reason}; check the SASL user, password and mechanism")]
    LoginRefused {
        /// Bootstrap servers.
        broker: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The topic is missing and we may not create it (Quix mode: the Portal creates topics).
    #[error("topic `{0}` is not on the broker")]
    TopicMissing(String),
    /// The topic is missing and could not be created.
    #[error(
        "topic `{topic}` does not exist and could not be created: {reason}; create it on the broker or use an existing topic"
    )]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's reason.
        reason: String,
        /// The broker refused for good (no permission, invalid topic settings): only the user can
        /// change that; otherwise (a slow broker) trying again may work.
        refused: bool,
    },
    /// The client's local queue is full (the broker is not keeping up).
    #[error("the Kafka client's send queue is full")]
    QueueFull,
    /// The record itself can never be sent (larger than `message.max.bytes`, invalid).
    #[error("the record cannot be sent: {0}")]
    Unsendable(String),
    /// Any other refusal to take the record: the client failed for good, the topic is gone or
    /// not writable. Not about the record: it stays in the outbox.
    #[error("cannot hand the record to the Kafka client: {0}")]
    Enqueue(String),
}

impl PublishError {
    /// Whether the record handed over is to blame (it is removed and counted), as opposed to
    /// the connection (the record stays and the producer is rebuilt).
    pub fn is_unsendable(&self) -> bool {
        matches!(self, PublishError::Unsendable(_))
    }

    /// Whether only the user can fix it (a refused login, a missing password, a configuration
    /// librdkafka refuses, a topic we may not create); everything else may pass by itself.
    pub fn needs_user(&self) -> bool {
        match self {
            PublishError::Client(_) | PublishError::MissingPassword(_) | PublishError::LoginRefused { .. } => true,
            PublishError::TopicCreation { refused, .. } => *refused,
            PublishError::Unreachable { .. }
            | PublishError::TopicMissing(_)
            | PublishError::QueueFull
            | PublishError::Unsendable(_)
            | PublishError::Enqueue(_) => false,
        }
    }
}

/// Something that takes records and reports their delivery.
pub trait Publisher: Send + Sync + 'static {
    /// Hands `record` over for sending and returns its delivery report to await.
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError>;

    /// Trouble the producer knows of (all brokers down, a fatal error), if any.
    fn trouble(&self) -> Option<Trouble> {
        None
    }
}

/// What the Kafka publisher needs.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub broker: String,
    /// Topic to write.
    pub topic: String,
    /// Partitions for a topic we create.
    pub partitions: i32,
    /// Protocol, SASL mechanism and user, CA.
    pub security: Security,
    /// The SASL password, when the protocol needs one.
    pub sasl_password: Option<Secret>,
    /// Verify the broker's TLS host name (off: logged as a warning).
    pub verify_hostname: bool,
}

/// The environment variable that holds the SASL password of direct mode (never a flag, which
/// shows in `ps`, nor a file).
pub const SASL_PASSWORD_ENV: &str = "HOSTPULSE_SASL_PASSWORD";

/// The systemd credential that holds the SASL password (`LoadCredential=kafka-sasl-password:…`).
pub const SASL_PASSWORD_CREDENTIAL: &str = "kafka-sasl-password";

impl KafkaSettings {
    /// Direct mode: publish to `broker` with the checked settings' topic and security, the SASL
    /// password from [`SASL_PASSWORD_ENV`] or else the systemd credential
    /// [`SASL_PASSWORD_CREDENTIAL`].
    pub fn direct(c: &hostpulse_core::settings::Checked, broker: &str) -> Self {
        let from_systemd = || match crate::token::systemd_credential(SASL_PASSWORD_CREDENTIAL) {
            Ok(password) => password,
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        };
        KafkaSettings {
            broker: broker.to_owned(),
            topic: c.topic.clone(),
            partitions: c.topic_partitions,
            security: c.security.clone(),
            sasl_password: std::env::var(SASL_PASSWORD_ENV).ok().and_then(Secret::new).or_else(from_systemd),
            verify_hostname: c.tls_verify_hostname,
        }
    }
}

/// Our producer settings whatever the connection: `acks=all`, idempotence, gzip batches and the
/// connection settings quixstreams 0.5.7 uses.
fn producer_defaults() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", concat!("hostpulse/", env!("CARGO_PKG_VERSION")))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "gzip")
        .set("socket.keepalive.enable", "true")
        .set("connections.max.idle.ms", "180000")
        .set("metadata.max.age.ms", "180000")
        .set("message.max.bytes", "1000012");
    c
}

/// The librdkafka producer settings for a directly configured broker: [`producer_defaults`] plus
/// address and security. Contains the SASL password: never log it.
pub fn client_config(s: &KafkaSettings) -> Result<ClientConfig, PublishError> {
    let mut c = producer_defaults();
    c.set("bootstrap.servers", &s.broker).set("security.protocol", s.security.protocol.as_librdkafka());
    if let Some((mechanism, username)) = &s.security.sasl {
        let password =
            s.sasl_password.as_ref().ok_or(PublishError::MissingPassword(s.security.protocol.as_librdkafka()))?;
        c.set("sasl.mechanism", mechanism.as_librdkafka())
            .set("sasl.username", username)
            .set("sasl.password", password.expose());
    }
    if let Some(ca) = &s.security.ssl_ca_location {
        c.set("ssl.ca.location", ca.to_string_lossy());
    }
    if !s.verify_hostname {
        tracing::warn!("TLS host name verification of the broker is off (`tls_verify_hostname = false`)");
        c.set("ssl.endpoint.identification.algorithm", "none");
    }
    Ok(c)
}

/// The producer settings for a Quix workspace: [`producer_defaults`] plus what the Portal gave.
pub fn quix_client_config(target: &QuixTarget) -> ClientConfig {
    let mut c = producer_defaults();
    for (k, v) in &target.kafka {
        c.set(k, v);
    }
    c
}

/// librdkafka's callbacks (its log, client errors, delivery reports). Remembers a refused login:
/// librdkafka reports it as a client-level error, while the request
/// that needed the login only fails later as a transport error (or a timeout).
#[derive(Default, Clone)]
pub struct ClientCallbacks {
    login_error: Arc<Mutex<Option<String>>>,
    /// librdkafka said all brokers are down; cleared by the next acknowledgement.
    brokers_down: Arc<AtomicBool>,
}

impl ClientContext for ClientCallbacks {
    /// librdkafka's own log: connection failures repeat at every reconnect, and the agent reports
    /// them once, as its state; so they are debug output here.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical => tracing::error!(target: "librdkafka", "{fac} {message}"),
            _ => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!("Kafka client: {error}: {reason}")
            }
            _ => tracing::warn!("Kafka client: {error}: {reason}"),
        }
        let auth = matches!(error, KafkaError::Global(RDKafkaErrorCode::Authentication))
            || reason.contains("SASL")
            || reason.contains("uthenticat");
        if auth {
            *self.login_error.lock().expect("not poisoned") = Some(reason.to_owned());
        }
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
    }
}

impl ProducerContext for ClientCallbacks {
    type DeliveryOpaque = Box<ReportSender>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => {
                self.brokers_down.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err((e, _)) => Err(delivery_error(e)),
        };
        let _ = reply.send(outcome);
    }
}

impl ClientCallbacks {
    fn login_refused(&self) -> Option<String> {
        self.login_error.lock().expect("not poisoned").clone()
    }
}

/// Publishes to one Kafka topic. A thread of its own serves librdkafka's delivery reports.
pub struct KafkaPublisher {
    producer: Arc<BaseProducer<ClientCallbacks>>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    topic: String,
    broker: String,
    callbacks: ClientCallbacks,
}

/// Serves librdkafka's delivery reports (and error events) until `stop`, sleeping in between.
///
/// Not `producer.poll(wait)` in a loop: rust-rdkafka 0.39's `poll` goes on until its deadline and
/// hands librdkafka what remains truncated to whole milliseconds, so after every report it spun
/// out the last fraction of a millisecond in non-blocking polls (perf: two thirds of this
/// thread's time in `clock_gettime`, the largest share of an idle agent's CPU). Polls with a zero
/// timeout never wait, and the thread sleeps with `park_timeout`, woken by each send.
fn serve_reports(producer: &BaseProducer<ClientCallbacks>, stop: &AtomicBool) {
    let mut busy_wait = BUSY_WAIT.0;
    while !stop.load(Ordering::Relaxed) {
        let served = serve_ready_events(producer);
        let wait = if producer.in_flight_count() == 0 {
            busy_wait = BUSY_WAIT.0;
            IDLE_WAIT
        } else if served {
            busy_wait = BUSY_WAIT.0;
            busy_wait
        } else {
            let wait = busy_wait;
            busy_wait = (busy_wait * 2).min(BUSY_WAIT.1);
            wait
        };
        std::thread::park_timeout(wait);
    }
}

/// Serves the events librdkafka has ready, without waiting (a zero-timeout `poll` serves at most
/// one); whether any delivery report was among them (what is in flight went down).
fn serve_ready_events(producer: &BaseProducer<ClientCallbacks>) -> bool {
    let mut served = false;
    for _ in 0..EVENTS_PER_LOOK {
        let before = producer.in_flight_count();
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() >= before {
            break;
        }
        served = true;
    }
    served
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.poller.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        // Dropping the producer then purges what is unacknowledged; those reports say so.
    }
}

impl KafkaPublisher {
    /// Connects to a directly configured broker, makes sure the topic exists (creating it with
    /// `partitions` when missing) and returns a publisher ready to send.
    pub async fn connect(s: &KafkaSettings) -> Result<Self, PublishError> {
        Self::open(client_config(s)?, &s.topic, Some(s.partitions)).await
    }

    /// Connects to a Quix workspace's broker; the topic was made ready by the Portal.
    pub async fn connect_quix(target: &QuixTarget) -> Result<Self, PublishError> {
        Self::open(quix_client_config(target), &target.topic_id, None).await
    }

    async fn open(config: ClientConfig, topic: &str, create_with: Option<i32>) -> Result<Self, PublishError> {
        let callbacks = ClientCallbacks::default();
        let producer: Arc<BaseProducer<ClientCallbacks>> =
            Arc::new(config.create_with_context(callbacks.clone()).map_err(|e| PublishError::Client(e.to_string()))?);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafka-reports".into())
                .spawn(move || serve_reports(&producer, &stop))
                .map_err(|e| PublishError::Client(e.to_string()))?
        };
        let broker = config.get("bootstrap.servers").unwrap_or_default().to_owned();
        let publisher = KafkaPublisher {
            producer,
            stop,
            poller: Some(poller),
            topic: topic.into(),
            broker,
            callbacks: callbacks.clone(),
        };
        match ensure_topic(&config, &publisher.producer, &callbacks, topic, create_with).await {
            Ok(()) => Ok(publisher),
            Err(e) => {
                // Stopping the report thread and librdkafka takes a moment: not on this task.
                tokio::task::spawn_blocking(move || drop(publisher));
                Err(e)
            }
        }
    }

    /// The Kafka topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

fn topic_partitions(producer: &BaseProducer<ClientCallbacks>, topic: &str) -> Result<Option<usize>, KafkaError> {
    let md = producer.client().fetch_metadata(None, METADATA_TIMEOUT)?;
    Ok(md.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map(|t| t.partitions().len()))
}

async fn ensure_topic(
    config: &ClientConfig,
    producer: &Arc<BaseProducer<ClientCallbacks>>,
    callbacks: &ClientCallbacks,
    topic: &str,
    create_with: Option<i32>,
) -> Result<(), PublishError> {
    let broker = config.get("bootstrap.servers").unwrap_or("(no bootstrap.servers)").to_owned();
    let unreachable = |e: KafkaError| match callbacks.login_refused() {
        Some(reason) => PublishError::LoginRefused { broker: broker.clone(), reason },
        None => PublishError::Unreachable { broker: broker.clone(), reason: e.to_string() },
    };
    let look = || {
        let (p, t) = (producer.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || topic_partitions(&p, &t))
    };
    if look().await.expect("metadata task").map_err(unreachable)?.is_some_and(|n| n > 0) {
        return Ok(());
    }
    let Some(partitions) = create_with else {
        return Err(PublishError::TopicMissing(topic.into()));
    };
    tracing::info!(topic, partitions, "topic missing; creating it");
    let creation_failed =
        |reason: String, refused: bool| PublishError::TopicCreation { topic: topic.into(), reason, refused };
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| PublishError::Client(e.to_string()))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)).request_timeout(Some(METADATA_TIMEOUT));
    let results = admin.create_topics([&new], &opts).await.map_err(|e| creation_failed(e.to_string(), false))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(creation_failed(code.to_string(), refuses_creation(code))),
        }
    }
    // Creation is asynchronous on some brokers: wait (bounded) until the topic has partitions.
    let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
    loop {
        if look().await.expect("metadata task").map_err(unreachable)?.is_some_and(|n| n > 0) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(creation_failed(
                "created, but it did not appear in the broker's metadata within 10 s".into(),
                false,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CreateTopics answers that only the user (or the broker's admin) can change.
fn refuses_creation(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::PolicyViolation
            | C::InvalidTopic
            | C::InvalidPartitions
            | C::InvalidReplicationFactor
            | C::InvalidConfig
    )
}

impl Publisher for KafkaPublisher {
    fn send(&self, record: &Record) -> Result<DeliveryReport, PublishError> {
        let (reply, report) = tokio::sync::oneshot::channel();
        let br = BaseRecord::with_opaque_to(&self.topic, Box::new(reply))
            .key(record.key.as_bytes())
            .payload(record.value.as_bytes())
            .timestamp(record.timestamp_ms);
        match self.producer.send(br) {
            Ok(()) => {
                // The report thread looks for this record's report from 1 ms on.
                if let Some(t) = &self.poller {
                    t.thread().unpark();
                }
                Ok(Box::pin(async move {
                    report.await.unwrap_or_else(|_| {
                        Err(DeliveryError::transient("the Kafka client was shut down before the broker answered"))
                    })
                }))
            }
            Err((e, _)) => Err(send_error(e)),
        }
    }

    fn trouble(&self) -> Option<Trouble> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Some(Trouble {
                reason: format!("the Kafka client failed for good: {code}: {reason}"),
                fatal: true,
            });
        }
        if !self.callbacks.brokers_down.load(Ordering::Relaxed) {
            return None;
        }
        Some(Trouble {
            reason: format!("cannot reach the Kafka broker at {}: all connections are down; reconnecting", self.broker),
            fatal: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostpulse_core::settings::{SaslMechanism, SecurityProtocol};

    fn settings(
        protocol: SecurityProtocol,
        sasl: Option<(SaslMechanism, &str)>,
        password: Option<&str>,
    ) -> KafkaSettings {
        KafkaSettings {
            broker: "127.0.0.1:9092".into(),
            topic: "cpu-load".into(),
            partitions: 1,
            security: Security { protocol, sasl: sasl.map(|(m, u)| (m, u.into())), ssl_ca_location: None },
            sasl_password: password.and_then(Secret::new),
            verify_hostname: true,
        }
    }

    #[test]
    fn producer_settings_are_durable_and_match_0_5_7_connection_settings() {
        let c = client_config(&settings(SecurityProtocol::Plaintext, None, None)).unwrap();
        for (k, v) in [
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("connections.max.idle.ms", "180000"),
            ("metadata.max.age.ms", "180000"),
            ("socket.keepalive.enable", "true"),
            ("security.protocol", "plaintext"),
        ] {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        assert_eq!(c.get("sasl.username"), None);
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), None, "librdkafka's default (https) stays");
        let mut s = settings(SecurityProtocol::Ssl, None, None);
        s.verify_hostname = false;
        assert_eq!(client_config(&s).unwrap().get("ssl.endpoint.identification.algorithm"), Some("none"));
    }

    #[test]
    fn every_sasl_mechanism_maps_to_librdkafka() {
        for (m, name) in [
            (SaslMechanism::Plain, "PLAIN"),
            (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
            (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
        ] {
            let c = client_config(&settings(SecurityProtocol::SaslSsl, Some((m, "svc")), Some("pw"))).unwrap();
            assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(c.get("sasl.mechanism"), Some(name));
            assert_eq!(c.get("sasl.username"), Some("svc"));
            assert_eq!(c.get("sasl.password"), Some("pw"));
        }
    }

    #[test]
    fn only_errors_that_blame_the_record_drop_it_when_handing_it_over() {
        use RDKafkaErrorCode as C;
        let refused = |code| send_error(KafkaError::MessageProduction(code));
        assert!(matches!(refused(C::QueueFull), PublishError::QueueFull));
        assert!(refused(C::MessageSizeTooLarge).is_unsendable());
        for code in [C::Fatal, C::UnknownTopic, C::UnknownPartition, C::TopicAuthorizationFailed, C::State] {
            let e = refused(code);
            assert!(matches!(e, PublishError::Enqueue(_)), "{code:?}: {e}");
            assert!(!e.needs_user(), "{code:?} is retried");
        }
    }

    #[test]
    fn a_topic_the_broker_refuses_to_create_needs_the_user_and_a_slow_broker_does_not() {
        use RDKafkaErrorCode as C;
        let creation = |code| PublishError::TopicCreation {
            topic: "t".into(),
            reason: format!("{code:?}"),
            refused: refuses_creation(code),
        };
        for code in [C::TopicAuthorizationFailed, C::ClusterAuthorizationFailed, C::PolicyViolation, C::InvalidTopic] {
            let e = creation(code);
            assert!(e.needs_user(), "{code:?}: stops at start with the message");
            assert!(e.to_string().starts_with("topic `t` does not exist and could not be created"), "{e}");
        }
        for code in [C::RequestTimedOut, C::OperationTimedOut, C::NotController, C::BrokerNotAvailable] {
            assert!(!creation(code).needs_user(), "{code:?}: retried");
        }
    }

    #[test]
    fn sasl_without_a_password_is_a_clear_error() {
        let e = client_config(&settings(SecurityProtocol::SaslPlaintext, Some((SaslMechanism::Plain, "u")), None))
            .err()
            .unwrap();
        assert!(e.to_string().contains("HOSTPULSE_SASL_PASSWORD"), "{e}");
    }
}
