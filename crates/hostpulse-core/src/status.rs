//! What the agent reports about itself: the publisher state, its transitions (a pure function
//! with a table test; the actor performs the effects) and the delivery counters; and the one
//! vocabulary in which the window, the tray and the CLI show them ([`StatusView`]).

use serde::Serialize;

use crate::processes::TopProcess;

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

impl PublisherState {
    /// The state's one name, for the window's styles, logs and tests.
    pub fn id(&self) -> &'static str {
        match self {
            PublisherState::Unconfigured => "unconfigured",
            PublisherState::Connecting => "connecting",
            PublisherState::Publishing => "publishing",
            PublisherState::Paused => "paused",
            PublisherState::Stopping => "stopping",
            PublisherState::Backoff { .. } => "retrying",
            PublisherState::Failed { .. } => "error",
        }
    }

    /// The state for people.
    pub fn label(&self) -> &'static str {
        match self {
            PublisherState::Unconfigured => "Not configured",
            PublisherState::Connecting => "Connecting",
            PublisherState::Publishing => "Publishing",
            PublisherState::Paused => "Paused",
            PublisherState::Stopping => "Stopping",
            PublisherState::Backoff { .. } => "Retrying",
            PublisherState::Failed { next_try_ms: None, .. } => "Stopped by an error",
            PublisherState::Failed { next_try_ms: Some(_), .. } => "Error, trying again later",
        }
    }

    /// Whether the user can switch publishing on or off now (not without a token or broker, not
    /// after an error, not while stopping).
    pub fn can_toggle(&self) -> bool {
        matches!(
            self,
            PublisherState::Paused
                | PublisherState::Publishing
                | PublisherState::Connecting
                | PublisherState::Backoff { .. }
        )
    }

    /// What the toggle does from here.
    pub fn toggle_label(&self) -> &'static str {
        if matches!(self, PublisherState::Paused) { "Start publishing" } else { "Pause publishing" }
    }

    /// Why publishing is not going on, while retrying or stopped by an error.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PublisherState::Backoff { reason, .. } | PublisherState::Failed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// When the next connection attempt starts (ms since the Unix epoch), if one is scheduled.
    pub fn next_try_ms(&self) -> Option<i64> {
        match self {
            PublisherState::Backoff { next_try_ms, .. } => Some(*next_try_ms),
            PublisherState::Failed { next_try_ms, .. } => *next_try_ms,
            _ => None,
        }
    }
}

/// What happens to the publisher; [`PublisherState::next`] says where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEvent {
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
    /// the user asked for quiet): only `Resume`, `Unconfigure` and `Stop` leave `Paused`; only
    /// `Stopped` leaves `Stopping`.
    pub fn next(&self, event: StateEvent) -> PublisherState {
        use PublisherState as S;
        match (self, event) {
            (S::Stopping, StateEvent::Stopped { configured: true }) => S::Paused,
            (S::Stopping, StateEvent::Stopped { configured: false }) => S::Unconfigured,
            (S::Stopping, _) => S::Stopping,
            (s, StateEvent::Stopped { .. }) => s.clone(),
            (_, StateEvent::Stop) => S::Stopping,
            (_, StateEvent::Unconfigure) => S::Unconfigured,
            (S::Unconfigured, StateEvent::Pause) => S::Unconfigured,
            // Without a token nothing is retried: a producer still draining after the token was
            // removed is let go, not shown as Retrying.
            (S::Unconfigured, StateEvent::Retry { .. } | StateEvent::Fatal { .. }) => S::Unconfigured,
            (_, StateEvent::Pause) => S::Paused,
            (S::Paused, StateEvent::Resume { connected: true }) => S::Publishing,
            (S::Paused, StateEvent::Resume { connected: false }) => S::Connecting,
            (s, StateEvent::Resume { .. }) => s.clone(),
            // While paused, connection news (even an error for the user) keeps the pause: the
            // user's resume alone ends it, and tries again.
            (
                S::Paused,
                StateEvent::Connect | StateEvent::Connected | StateEvent::Retry { .. } | StateEvent::Fatal { .. },
            ) => S::Paused,
            (_, StateEvent::Connect) => S::Connecting,
            (_, StateEvent::Connected) => S::Publishing,
            (_, StateEvent::Retry { reason, next_try_ms }) => S::Backoff { reason, next_try_ms },
            (_, StateEvent::Fatal { reason, next_try_ms }) => S::Failed { reason, next_try_ms },
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
    /// While the CPU load is at or above the high-CPU threshold: the processes that used the
    /// most CPU since it got there (empty otherwise, or when nothing watches for spells).
    pub spell_top: Vec<TopProcess>,
    /// The machine runs on its battery and low-power mode samples less often.
    pub low_power: bool,
    /// The sampling interval in force, ms (the battery interval in low-power mode).
    pub interval_ms: u64,
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
            spell_top: Vec::new(),
            low_power: false,
            interval_ms: 0,
        }
    }

    /// Records in the outbox: not yet acknowledged, kept for the next run if the agent stops now.
    pub fn records_pending(&self) -> u64 {
        self.records_queued
    }

    /// The one-line summary printed when the agent stops.
    pub fn summary(&self) -> String {
        format!(
            "{} samples taken, {} records sent, {} acknowledged, {} waiting, {} failed, {} dropped",
            self.samples,
            self.records_sent,
            self.records_acknowledged,
            self.records_pending(),
            self.records_failed,
            self.records_dropped
        )
    }
}

