//! What the tray shows for a status: the icon's look, the status line, the error line and the
//! toggle. Pure, so that plain `cargo test` checks it; the desktop app applies it to the tray.

use crate::status::{PublisherState, Status, StatusView};

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// No token yet.
    Unconfigured,
    /// Publishing switched off.
    Paused,
    /// Samples flow.
    Publishing,
    /// Retrying or stopped by an error.
    Error,
}

impl Look {
    /// The name used in the tray's tooltip (and by tests).
    pub fn name(self) -> &'static str {
        match self {
            Look::Unconfigured => "not configured",
            Look::Paused => "paused",
            Look::Publishing => "publishing",
            Look::Error => "error",
        }
    }
}

/// What the tray shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayView {
    /// The icon.
    pub look: Look,
    /// "Publishing · CPU 12.5 % · 42 acknowledged".
    pub status_line: String,
    /// "Last error: …", or `None`.
    pub error_line: Option<String>,
    /// "Pause publishing" or "Start publishing".
    pub toggle_label: &'static str,
    /// Whether the toggle does anything (not without a token).
    pub toggle_enabled: bool,
}

/// Longest error shown in the tray menu, in characters.
const ERROR_CHARS: usize = 80;

/// The tray view of `status`.
pub fn view(status: &Status) -> TrayView {
    let look = match &status.state {
        PublisherState::Unconfigured => Look::Unconfigured,
        PublisherState::Paused | PublisherState::Stopping => Look::Paused,
        PublisherState::Connecting | PublisherState::Publishing => Look::Publishing,
        PublisherState::Backoff { .. } | PublisherState::Failed { .. } => Look::Error,
    };
    let v = StatusView::from(status);
    let cpu = v.last_value.map(|x| format!("CPU {x:.1} %")).unwrap_or_else(|| "CPU –".into());
    let mut status_line = format!("{} · {cpu} · {} acknowledged", v.label, v.acknowledged);
    if v.waiting > 0 {
        status_line += &format!(" · {} waiting", v.waiting);
    }
    if v.dropped > 0 {
        status_line += &format!(" · {} dropped", v.dropped);
    }
    let error_line = v.error.map(|e| {
        let short: String = e.chars().take(ERROR_CHARS).collect();
        format!("Last error: {short}{}", if e.chars().count() > ERROR_CHARS { "…" } else { "" })
    });
    TrayView { look, status_line, error_line, toggle_label: v.toggle_label, toggle_enabled: v.can_toggle }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: PublisherState) -> Status {
        Status { last_value: Some(12.34), records_acknowledged: 42, ..Status::new(state) }
    }

    #[test]
    fn each_state_has_its_own_look_and_toggle() {
        let cases = [
            (PublisherState::Unconfigured, Look::Unconfigured, "Pause publishing", false),
            (PublisherState::Paused, Look::Paused, "Start publishing", true),
            (PublisherState::Publishing, Look::Publishing, "Pause publishing", true),
            (PublisherState::Failed { reason: "x".into(), next_try_ms: None }, Look::Error, "Pause publishing", false),
            (PublisherState::Backoff { reason: "x".into(), next_try_ms: 1 }, Look::Error, "Pause publishing", true),
        ];
        for (state, look, label, enabled) in cases {
            let v = view(&status(state.clone()));
            assert_eq!((v.look, v.toggle_label, v.toggle_enabled), (look, label, enabled), "{state:?}");
        }
    }

    #[test]
    fn the_status_line_shows_state_cpu_and_acknowledged_and_errors_are_shortened() {
        let v = view(&status(PublisherState::Publishing));
        assert_eq!(v.status_line, "Publishing · CPU 12.3 % · 42 acknowledged");
        assert_eq!(v.error_line, None);
        let mut s = status(PublisherState::Publishing);
        s.last_value = None;
        s.last_error = Some("e".repeat(100));
        let v = view(&s);
        assert_eq!(v.status_line, "Publishing · CPU – · 42 acknowledged");
        assert_eq!(v.error_line.unwrap().chars().count(), "Last error: ".len() + ERROR_CHARS + 1);
    }

    #[test]
    fn retrying_shows_the_reason_and_the_outbox_counts() {
        let mut s = status(PublisherState::Backoff { reason: "cannot reach the broker".into(), next_try_ms: 1 });
        s.records_queued = 17;
        s.records_dropped = 3;
        let v = view(&s);
        assert_eq!(v.status_line, "Retrying · CPU 12.3 % · 42 acknowledged · 17 waiting · 3 dropped");
        assert_eq!(v.error_line.as_deref(), Some("Last error: cannot reach the broker"));
        let failing = status(PublisherState::Failed { reason: "token rejected".into(), next_try_ms: Some(5) });
        assert!(view(&failing).status_line.starts_with("Error, trying again later · "));
    }
}
