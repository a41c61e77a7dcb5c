//! When the desktop app tells the user something: sustained high CPU, publishing stopped by an
//! error, the token rejected. A pure function of the status over time; the app shows what it
//! returns. Each kind is rate-limited and can be switched off.

use std::time::Duration;

use serde::Serialize;

use crate::processes::{self, TopProcess};
use crate::status::{PublisherState, Status};

/// At most one notification of a kind per this long.
pub const MIN_GAP: Duration = Duration::from_secs(15 * 60);
/// Retrying for this long counts as "publishing stopped" (shorter outages heal unseen).
pub const STOPPED_AFTER: Duration = Duration::from_secs(60);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// CPU load at or above the threshold for the configured time.
    HighCpu,
    /// Publishing stopped by an error (or retrying for [`STOPPED_AFTER`]).
    Stopped,
    /// The Quix Portal rejected the streaming token.
    TokenRejected,
}

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

/// Which notifications are on, and the high-CPU rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotifyConfig {
    /// Notify about sustained high CPU.
    pub high_cpu: bool,
    /// The CPU threshold, percent.
    pub high_cpu_percent: f64,
    /// How long the CPU must stay at or above the threshold.
    pub high_cpu_for: Duration,
    /// Notify when publishing stops by an error.
    pub stopped: bool,
    /// Notify when the token is rejected.
    pub token_rejected: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            high_cpu: true,
            high_cpu_percent: 90.0,
            high_cpu_for: Duration::from_secs(60),
            stopped: true,
            token_rejected: true,
        }
    }
}

/// Watches the status and decides when to notify.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: NotifyConfig,
    /// Since when the CPU has been at or above the threshold.
    high_since: Option<Duration>,
    /// Since when the publisher has been retrying.
    backoff_since: Option<Duration>,
    /// Whether each kind may fire again (it re-arms when its condition ends).
    armed: [bool; 3],
    /// When each kind last fired.
    last: [Option<Duration>; 3],
}

fn slot(kind: NoticeKind) -> usize {
    kind as usize
}

impl Notifier {
    /// A notifier with `config`.
    pub fn new(config: NotifyConfig) -> Self {
        Notifier { config, high_since: None, backoff_since: None, armed: [true; 3], last: [None; 3] }
    }

    /// Changes the rules; conditions already running keep their start.
    pub fn set_config(&mut self, config: NotifyConfig) {
        self.config = config;
    }

    /// Looks at `status` at monotonic time `now` and returns what to show, if anything.
    pub fn observe(&mut self, now: Duration, status: &Status) -> Option<Notice> {
        let high = status.last_value.is_some_and(|v| v >= self.config.high_cpu_percent);
        self.high_since = if high { Some(self.high_since.unwrap_or(now)) } else { None };
        if !high {
            self.armed[slot(NoticeKind::HighCpu)] = true;
        }
        let retrying = matches!(status.state, PublisherState::Backoff { .. });
        self.backoff_since = if retrying { Some(self.backoff_since.unwrap_or(now)) } else { None };
        if matches!(status.state, PublisherState::Publishing | PublisherState::Paused | PublisherState::Connecting) {
            self.armed[slot(NoticeKind::Stopped)] = true;
            self.armed[slot(NoticeKind::TokenRejected)] = true;
        }

        if let PublisherState::Failed { reason, .. } = &status.state {
            if status.token_rejected {
                if self.config.token_rejected && self.fire(NoticeKind::TokenRejected, now) {
                    return Some(Notice {
                        kind: NoticeKind::TokenRejected,
                        title: "HostPulse: streaming token rejected".into(),
                        body: format!("{reason}. Samples are kept; open HostPulse settings to enter a new token."),
                    });
                }
            } else if self.config.stopped && self.fire(NoticeKind::Stopped, now) {
                return Some(stopped(reason));
            }
        }
        if let (PublisherState::Backoff { reason, .. }, Some(since)) = (&status.state, self.backoff_since)
            && now.saturating_sub(since) >= STOPPED_AFTER
            && self.config.stopped
            && self.fire(NoticeKind::Stopped, now)
        {
            return Some(stopped(reason));
        }
        if let (Some(since), Some(v)) = (self.high_since, status.last_value)
            && self.config.high_cpu
            && now.saturating_sub(since) >= self.config.high_cpu_for
            && self.fire(NoticeKind::HighCpu, now)
        {
            return Some(self.high_cpu(v, &status.spell_top));
        }
        None
    }

    /// "CPU at 96 % for 60 s (at or above 90 %): firefox 71 %, cargo 18 %, Xorg 4 %."
    fn high_cpu(&self, now: f64, top: &[TopProcess]) -> Notice {
        let (threshold, secs) = (self.config.high_cpu_percent, self.config.high_cpu_for.as_secs());
        let mut body = format!("CPU at {now} % for {secs} s (at or above {threshold} %)");
        let named = processes::summary(top);
        if !named.is_empty() {
            body += ": ";
            body += &named;
        }
        body.push('.');
        Notice { kind: NoticeKind::HighCpu, title: "HostPulse: high CPU load".into(), body }
    }

    /// Fires `kind` if it is armed and its last notification is [`MIN_GAP`] ago.
    fn fire(&mut self, kind: NoticeKind, now: Duration) -> bool {
        let i = slot(kind);
        let quiet = self.last[i].is_none_or(|t| now.saturating_sub(t) >= MIN_GAP);
        if self.armed[i] && quiet {
            self.armed[i] = false;
            self.last[i] = Some(now);
            true
        } else {
            false
        }
    }
}

