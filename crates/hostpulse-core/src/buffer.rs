//! The timeseries buffer: groups rows into records with the semantics of quixstreams 0.5.7's
//! `TimeseriesBuffer` (docs/spec/quix-wire-format.md, "Timeseries buffer"), plus one improvement.
//!
//! 0.5.7 triggers, per pushed row, in order:
//! 1. time span: if the *data* timestamps buffered so far plus the new row span at least
//!    `time_span`, everything buffered before the new row is flushed; the span restarts at it;
//! 2. packet size: after enqueuing, if `packet_size` rows are buffered, all of them are flushed;
//! 3. timeout: a timer re-armed by every push flushes after `timeout` without new rows.
//!
//! The improvement: 0.5.7 only notices a full span when the *next* row arrives, so with a 1 s
//! sampling interval and a 100 ms span every sample leaves one interval late. Here a span also
//! expires by the clock: `time_span` after the first buffered row arrived, the buffer is due
//! ([`TimespanBuffer::deadline`]), so a sample never waits longer than the span for company.
//! Every flush restarts the span (0.5.7 keeps the old minimum after a packet-size or timeout
//! flush, which makes the next span flush early; we do not copy that quirk).
//!
//! A flush merges rows with the same timestamp and the same tags (later values win) and drops
//! rows that hold no value, as 0.5.7 does. Time is passed in: `now` is any monotonic clock reading
//! as a `Duration` since a fixed origin.

use std::time::Duration;

use crate::sample::Row;

/// When the buffer flushes. All unset makes it a pass-through: each row is its own record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferConfig {
    /// Flush when buffered rows span this much data time, or this long after the first row came.
    pub time_span: Option<Duration>,
    /// Flush when this many rows are buffered.
    pub packet_size: Option<usize>,
    /// Flush after this long without a new row.
    pub timeout: Option<Duration>,
}

/// Rows waiting to become one `ParameterData` record.
#[derive(Debug, Clone)]
pub struct TimespanBuffer {
    config: BufferConfig,
    rows: Vec<Row>,
    /// Smallest and largest data timestamp since the span (re)started.
    span_ns: Option<(i64, i64)>,
    /// When the first row of the current batch arrived.
    first_arrival: Option<Duration>,
    /// When the latest row arrived.
    last_arrival: Option<Duration>,
}

impl TimespanBuffer {
    /// An empty buffer.
    pub fn new(config: BufferConfig) -> Self {
        TimespanBuffer { config, rows: Vec::new(), span_ns: None, first_arrival: None, last_arrival: None }
    }

    /// The configuration in force.
    pub fn config(&self) -> BufferConfig {
        self.config
    }

    /// Changes the triggers; rows already buffered stay and obey the new ones.
    pub fn set_config(&mut self, config: BufferConfig) {
        self.config = config;
    }

