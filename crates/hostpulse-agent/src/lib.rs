//! The running HostPulse pipeline and its adapters to the outside world.
//!
//! - [`agent`]: the actor that owns the pipeline, and its [`agent::AgentHandle`];
//! - [`assembly`]: the one way both front ends build the agent from the settings;
//! - [`sampler`]: CPU sampling (sysinfo) and a scripted source;
//! - [`outbox`]: the durable queue of unacknowledged records (SQLite);
//! - [`publisher`]: the Kafka publisher (rdkafka) behind the [`publisher::Publisher`] seam;
//! - [`portal`] and [`quix`]: from a streaming token to broker settings and a ready topic;
//! - [`token`]: where the token comes from (environment, OS credential store);
//! - [`settings_file`] and [`paths`]: where settings and data live;
//! - [`machine`]: the stable default stream id and the host name;
//! - [`diagnose`]: the step-by-step connection check;
//! - [`backoff`], [`fsutil`]: retry timing, private atomic files;

pub mod agent;
pub mod assembly;
pub mod backoff;
pub mod diagnose;
pub mod fsutil;
pub mod machine;
pub mod outbox;
pub mod paths;
pub mod portal;
pub mod publisher;
pub mod quix;
pub mod sampler;
pub mod settings_file;
pub mod token;
