//! What the settings window sends on Save, and how it becomes settings: numbers arrive as text so
//! that bad text is reported per field, like every other problem, instead of failing the whole
//! form. Merging keeps every setting the form does not show (broker, security, outbox bounds…).

use serde::Deserialize;

use crate::settings::{FieldError, LogLevel, RecordFormat, Settings, parse_tags};

/// The settings form as the page sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    /// Stream name; empty: the default.
    pub stream_name: String,
    /// Buffer span, ms, as typed.
    pub buffer_span_ms: String,
    /// Topic name.
    pub topic: String,
    /// `quix` or `json`.
    pub format: String,
    /// Sampling interval, ms, as typed.
    pub interval_ms: String,
    /// Sampling interval on battery, ms, as typed (`0`: low-power mode off).
    pub battery_interval_ms: String,
    /// Processes the `processes` metric publishes, as typed.
    pub process_count: String,
    /// Portal URL; empty: the default.
    pub portal_url: String,
    /// Workspace id; empty: the token's only workspace.
    pub workspace_id: String,
    /// Stream id; empty: the machine's stable id.
    pub stream_id: String,
    /// Verify the broker's TLS host name.
    pub tls_verify_hostname: bool,
    /// Ids of the metrics switched on.
    pub metrics: Vec<String>,
    /// Interface names separated by commas or spaces.
    pub network_interfaces: String,
    /// `name=value` pairs separated by commas or new lines.
    pub tags: String,
    /// Notify when the CPU load stays high.
    pub notify_high_cpu: bool,
    /// The high-CPU threshold, percent, as typed.
    pub high_cpu_percent: String,
    /// How long the load must stay high, seconds, as typed.
    pub high_cpu_seconds: String,
    /// Notify when publishing stops because of an error.
    pub notify_stopped: bool,
    /// Notify when the streaming token is rejected.
    pub notify_token_rejected: bool,
    /// The outbox's size bound, KiB, as typed.
    pub outbox_max_kb: String,
    /// The outbox's age bound, hours, as typed.
    pub outbox_max_age_hours: String,
    /// The stall timeout, ms, as typed.
    pub stall_timeout_ms: String,
    /// `error` … `trace`.
    pub log_level: String,
}

/// A whole number typed into `field`, or the problem naming it and its unit.
fn number(field: &'static str, unit: &str, text: &str, problems: &mut Vec<FieldError>) -> Option<u64> {
    let t = text.trim();
    t.parse::<u64>()
        .map_err(|_| {
            problems
                .push(FieldError { field, message: format!("`{field}` must be a whole number of {unit}, got {t:?}") })
        })
        .ok()
}

/// The tags as the window's field shows them: `name=value` pairs separated by commas.
pub fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

