//! A measured row: one timestamp, the values measured then, and the tags that go with them.

use std::sync::Arc;

/// The parameter id of the quickstart's one value, kept for compatibility with its readers.
pub const CPU_LOAD: &str = "CPU_Load";

/// One timeseries row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// When the values were measured: ns since the Unix epoch, UTC.
    pub timestamp_ns: i64,
    /// Parameter id and value, at most one entry per id. NaN and infinities are sent as `null`.
    pub values: Vec<(Arc<str>, f64)>,
    /// String parameter id and value (a process name), at most one entry per id: the envelope's
    /// `StringValues`, a string field in a JSON row.
    pub texts: Vec<(Arc<str>, Arc<str>)>,
    /// Tag id and value, at most one entry per id.
    pub tags: Vec<(Arc<str>, Arc<str>)>,
}

impl Row {
    /// A row with no values yet.
    pub fn new(timestamp_ns: i64) -> Self {
        Row { timestamp_ns, values: Vec::new(), texts: Vec::new(), tags: Vec::new() }
    }

    /// Adds (or replaces) a value.
    pub fn with_value(mut self, id: impl Into<Arc<str>>, v: f64) -> Self {
        put(&mut self.values, id.into(), v);
        self
    }

    /// Adds (or replaces) a string value.
    pub fn with_text(mut self, id: impl Into<Arc<str>>, v: impl Into<Arc<str>>) -> Self {
        put(&mut self.texts, id.into(), v.into());
        self
    }

    /// Adds (or replaces) a tag.
    pub fn with_tag(mut self, id: impl Into<Arc<str>>, v: impl Into<Arc<str>>) -> Self {
        put(&mut self.tags, id.into(), v.into());
        self
    }

    /// The value of parameter `id`, if the row has one.
    pub fn value(&self, id: &str) -> Option<f64> {
        get(&self.values, id).copied()
    }

    /// The string value of parameter `id`, if the row has one.
    pub fn text(&self, id: &str) -> Option<&str> {
        get(&self.texts, id).map(|v| &**v)
    }

    /// The value of tag `id`, if the row has one.
    pub fn tag(&self, id: &str) -> Option<&str> {
        get(&self.tags, id).map(|v| &**v)
    }
}

/// Sets `id` to `v` in `entries`, keeping one entry per id.
fn put<T>(entries: &mut Vec<(Arc<str>, T)>, id: Arc<str>, v: T) {
    match entries.iter_mut().find(|(k, _)| *k == id) {
        Some(slot) => slot.1 = v,
        None => entries.push((id, v)),
    }
}

/// The entry for `id` in `entries`.
fn get<'a, T>(entries: &'a [(Arc<str>, T)], id: &str) -> Option<&'a T> {
    entries.iter().find(|(k, _)| &**k == id).map(|(_, v)| v)
}

/// Turns a CPU busy fraction reported as percent (sysinfo's `f32`) into the value we publish:
/// clamped to 0–100 and rounded to one decimal, as `psutil.cpu_percent` (the quickstart) does.
/// The rounding also hides the `f32` noise (`9.999999046325684`) that a plain cast would expose.
/// A non-finite reading is not a measurement and gives `None`.
pub fn cpu_percent(raw: f32) -> Option<f64> {
    if !raw.is_finite() {
        return None;
    }
    let v = f64::from(raw).clamp(0.0, 100.0);
    Some((v * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_rounds_like_psutil_and_stays_in_range() {
        assert_eq!(cpu_percent(9.999_999), Some(10.0));
        assert_eq!(cpu_percent(49.96), Some(50.0));
        assert_eq!(cpu_percent(12.34), Some(12.3));
        assert_eq!(cpu_percent(0.0), Some(0.0));
        assert_eq!(cpu_percent(100.4), Some(100.0));
        assert_eq!(cpu_percent(-0.5), Some(0.0));
        assert_eq!(cpu_percent(f32::NAN), None);
        assert_eq!(cpu_percent(f32::INFINITY), None);
    }

    #[test]
    fn replacing_a_value_keeps_one_entry_per_id() {
        let r = Row::new(5)
            .with_value("a", 1.0)
            .with_value("a", 2.0)
            .with_tag("t", "x")
            .with_tag("t", "y")
            .with_text("n", "p")
            .with_text("n", "q");
        assert_eq!((r.values.len(), r.texts.len()), (1, 1));
        assert_eq!(r.text("n"), Some("q"));
        assert_eq!(r.value("a"), Some(2.0));
        assert_eq!(r.tag("t"), Some("y"));
        assert_eq!(r.value("b"), None);
    }
}