/// The status as people see it, in one vocabulary for the window (serialized), the tray and the
/// CLI: *acknowledged* records reached the broker, *waiting* ones are in the outbox, *failed* ones
/// could never be sent, *dropped* ones went unsent when the outbox was full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// [`PublisherState::id`].
    pub state: &'static str,
    /// [`PublisherState::label`].
    pub label: &'static str,
    /// [`PublisherState::can_toggle`].
    pub can_toggle: bool,
    /// [`PublisherState::toggle_label`].
    pub toggle_label: &'static str,
    /// The latest CPU load, percent.
    pub last_value: Option<f64>,
    /// Samples measured.
    pub samples: u64,
    /// Records the broker acknowledged.
    pub acknowledged: u64,
    /// Records in the outbox, not acknowledged yet.
    pub waiting: u64,
    /// Records that could never be sent (their own content).
    pub failed: u64,
    /// Records dropped unsent by the outbox bounds or a full disk.
    pub dropped: u64,
    /// When the next connection attempt starts, ms since the Unix epoch.
    pub next_try_ms: Option<i64>,
    /// Why it is not publishing (retrying, error), or the last error.
    pub error: Option<String>,
    /// [`Status::spell_top`].
    pub spell_top: Vec<TopProcess>,
    /// [`Status::low_power`].
    pub low_power: bool,
    /// [`Status::interval_ms`].
    pub interval_ms: u64,
}

impl From<&Status> for StatusView {
    fn from(s: &Status) -> Self {
        StatusView {
            state: s.state.id(),
            label: s.state.label(),
            can_toggle: s.state.can_toggle(),
            toggle_label: s.state.toggle_label(),
            last_value: s.last_value,
            samples: s.samples,
            acknowledged: s.records_acknowledged,
            waiting: s.records_pending(),
            failed: s.records_failed,
            dropped: s.records_dropped,
            next_try_ms: s.state.next_try_ms(),
            error: s.state.reason().map(str::to_owned).or_else(|| s.last_error.clone()),
            spell_top: s.spell_top.clone(),
            low_power: s.low_power,
            interval_ms: s.interval_ms,
        }
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
        assert_eq!(s.summary(), "0 samples taken, 10 records sent, 7 acknowledged, 2 waiting, 1 failed, 4 dropped");
    }