fn optional(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

impl SettingsForm {
    /// `current` with the form's fields put in. Text that is not a number, and tag text that is
    /// not `name=value` pairs, come back as problems (the field keeps its current value); the
    /// caller validates the result as a whole and reports both together.
    pub fn merge(&self, current: &Settings) -> (Settings, Vec<FieldError>) {
        let mut problems = Vec::new();
        let mut s = current.clone();
        s.stream_name = optional(&self.stream_name);
        s.topic = self.topic.trim().to_owned();
        match self.format.trim() {
            "quix" => s.format = RecordFormat::Quix,
            "json" => s.format = RecordFormat::Json,
            other => problems.push(FieldError {
                field: "format",
                message: format!("`format` must be `quix` or `json`, got {other:?}"),
            }),
        }
        s.portal_url = optional(&self.portal_url);
        s.workspace_id = optional(&self.workspace_id);
        s.stream_id = optional(&self.stream_id);
        s.tls_verify_hostname = self.tls_verify_hostname;
        s.metrics = self.metrics.clone();
        s.network_interfaces = self
            .network_interfaces
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        // Tags the field shows as they came stay as they are: a value from the file may hold a
        // comma (or spaces at its ends) that the field's text cannot carry back.
        if self.tags != tags_text(&current.tags) {
            match parse_tags(&self.tags) {
                Ok(tags) => s.tags = tags,
                Err(message) => problems.push(FieldError { field: "tags", message }),
            }
        }
        match LogLevel::parse(self.log_level.trim()) {
            Some(level) => s.log_level = level,
            None => problems.push(FieldError {
                field: "log_level",
                message: format!(
                    "`log_level` must be error, warn, info, debug or trace, got {:?}",
                    self.log_level.trim()
                ),
            }),
        }
        s.notify_high_cpu = self.notify_high_cpu;
        s.notify_stopped = self.notify_stopped;
        s.notify_token_rejected = self.notify_token_rejected;
        for (field, unit, text, target) in [
            ("buffer_span_ms", "milliseconds", &self.buffer_span_ms, &mut s.buffer_span_ms),
            ("interval_ms", "milliseconds", &self.interval_ms, &mut s.interval_ms),
            ("battery_interval_ms", "milliseconds", &self.battery_interval_ms, &mut s.battery_interval_ms),
            ("process_count", "processes", &self.process_count, &mut s.process_count),
            ("high_cpu_percent", "percent", &self.high_cpu_percent, &mut s.high_cpu_percent),
            ("high_cpu_seconds", "seconds", &self.high_cpu_seconds, &mut s.high_cpu_seconds),
            ("outbox_max_kb", "KiB", &self.outbox_max_kb, &mut s.outbox_max_kb),
            ("outbox_max_age_hours", "hours", &self.outbox_max_age_hours, &mut s.outbox_max_age_hours),
            ("stall_timeout_ms", "milliseconds", &self.stall_timeout_ms, &mut s.stall_timeout_ms),
        ] {
            if let Some(v) = number(field, unit, text, &mut problems) {
                *target = v;
            }
        }
        (s, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SettingsForm {
        SettingsForm {
            stream_name: " Desk ".into(),
            buffer_span_ms: "250".into(),
            topic: " cpu ".into(),
            format: "json".into(),
            interval_ms: "500".into(),
            battery_interval_ms: "0".into(),
            process_count: "5".into(),
            tags: "site=lab, rack=3".into(),
            network_interfaces: "eth0, wlan0 lo".into(),
            high_cpu_percent: "80".into(),
            high_cpu_seconds: "30".into(),
            outbox_max_kb: "2048".into(),
            outbox_max_age_hours: "48".into(),
            stall_timeout_ms: "30000".into(),
            log_level: "debug".into(),
            metrics: vec!["memory".into()],
            ..Default::default()
        }
    }

    #[test]
    fn tags_the_field_cannot_carry_back_stay_as_they_are_unless_the_user_changes_them() {
        let tags = [("site".to_owned(), "a,b".to_owned()), ("rack".to_owned(), " 3 ".to_owned())].into();
        let current = Settings { tags, ..Default::default() };
        let shown = SettingsForm { tags: tags_text(&current.tags), ..form() };
        let (s, problems) = shown.merge(&current);
        assert!(problems.is_empty(), "saving anything else still works: {problems:?}");
        assert_eq!(s.tags, current.tags);
        let changed = SettingsForm { tags: "site=lab".into(), ..form() };
        assert_eq!(changed.merge(&current).0.tags.get("site").map(String::as_str), Some("lab"));
    }

    #[test]
    fn the_form_fills_its_fields_and_keeps_the_rest() {
        let current = Settings { broker: Some("k:9092".into()), record_max_kb: 512, ..Default::default() };
        let (s, problems) = form().merge(&current);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((s.stream_name.as_deref(), s.topic.as_str()), (Some("Desk"), "cpu"));
        assert_eq!(s.format, RecordFormat::Json);
        assert_eq!((s.outbox_max_kb, s.outbox_max_age_hours, s.stall_timeout_ms), (2048, 48, 30_000));
        assert_eq!(s.log_level, LogLevel::Debug);
        assert_eq!((s.buffer_span_ms, s.interval_ms, s.high_cpu_percent, s.high_cpu_seconds), (250, 500, 80, 30));
        assert_eq!(s.network_interfaces, ["eth0", "wlan0", "lo"]);
        assert_eq!((s.battery_interval_ms, s.process_count), (0, 5));
        assert_eq!(s.tags.get("rack").map(String::as_str), Some("3"));
        assert_eq!((s.portal_url, s.workspace_id, s.stream_id), (None, None, None), "empty means the default");
        assert_eq!((s.broker.as_deref(), s.record_max_kb), (Some("k:9092"), 512), "what the form lacks stays");
    }

    #[test]
    fn text_that_is_no_number_is_a_problem_of_its_field_and_the_value_stays() {
        let f =
            SettingsForm { interval_ms: "fast".into(), high_cpu_percent: "-1".into(), tags: "site".into(), ..form() };
        let (s, problems) = f.merge(&Settings::default());
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["tags", "interval_ms", "high_cpu_percent"]);
        assert_eq!(problems[1].message, "`interval_ms` must be a whole number of milliseconds, got \"fast\"");
        assert_eq!((s.interval_ms, s.high_cpu_percent), (1000, 90), "unchanged");
        assert_eq!(s.buffer_span_ms, 250, "the good fields still apply");
    }
}
