//! What the agent reports about itself: the publisher state and the delivery counters. Pure data,
//! watched by the CLI (summary), and later by the tray and the settings window.

use serde::Serialize;

/// Where the publisher is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PublisherState {
    /// No broker (or token) configured: sampling only.
    Unconfigured,
    /// Connecting to the broker and preparing the topic.
    Connecting,
    /// Samples flow to the broker.
    Publishing,
    /// Publishing is switched off; the stream was closed.
    Paused,
    /// Shutting down: flushing and waiting for acknowledgements.
    Stopping,
    /// Stopped by an error that needs the user.
    Failed {
        /// What went wrong, for people.
        reason: String,
    },
}

/// A snapshot of the agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Publisher state.
    pub state: PublisherState,
    /// The latest CPU load, percent.
    pub last_value: Option<f64>,
    /// Samples measured.
    pub samples: u64,
    /// Records handed to the Kafka client.
    pub records_sent: u64,
    /// Records the broker acknowledged (only these count as delivered).
    pub records_acknowledged: u64,
    /// Records whose delivery failed for good.
    pub records_failed: u64,
    /// The last delivery or connection error, if any.
    pub last_error: Option<String>,
}

impl Status {
    /// The status before anything happened.
    pub fn new(state: PublisherState) -> Self {
        Status {
            state,
            last_value: None,
            samples: 0,
            records_sent: 0,
            records_acknowledged: 0,
            records_failed: 0,
            last_error: None,
        }
    }

    /// Records sent and not yet acknowledged or failed.
    pub fn records_pending(&self) -> u64 {
        self.records_sent.saturating_sub(self.records_acknowledged + self.records_failed)
    }

    /// The one-line summary printed when the agent stops.
    pub fn summary(&self) -> String {
        format!(
            "{} samples taken, {} records sent, {} acknowledged, {} pending, {} failed",
            self.samples,
            self.records_sent,
            self.records_acknowledged,
            self.records_pending(),
            self.records_failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_what_is_neither_acknowledged_nor_failed() {
        let s = Status {
            records_sent: 10,
            records_acknowledged: 7,
            records_failed: 1,
            ..Status::new(PublisherState::Publishing)
        };
        assert_eq!(s.records_pending(), 2);
        assert_eq!(s.summary(), "0 samples taken, 10 records sent, 7 acknowledged, 2 pending, 1 failed");
    }
}