    #[test]
    fn one_vocabulary_for_every_state() {
        use PublisherState as S;
        let cases = [
            (S::Unconfigured, "unconfigured", "Not configured", false),
            (S::Connecting, "connecting", "Connecting", true),
            (S::Publishing, "publishing", "Publishing", true),
            (S::Paused, "paused", "Paused", true),
            (S::Stopping, "stopping", "Stopping", false),
            (S::Backoff { reason: "down".into(), next_try_ms: 5 }, "retrying", "Retrying", true),
            (S::Failed { reason: "bad token".into(), next_try_ms: None }, "error", "Stopped by an error", false),
            (
                S::Failed { reason: "bad token".into(), next_try_ms: Some(9) },
                "error",
                "Error, trying again later",
                false,
            ),
        ];
        for (state, id, label, toggle) in cases {
            assert_eq!((state.id(), state.label(), state.can_toggle()), (id, label, toggle), "{state:?}");
        }
        assert_eq!(S::Paused.toggle_label(), "Start publishing");
        assert_eq!(S::Publishing.toggle_label(), "Pause publishing");
        let retrying = Status {
            records_queued: 3,
            last_error: Some("older".into()),
            ..Status::new(S::Backoff { reason: "down".into(), next_try_ms: 5 })
        };
        let v = StatusView::from(&retrying);
        assert_eq!((v.waiting, v.next_try_ms, v.error.as_deref()), (3, Some(5), Some("down")), "the reason wins");
        let v = StatusView::from(&Status { last_error: Some("older".into()), ..Status::new(S::Publishing) });
        assert_eq!((v.next_try_ms, v.error.as_deref()), (None, Some("older")));
    }

    #[test]
    fn transitions_follow_the_table() {
        use PublisherState as S;
        let backoff = || S::Backoff { reason: "down".into(), next_try_ms: 5 };
        let retry = || StateEvent::Retry { reason: "down".into(), next_try_ms: 5 };
        let failed = || S::Failed { reason: "bad token".into(), next_try_ms: None };
        let fatal = || StateEvent::Fatal { reason: "bad token".into(), next_try_ms: None };
        let failing = || S::Failed { reason: "bad token".into(), next_try_ms: Some(9) };
        let table: Vec<(S, StateEvent, S)> = vec![
            (S::Unconfigured, StateEvent::Connect, S::Connecting),
            (S::Unconfigured, retry(), S::Unconfigured),
            (S::Unconfigured, fatal(), S::Unconfigured),
            (S::Connecting, StateEvent::Connected, S::Publishing),
            (S::Connecting, retry(), backoff()),
            (S::Connecting, fatal(), failed()),
            (S::Publishing, retry(), backoff()),
            (backoff(), StateEvent::Connect, S::Connecting),
            (backoff(), StateEvent::Connected, S::Publishing),
            (failed(), StateEvent::Connect, S::Connecting),
            (S::Publishing, StateEvent::Fatal { reason: "bad token".into(), next_try_ms: Some(9) }, failing()),
            (failing(), retry(), backoff()),
            (failing(), StateEvent::Connected, S::Publishing),
            (S::Publishing, StateEvent::Pause, S::Paused),
            (backoff(), StateEvent::Pause, S::Paused),
            (S::Unconfigured, StateEvent::Pause, S::Unconfigured),
            (S::Paused, retry(), S::Paused),
            (S::Paused, StateEvent::Connected, S::Paused),
            (S::Paused, fatal(), S::Paused),
            (S::Paused, StateEvent::Resume { connected: true }, S::Publishing),
            (S::Paused, StateEvent::Resume { connected: false }, S::Connecting),
            (S::Publishing, StateEvent::Resume { connected: true }, S::Publishing),
            (backoff(), StateEvent::Resume { connected: false }, backoff()),
            (S::Publishing, StateEvent::Unconfigure, S::Unconfigured),
            (S::Paused, StateEvent::Unconfigure, S::Unconfigured),
            (S::Publishing, StateEvent::Stop, S::Stopping),
            (backoff(), StateEvent::Stop, S::Stopping),
            (S::Stopping, StateEvent::Connected, S::Stopping),
            (S::Stopping, retry(), S::Stopping),
            (S::Stopping, StateEvent::Resume { connected: true }, S::Stopping),
            (S::Stopping, StateEvent::Stopped { configured: true }, S::Paused),
            (S::Stopping, StateEvent::Stopped { configured: false }, S::Unconfigured),
            (S::Publishing, StateEvent::Stopped { configured: true }, S::Publishing),
        ];
        for (from, event, to) in table {
            assert_eq!(from.next(event.clone()), to, "{from:?} --{event:?}-->");
        }
    }
}
