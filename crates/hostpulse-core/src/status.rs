//! What the agent reports about itself: the publisher state, its transitions (a pure function
//! with a table test; the actor performs the effects) and the delivery counters.

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
    /// The connection failed or stalled; samples wait in the outbox until the next try.
    Backoff {
        /// What went wrong, for people.
        reason: String,
        /// When the next try starts, ms since the Unix epoch.
        next_try_ms: i64,
    },
    /// Shutting down: flushing and waiting for acknowledgements.
    Stopping,
    /// Stopped by an error that needs the user (a rejected token, a refused login). Before the
    /// agent ever published this is final (`next_try_ms` is `None`: the user must act); after
    /// that it still tries again now and then, since a rotated token may come back.
    Failed {
        /// What went wrong, for people.
        reason: String,
        /// When the next (slow) try starts, ms since the Unix epoch; `None`: no more tries.
        next_try_ms: Option<i64>,
    },
}

/// What happens to the publisher; [`PublisherState::next`] says where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A token or broker is configured and a connection is being made.
    Connect,
    /// The connection is ready.
    Connected,
    /// Connecting failed or the connection stalled; another try is scheduled.
    Retry {
        /// Why.
        reason: String,
        /// When the next try starts, ms since the Unix epoch.
        next_try_ms: i64,
    },
    /// Connecting failed in a way only the user can fix.
    Fatal {
        /// Why.
        reason: String,
        /// When the next (slow) try starts, if one is scheduled.
        next_try_ms: Option<i64>,
    },
    /// The token was removed.
    Unconfigure,
    /// The user switched publishing off.
    Pause,
    /// The user switched publishing on again; `connected` says whether a connection is ready.
    Resume {
        /// A connection is ready.
        connected: bool,
    },
    /// The agent is shutting down.
    Stop,
    /// The agent has stopped; `configured` says whether it had a token or broker.
    Stopped {
        /// A token or broker was configured: the publisher rests in `Paused`.
        configured: bool,
    },
}

