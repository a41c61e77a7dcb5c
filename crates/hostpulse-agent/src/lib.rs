//! The running HostPulse pipeline and its adapters to the outside world.
//!
//! - [`agent`]: the actor that owns the pipeline, and its [`agent::AgentHandle`];
//! - [`assembly`]: the one way both front ends build the agent from the settings;
//! - [`sampler`]: host sampling (sysinfo, `/proc`) and synthetic and scripted sources;
//! - [`processes`] and [`power`]: the process table and the power source, read when needed;
//! - [`outbox`]: the durable queue of unacknowledged records (SQLite);
//! - [`publisher`]: the Kafka publisher (rdkafka) behind the [`publisher::Publisher`] seam;
//! - [`connector`]: making producers: a configured broker, or the Quix Portal with a token;
//! - [`portal`]: the Quix Portal API client, from a token to broker settings and a ready topic;
//! - [`token`]: where the token comes from (environment, OS credential store);
//! - [`settings_file`] and [`paths`]: where settings and data live;
//! - [`machine`]: the stable default stream id and the host name;
//! - [`diagnose`]: the step-by-step connection check;
//! - [`backoff`], [`private_file`]: retry timing, private files written atomically.

pub mod agent;
pub mod assembly;
pub mod backoff;
pub mod connector;
pub mod diagnose;
pub mod machine;
pub mod outbox;
pub mod paths;
pub mod portal;
pub mod power;
pub mod private_file;
pub mod processes;
pub mod publisher;
pub mod sampler;
pub mod settings_file;
pub mod token;
