//! The running HostPulse pipeline and its adapters to the outside world.
//!
//! - [`agent`]: the actor that owns the pipeline, and its [`agent::AgentHandle`];
//! - [`sampler`]: CPU sampling (sysinfo) and a scripted source;
//! - [`publisher`]: the Kafka publisher (rdkafka) behind the [`publisher::Publisher`] seam;
//! - [`settings_file`]: where settings live and how they are read;
//! - [`machine`]: the stable default stream id and the host name.

pub mod agent;
pub mod machine;
pub mod publisher;
pub mod sampler;
pub mod settings_file;