impl PublisherState {
    /// The state after `event`. Pausing wins over connection trouble (the stream is closed and
    /// the user asked for quiet); only `Stopped` leaves `Stopping`.
    pub fn next(&self, event: Event) -> PublisherState {
        use PublisherState as S;
        match (self, event) {
            (S::Stopping, Event::Stopped { configured: true }) => S::Paused,
            (S::Stopping, Event::Stopped { configured: false }) => S::Unconfigured,
            (S::Stopping, _) => S::Stopping,
            (s, Event::Stopped { .. }) => s.clone(),
            (_, Event::Stop) => S::Stopping,
            (_, Event::Unconfigure) => S::Unconfigured,
            (S::Unconfigured, Event::Pause) => S::Unconfigured,
            (_, Event::Pause) => S::Paused,
            (S::Paused, Event::Resume { connected: true }) => S::Publishing,
            (S::Paused, Event::Resume { connected: false }) => S::Connecting,
            (s, Event::Resume { .. }) => s.clone(),
            (S::Paused, Event::Connect | Event::Connected | Event::Retry { .. }) => S::Paused,
            (_, Event::Connect) => S::Connecting,
            (_, Event::Connected) => S::Publishing,
            (_, Event::Retry { reason, next_try_ms }) => S::Backoff { reason, next_try_ms },
            (_, Event::Fatal { reason, next_try_ms }) => S::Failed { reason, next_try_ms },
        }
    }
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
    /// Records handed to the Kafka client (a record re-sent after an outage counts again).
    pub records_sent: u64,
    /// Records the broker acknowledged (only these count as delivered).
    pub records_acknowledged: u64,
    /// Records the broker refused for good (too large, invalid).
    pub records_failed: u64,
    /// Records dropped unsent by the outbox bound (size, age, full disk): oldest first.
    pub records_dropped: u64,
    /// Records waiting in the outbox (sent or not, not yet acknowledged).
    pub records_queued: u64,
    /// The last delivery or connection error, if any.
    pub last_error: Option<String>,
    /// The last connection attempt failed because the token was rejected.
    pub token_rejected: bool,
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
            records_dropped: 0,
            records_queued: 0,
            last_error: None,
            token_rejected: false,
        }
    }

    /// Records in the outbox: not yet acknowledged, kept for the next run if the agent stops now.
    pub fn records_pending(&self) -> u64 {
        self.records_queued
    }

    /// The one-line summary printed when the agent stops.
    pub fn summary(&self) -> String {
        format!(
            "{} samples taken, {} records sent, {} acknowledged, {} pending, {} failed, {} dropped",
            self.samples,
            self.records_sent,
            self.records_acknowledged,
            self.records_pending(),
            self.records_failed,
            self.records_dropped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_counter() {
        let s = Status {
            records_sent: 10,
            records_acknowledged: 7,
            records_failed: 1,
            records_dropped: 4,
            records_queued: 2,
            ..Status::new(PublisherState::Publishing)
        };
        assert_eq!(s.records_pending(), 2);
        assert_eq!(s.summary(), "0 samples taken, 10 records sent, 7 acknowledged, 2 pending, 1 failed, 4 dropped");
    }

    #[test]
    fn transitions_follow_the_table() {
        use PublisherState as S;
        let backoff = || S::Backoff { reason: "down".into(), next_try_ms: 5 };
        let retry = || Event::Retry { reason: "down".into(), next_try_ms: 5 };
        let failed = || S::Failed { reason: "bad token".into(), next_try_ms: None };
        let fatal = || Event::Fatal { reason: "bad token".into(), next_try_ms: None };
        let failing = || S::Failed { reason: "bad token".into(), next_try_ms: Some(9) };
        let table: Vec<(S, Event, S)> = vec![
            (S::Unconfigured, Event::Connect, S::Connecting),
            (S::Connecting, Event::Connected, S::Publishing),
            (S::Connecting, retry(), backoff()),
            (S::Connecting, fatal(), failed()),
            (S::Publishing, retry(), backoff()),
            (backoff(), Event::Connect, S::Connecting),
            (backoff(), Event::Connected, S::Publishing),
            (failed(), Event::Connect, S::Connecting),
            (S::Publishing, Event::Fatal { reason: "bad token".into(), next_try_ms: Some(9) }, failing()),
            (failing(), retry(), backoff()),
            (failing(), Event::Connected, S::Publishing),
            (S::Publishing, Event::Pause, S::Paused),
            (backoff(), Event::Pause, S::Paused),
            (S::Unconfigured, Event::Pause, S::Unconfigured),
            (S::Paused, retry(), S::Paused),
            (S::Paused, Event::Connected, S::Paused),
            (S::Paused, Event::Resume { connected: true }, S::Publishing),
            (S::Paused, Event::Resume { connected: false }, S::Connecting),
            (S::Publishing, Event::Resume { connected: true }, S::Publishing),
            (backoff(), Event::Resume { connected: false }, backoff()),
            (S::Publishing, Event::Unconfigure, S::Unconfigured),
            (S::Paused, Event::Unconfigure, S::Unconfigured),
            (S::Publishing, Event::Stop, S::Stopping),
            (backoff(), Event::Stop, S::Stopping),
            (S::Stopping, Event::Connected, S::Stopping),
            (S::Stopping, retry(), S::Stopping),
            (S::Stopping, Event::Resume { connected: true }, S::Stopping),
            (S::Stopping, Event::Stopped { configured: true }, S::Paused),
            (S::Stopping, Event::Stopped { configured: false }, S::Unconfigured),
            (S::Publishing, Event::Stopped { configured: true }, S::Publishing),
        ];
        for (from, event, to) in table {
            assert_eq!(from.next(event.clone()), to, "{from:?} --{event:?}-->");
        }
    }
}