fn stopped(reason: &str) -> Notice {
    Notice {
        kind: NoticeKind::Stopped,
        title: "HostPulse: publishing stopped".into(),
        body: format!("{reason}. Samples are kept and sent when publishing resumes."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn cpu(v: f64) -> Status {
        Status { last_value: Some(v), ..Status::new(PublisherState::Publishing) }
    }

    fn kinds(n: &mut Notifier, steps: &[(u64, Status)]) -> Vec<(u64, NoticeKind)> {
        steps.iter().filter_map(|(t, s)| n.observe(at(*t), s).map(|x| (*t, x.kind))).collect()
    }

    fn config(secs: u64) -> NotifyConfig {
        NotifyConfig { high_cpu_percent: 90.0, high_cpu_for: at(secs), ..NotifyConfig::default() }
    }

    #[test]
    fn high_cpu_fires_once_after_the_duration_and_not_again_while_it_lasts() {
        let mut n = Notifier::new(config(60));
        let steps: Vec<(u64, Status)> = (0..=300).map(|t| (t, cpu(95.0))).collect();
        assert_eq!(kinds(&mut n, &steps), [(60, NoticeKind::HighCpu)]);
    }

    #[test]
    fn the_high_cpu_notice_names_the_top_processes_of_the_spell() {
        let mut n = Notifier::new(config(2));
        let top = |name: &str, cpu: f64| TopProcess { pid: 1, name: name.into(), cpu, memory: 1 };
        let mut busy = cpu(96.0);
        busy.spell_top = vec![top("firefox", 71.0), top("cargo", 18.4), top("Xorg", 0.0)];
        assert_eq!(n.observe(at(0), &busy), None);
        let notice = n.observe(at(2), &busy).unwrap();
        assert_eq!(notice.body, "CPU at 96 % for 2 s (at or above 90 %): firefox 71 %, cargo 18.4 %.");
        let mut n = Notifier::new(config(0));
        assert_eq!(n.observe(at(0), &cpu(91.5)).unwrap().body, "CPU at 91.5 % for 0 s (at or above 90 %).");
    }

    #[test]
    fn a_dip_below_the_threshold_restarts_the_clock() {
        let mut n = Notifier::new(config(60));
        let mut steps: Vec<(u64, Status)> = (0..50).map(|t| (t, cpu(95.0))).collect();
        steps.push((50, cpu(89.9)));
        steps.extend((51..=120).map(|t| (t, cpu(90.0))));
        assert_eq!(kinds(&mut n, &steps), [(111, NoticeKind::HighCpu)]);
    }

    #[test]
    fn notifications_of_a_kind_are_at_least_the_gap_apart() {
        let mut n = Notifier::new(config(10));
        let mut steps = Vec::new();
        // High for 20 s, low, high again soon: the second episode is within the gap.
        steps.extend((0..20).map(|t| (t, cpu(99.0))));
        steps.push((20, cpu(5.0)));
        steps.extend((21..60).map(|t| (t, cpu(99.0))));
        steps.push((60, cpu(5.0)));
        let later = MIN_GAP.as_secs() + 100;
        steps.extend((later..later + 20).map(|t| (t, cpu(99.0))));
        assert_eq!(kinds(&mut n, &steps), [(10, NoticeKind::HighCpu), (later + 10, NoticeKind::HighCpu)]);
    }

    #[test]
    fn a_kind_switched_off_never_fires() {
        let mut n = Notifier::new(NotifyConfig { high_cpu: false, ..config(1) });
        let steps: Vec<(u64, Status)> = (0..100).map(|t| (t, cpu(100.0))).collect();
        assert_eq!(kinds(&mut n, &steps), []);
        let mut n = Notifier::new(NotifyConfig { stopped: false, token_rejected: false, ..config(1) });
        let failed = Status {
            token_rejected: true,
            ..Status::new(PublisherState::Failed { reason: "401".into(), next_try_ms: None })
        };
        assert_eq!(n.observe(at(0), &failed), None);
    }

    #[test]
    fn errors_fire_once_per_episode_and_short_outages_stay_quiet() {
        let mut n = Notifier::new(config(60));
        let backoff = || Status::new(PublisherState::Backoff { reason: "broker down".into(), next_try_ms: 0 });
        let mut steps: Vec<(u64, Status)> = (0..30).map(|t| (t, backoff())).collect();
        steps.push((30, Status::new(PublisherState::Publishing)));
        steps.extend((31..200).map(|t| (t, backoff())));
        assert_eq!(kinds(&mut n, &steps), [(91, NoticeKind::Stopped)], "30 s outage: quiet; 60 s: one");

        let mut n = Notifier::new(config(60));
        let rejected = Status {
            token_rejected: true,
            ..Status::new(PublisherState::Failed {
                reason: "the Quix Portal rejected the streaming token".into(),
                next_try_ms: Some(1),
            })
        };
        let notice = n.observe(at(0), &rejected).unwrap();
        assert_eq!(notice.kind, NoticeKind::TokenRejected);
        assert!(notice.body.contains("rejected the streaming token") && notice.body.contains("new token"));
        assert_eq!(n.observe(at(1), &rejected), None);
        let other = Status::new(PublisherState::Failed { reason: "refused the login".into(), next_try_ms: None });
        assert_eq!(n.observe(at(2), &other).map(|n| n.kind), Some(NoticeKind::Stopped));
    }
}
