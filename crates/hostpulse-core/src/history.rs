//! The recent past, for the window's chart: every sampled row of the last hour (whether it was
//! sent or not), and how far delivery has got.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::sample::Row;

/// How long the window's chart looks back.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Publishing was off or unconfigured: the row was measured, not published.
    Local,
    /// In the buffer or the outbox, not yet acknowledged by the broker.
    Waiting,
    /// Acknowledged by the broker.
    Sent,
}

/// Rows of the last [`window`](History::new), oldest first.
#[derive(Debug, Clone)]
pub struct History {
    window_ns: i64,
    rows: VecDeque<(Row, bool)>,
    /// Rows at or after this time (ns) are not acknowledged yet.
    unsent_since_ns: Option<i64>,
}

/// One parameter's recent values, ready to draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Parameter id.
    pub id: String,
    /// Sample times, ms since the Unix epoch.
    pub times_ms: Vec<i64>,
    /// Values; `None` where a row lacks the parameter.
    pub values: Vec<Option<f64>>,
    /// What became of each row.
    pub delivery: Vec<Delivery>,
    /// The newest value.
    pub current: Option<f64>,
    /// Lowest value in the window.
    pub min: Option<f64>,
    /// Highest value in the window.
    pub max: Option<f64>,
}

impl History {
    /// An empty history that keeps `window`.
    pub fn new(window: Duration) -> Self {
        History {
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
            rows: VecDeque::new(),
            unsent_since_ns: None,
        }
    }

    /// Adds a measured row; `published` says whether it goes to the broker. Rows that fell out
    /// of the window (counted from the newest row) are forgotten.
    pub fn push(&mut self, row: Row, published: bool) {
        let newest = row.timestamp_ns;
        self.rows.push_back((row, published));
        while self.rows.front().is_some_and(|(r, _)| r.timestamp_ns < newest.saturating_sub(self.window_ns)) {
            self.rows.pop_front();
        }
    }

    /// Records how far delivery has got: rows measured at or after `since_ns` are still waiting
    /// (`None`: everything published was acknowledged).
    pub fn set_unsent_since(&mut self, since_ns: Option<i64>) {
        self.unsent_since_ns = since_ns;
    }

    /// Parameter `id` over the window.
    pub fn series(&self, id: &str) -> Series {
        let mut s = Series {
            id: id.to_owned(),
            times_ms: Vec::with_capacity(self.rows.len()),
            values: Vec::with_capacity(self.rows.len()),
            delivery: Vec::with_capacity(self.rows.len()),
            current: None,
            min: None,
            max: None,
        };
        for (row, published) in &self.rows {
            let v = row.value(id).filter(|v| v.is_finite());
            s.times_ms.push(row.timestamp_ns.div_euclid(1_000_000));
            s.values.push(v);
            s.delivery.push(match (published, self.unsent_since_ns) {
                (false, _) => Delivery::Local,
                (true, Some(since)) if row.timestamp_ns >= since => Delivery::Waiting,
                (true, _) => Delivery::Sent,
            });
            if let Some(v) = v {
                s.current = Some(v);
                s.min = Some(s.min.map_or(v, |m| m.min(v)));
                s.max = Some(s.max.map_or(v, |m| m.max(v)));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn keeps_the_window_and_reports_current_min_max_and_missing_values() {
        let mut h = History::new(Duration::from_secs(10));
        for t in 0..15 {
            let row = Row::new(t * S).with_value("a", t as f64);
            let row = if t == 13 { Row::new(t * S) } else { row };
            h.push(row, true);
        }
        let s = h.series("a");
        assert_eq!(s.times_ms.first(), Some(&4_000), "rows older than 10 s before the newest are gone");
        assert_eq!(s.values.len(), 11);
        assert_eq!(s.values[9], None, "a row without the parameter is a hole, not a zero");
        assert_eq!((s.current, s.min, s.max), (Some(14.0), Some(4.0), Some(14.0)));
        assert_eq!(h.series("b").current, None);
    }

    #[test]
    fn delivery_state_follows_the_acknowledgements() {
        let mut h = History::new(DEFAULT_WINDOW);
        h.push(Row::new(S).with_value("a", 1.0), false);
        h.push(Row::new(2 * S).with_value("a", 2.0), true);
        h.push(Row::new(3 * S).with_value("a", 3.0), true);
        h.set_unsent_since(Some(3 * S));
        assert_eq!(h.series("a").delivery, [Delivery::Local, Delivery::Sent, Delivery::Waiting]);
        h.set_unsent_since(None);
        assert_eq!(h.series("a").delivery, [Delivery::Local, Delivery::Sent, Delivery::Sent]);
    }
}