    /// Rows buffered now.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The measurement time of the first row buffered (rows arrive in measurement order).
    pub fn oldest_ns(&self) -> Option<i64> {
        self.rows.first().map(|r| r.timestamp_ns)
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a row that arrived at `now` and returns the batch it completed, if any. (At most one:
    /// a span flush leaves only the new row, which fills a packet only when `packet_size` is 1,
    /// and then the span had nothing buffered to flush.)
    pub fn push(&mut self, row: Row, now: Duration) -> Option<Vec<Row>> {
        let mut out = None;
        if let Some(span) = self.config.time_span {
            let ts = row.timestamp_ns;
            let (min, max) = match self.span_ns {
                Some((min, max)) => (min.min(ts), max.max(ts)),
                None => (ts, ts),
            };
            let span_ns = i64::try_from(span.as_nanos()).unwrap_or(i64::MAX);
            if max.saturating_sub(min) >= span_ns {
                out = self.take();
                self.span_ns = Some((ts, ts));
            } else {
                self.span_ns = Some((min, max));
            }
        }
        if self.rows.is_empty() {
            self.first_arrival = Some(now);
        }
        self.last_arrival = Some(now);
        self.rows.push(row);
        let all_unset = self.config == BufferConfig::default();
        let packet_full = self.config.packet_size.is_some_and(|n| self.rows.len() >= n);
        if all_unset || packet_full {
            debug_assert!(out.is_none());
            out = self.take();
        }
        out
    }

    /// When the buffer becomes due by the clock (span since the first row, or timeout since the
    /// last), if anything is buffered.
    pub fn deadline(&self) -> Option<Duration> {
        if self.rows.is_empty() {
            return None;
        }
        let by_span = self.config.time_span.zip(self.first_arrival).map(|(s, t)| t + s);
        let by_timeout = self.config.timeout.zip(self.last_arrival).map(|(s, t)| t + s);
        match (by_span, by_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Flushes if the deadline has passed at `now`.
    pub fn poll(&mut self, now: Duration) -> Option<Vec<Row>> {
        match self.deadline() {
            Some(d) if d <= now => self.take(),
            _ => None,
        }
    }

    /// Flushes whatever is buffered (on close, pause or settings change).
    pub fn flush(&mut self) -> Option<Vec<Row>> {
        self.take()
    }

    fn take(&mut self) -> Option<Vec<Row>> {
        self.span_ns = None;
        self.first_arrival = None;
        self.last_arrival = None;
        let rows = merge_rows(std::mem::take(&mut self.rows));
        (!rows.is_empty()).then_some(rows)
    }
}

/// Merges rows with equal timestamp and equal tags into the first of them (a later finite value
/// or string wins) and drops rows without any finite value or string.
fn merge_rows(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    // Rows by timestamp, so that finding a row to merge with stays O(1) per row (a batch can hold
    // tens of thousands of rows).
    let mut at: std::collections::HashMap<i64, Vec<usize>> = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let slots = at.entry(row.timestamp_ns).or_default();
        let same = slots.iter().copied().find(|&i| same_tags(&out[i], &row)).map(|i| &mut out[i]);
        match same {
            Some(target) => {
                for (id, v) in row.values {
                    if v.is_finite() || target.value(&id).is_none() {
                        *target = std::mem::replace(target, Row::new(0)).with_value(id, v);
                    }
                }
                for (id, v) in row.texts {
                    *target = std::mem::replace(target, Row::new(0)).with_text(id, v);
                }
            }
            None => {
                slots.push(out.len());
                out.push(row);
            }
        }
    }
    out.retain(|r| !r.texts.is_empty() || r.values.iter().any(|(_, v)| v.is_finite()));
    out
}

fn same_tags(a: &Row, b: &Row) -> bool {
    a.tags.len() == b.tags.len() && a.tags.iter().all(|(k, v)| b.tag(k) == Some(&**v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const T0: i64 = 1_704_164_645_678_901_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn row(offset_ms: i64, v: f64) -> Row {
        Row::new(T0 + offset_ms * MS).with_value("CPU_Load", v)
    }

    fn stamps(batch: &[Row]) -> Vec<i64> {
        batch.iter().map(|r| (r.timestamp_ns - T0) / MS).collect()
    }

    fn span(n: u64) -> BufferConfig {
        BufferConfig { time_span: Some(ms(n)), ..Default::default() }
    }

    #[test]
    fn unset_triggers_pass_every_row_through() {
        let mut b = TimespanBuffer::new(BufferConfig::default());
        let out = b.push(row(0, 1.0), ms(0)).unwrap();
        assert_eq!(stamps(&out), [0]);
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_row_that_completes_the_span_flushes_the_rows_before_it() {
        // Scenario B of the fixture: rows at 0/40/80/150/400 ms pushed at once.
        let mut b = TimespanBuffer::new(span(100));
        let now = ms(0);
        assert!(b.push(row(0, 12.5), now).is_none());
        assert!(b.push(row(40, 13.0), now).is_none());
        assert!(b.push(row(80, 0.25), now).is_none());
        assert_eq!(stamps(&b.push(row(150, 99.75), now).unwrap()), [0, 40, 80]);
        assert_eq!(stamps(&b.push(row(400, 42.0), now).unwrap()), [150]);
        assert_eq!(stamps(&b.flush().unwrap()), [400]);
        assert!(b.flush().is_none(), "a flushed buffer is empty");
    }

    #[test]
    fn exactly_one_span_apart_is_already_a_full_span() {
        // 0.5.7 compares with >=.
        let mut b = TimespanBuffer::new(span(100));
        assert!(b.push(row(0, 1.0), ms(0)).is_none());
        assert!(b.push(row(99, 1.0), ms(0)).is_none());
        assert_eq!(stamps(&b.push(row(100, 1.0), ms(0)).unwrap()), [0, 99]);
    }

    #[test]
    fn a_lone_sample_leaves_when_the_span_has_passed_on_the_clock() {
        // 1 s sampling, 100 ms span: 0.5.7 would hold each sample until the next one (1 s late).
        let mut b = TimespanBuffer::new(span(100));
        b.push(row(0, 5.0), ms(1000));
        assert_eq!(b.deadline(), Some(ms(1100)));
        assert!(b.poll(ms(1099)).is_none(), "not due before the span has passed");
        assert_eq!(stamps(&b.poll(ms(1100)).unwrap()), [0]);
        assert_eq!(b.deadline(), None);
        // The next sample starts a fresh span, one interval later.
        b.push(row(1000, 6.0), ms(2000));
        assert_eq!(b.deadline(), Some(ms(2100)));
    }

    #[test]
    fn the_clock_deadline_counts_from_the_first_row_not_the_last() {
        let mut b = TimespanBuffer::new(span(100));
        b.push(row(0, 1.0), ms(0));
        b.push(row(50, 1.0), ms(50));
        assert_eq!(b.deadline(), Some(ms(100)));
        assert_eq!(stamps(&b.poll(ms(100)).unwrap()), [0, 50]);
    }

    #[test]
    fn packet_size_flushes_including_the_new_row() {
        let mut b = TimespanBuffer::new(BufferConfig { packet_size: Some(3), ..Default::default() });
        assert!(b.push(row(0, 1.0), ms(0)).is_none());
        assert!(b.push(row(1, 1.0), ms(0)).is_none());
        assert_eq!(stamps(&b.push(row(2, 1.0), ms(0)).unwrap()), [0, 1, 2]);
        assert_eq!(b.deadline(), None, "packet size alone has no clock deadline");
    }

    #[test]
    fn a_span_flush_leaves_the_new_row_to_start_the_next_packet() {
        let mut b = TimespanBuffer::new(BufferConfig { time_span: Some(ms(100)), packet_size: Some(2), timeout: None });
        assert!(b.push(row(0, 1.0), ms(0)).is_none());
        assert_eq!(stamps(&b.push(row(200, 1.0), ms(0)).unwrap()), [0]);
        assert_eq!(stamps(&b.push(row(250, 1.0), ms(0)).unwrap()), [200, 250]);
    }

    #[test]
    fn timeout_is_rearmed_by_every_row() {
        let mut b = TimespanBuffer::new(BufferConfig { timeout: Some(ms(30)), ..Default::default() });
        b.push(row(0, 1.0), ms(0));
        b.push(row(20, 1.0), ms(20));
        assert_eq!(b.deadline(), Some(ms(50)));
        assert!(b.poll(ms(49)).is_none());
        assert_eq!(stamps(&b.poll(ms(50)).unwrap()), [0, 20]);
    }

    #[test]
    fn the_earlier_of_span_and_timeout_decides() {
        let mut b =
            TimespanBuffer::new(BufferConfig { time_span: Some(ms(100)), packet_size: None, timeout: Some(ms(30)) });
        b.push(row(0, 1.0), ms(0));
        assert_eq!(b.deadline(), Some(ms(30)));
        b.push(row(25, 1.0), ms(25));
        b.push(row(50, 1.0), ms(50));
        b.push(row(75, 1.0), ms(75));
        assert_eq!(b.deadline(), Some(ms(100)), "span caps a timeout that keeps being re-armed");
    }

    #[test]
    fn data_time_going_backwards_by_a_span_also_flushes() {
        let mut b = TimespanBuffer::new(span(100));
        b.push(row(1000, 1.0), ms(0));
        assert_eq!(stamps(&b.push(row(0, 2.0), ms(0)).unwrap()), [1000]);
        assert_eq!(stamps(&b.flush().unwrap()), [0]);
    }

    #[test]
    fn every_flush_restarts_the_span() {
        // 0.5.7 keeps the old minimum after a packet flush; then row 60 would flush row 50 alone.
        let mut b = TimespanBuffer::new(BufferConfig { time_span: Some(ms(100)), packet_size: Some(2), timeout: None });
        b.push(row(0, 1.0), ms(0));
        assert_eq!(stamps(&b.push(row(40, 1.0), ms(0)).unwrap()), [0, 40]);
        assert!(b.push(row(110, 1.0), ms(0)).is_none());
        assert_eq!(stamps(&b.push(row(120, 1.0), ms(0)).unwrap()), [110, 120]);
    }

    #[test]
    fn rows_with_the_same_time_and_tags_merge_and_empty_rows_vanish() {
        let mut b = TimespanBuffer::new(span(1000));
        b.push(Row::new(T0).with_value("a", 1.0).with_value("b", 2.0), ms(0));
        b.push(Row::new(T0).with_value("a", f64::NAN).with_value("b", 3.0), ms(0));
        b.push(Row::new(T0).with_value("c", 4.0).with_tag("t", "x"), ms(0));
        b.push(Row::new(T0 + MS).with_value("a", f64::NAN), ms(0));
        b.push(Row::new(T0 + 2 * MS), ms(0));
        b.push(Row::new(T0).with_text("n", "first"), ms(0));
        b.push(Row::new(T0).with_text("n", "second"), ms(0));
        b.push(Row::new(T0 + 3 * MS).with_text("only", "a name"), ms(0));
        let out = b.flush().unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0].text("n"), Some("second"), "the later string wins");
        assert_eq!(out[2].text("only"), Some("a name"), "a row with only a string is not empty");
        assert_eq!(out[0].value("a"), Some(1.0), "a null does not overwrite a value");
        assert_eq!(out[0].value("b"), Some(3.0), "the later value wins");
        assert_eq!(out[1].tag("t"), Some("x"), "different tags keep rows apart");
    }

    #[test]
    fn an_empty_buffer_has_no_deadline_and_flushes_nothing() {
        let mut b = TimespanBuffer::new(span(100));
        assert_eq!(b.deadline(), None);
        assert!(b.poll(ms(10_000)).is_none());
        assert!(b.flush().is_none());
    }
}
