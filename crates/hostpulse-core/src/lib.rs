//! HostPulse's pure core: no I/O, no clock, no async runtime.
//!
//! - [`sample`]: measured rows and the CPU value rule;
//! - [`buffer`]: the time-span buffer that groups rows into records;
//! - [`wire`] and [`json`]: Quix Streams records, byte-identical to quixstreams 0.5.7;
//! - [`json_rows`]: the other record format, one JSON object per sample;
//! - [`stream`]: stream identity and the order of a stream's records;
//! - [`metrics`]: the metric catalog (ids, definitions) and counter rates;
//! - [`processes`]: which processes use the CPU, now and over a high-CPU spell;
//! - [`history`]: the last hour of rows for the window's chart;
//! - [`notify`]: when the desktop app notifies;
//! - [`form`]: the settings window's form and how it becomes settings;
//! - [`secret`]: the redacted secret type;
//! - [`settings`]: the settings model and its validation;
//! - [`status`]: what the agent reports, in one vocabulary;
//! - [`tray`]: what the tray shows for a status.

pub mod buffer;
pub mod form;
pub mod history;
pub mod json;
pub mod json_rows;
pub mod metrics;
pub mod notify;
pub mod processes;
pub mod sample;
pub mod secret;
pub mod settings;
pub mod status;
pub mod stream;
pub mod tray;
pub mod wire;
