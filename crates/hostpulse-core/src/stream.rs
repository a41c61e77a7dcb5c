//! One Quix stream as a sequence of records: which records go out, in which order, when.
//!
//! Rules (docs/spec/quix-wire-format.md, "Stream semantics of 0.5.7 (producer side)"):
//! `StreamProperties` precede the first record of a stream and are sent again before any record
//! when 30 s have passed since they were last sent (the 0.5.7 heartbeat), or when they changed;
//! `ParameterDefinitions` follow once (and again when they change); `ParameterData` carries
//! buffered rows; `StreamEnd` closes the stream.
//! 0.5.7 sends definitions from a 20 ms timer, sometimes after data; we always send them before
//! the data they describe, which every reader accepts.

use std::sync::Arc;

use thiserror::Error;

use crate::json_rows;
use crate::sample::Row;
use crate::settings::RecordFormat;
use crate::wire::{
    ModelKey, ParameterDefinition, Record, StreamEndType, StreamProperties, envelope, write_parameter_data,
    write_parameter_definitions, write_stream_end,
};

/// How long unchanged properties stay fresh before the heartbeat re-sends them (0.5.7 default).
pub const PROPERTIES_HEARTBEAT_NS: i64 = 30_000_000_000;

/// Longest stream id we accept, in bytes (it is the Kafka key of every record).
pub const MAX_STREAM_ID_BYTES: usize = 100;
/// Longest stream name we accept, in characters.
pub const MAX_STREAM_NAME_CHARS: usize = 200;

/// Why a stream id or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// The value is empty or only white space.
    #[error("`{field}` must not be empty")]
    Empty {
        /// The settings field.
        field: &'static str,
    },
    /// The value is too long.
    #[error("`{field}` must be at most {max} {unit}, got {got}")]
    TooLong {
        /// The settings field.
        field: &'static str,
        /// The limit.
        max: usize,
        /// `bytes` or `characters`.
        unit: &'static str,
        /// The length given.
        got: usize,
    },
    /// The value contains a character Quix does not allow there.
    #[error("`{field}` must not contain {what}; got {value:?}")]
    BadCharacter {
        /// The settings field.
        field: &'static str,
        /// The character class refused.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

/// A validated stream id: non-empty, at most [`MAX_STREAM_ID_BYTES`], no `/` or `\` (which
/// 0.5.7 rejects) and no control characters or white space at either end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Checks `id`.
    pub fn parse(id: &str) -> Result<Self, IdentityError> {
        const FIELD: &str = "stream_id";
        if id.trim().is_empty() {
            return Err(IdentityError::Empty { field: FIELD });
        }
        if id.len() > MAX_STREAM_ID_BYTES {
            return Err(IdentityError::TooLong {
                field: FIELD,
                max: MAX_STREAM_ID_BYTES,
                unit: "bytes",
                got: id.len(),
            });
        }
        if id.contains(['/', '\\']) {
            return Err(IdentityError::BadCharacter { field: FIELD, what: "`/` or `\\`", value: id.into() });
        }
        if id.chars().any(char::is_control) || id.trim() != id {
            return Err(IdentityError::BadCharacter {
                field: FIELD,
                what: "control characters or leading/trailing white space",
                value: id.into(),
            });
        }
        Ok(StreamId(id.into()))
    }

    /// The id as text (also the Kafka key).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared Kafka key.
    pub fn key(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a stream name: non-empty, at most [`MAX_STREAM_NAME_CHARS`], no control characters.
pub fn check_stream_name(name: &str) -> Result<(), IdentityError> {
    const FIELD: &str = "stream_name";
    if name.trim().is_empty() {
        return Err(IdentityError::Empty { field: FIELD });
    }
    let chars = name.chars().count();
    if chars > MAX_STREAM_NAME_CHARS {
        return Err(IdentityError::TooLong {
            field: FIELD,
            max: MAX_STREAM_NAME_CHARS,
            unit: "characters",
            got: chars,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(IdentityError::BadCharacter { field: FIELD, what: "control characters", value: name.into() });
    }
    Ok(())
}

/// Decides and encodes the records of one stream. Pure: the caller passes the wall clock.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    id: StreamId,
    properties: StreamProperties,
    definitions: Vec<ParameterDefinition>,
    /// Wall time (ns) properties were last sent, and what was sent.
    properties_sent: Option<(i64, StreamProperties)>,
    definitions_sent: bool,
    closed: bool,
    /// Most bytes (key and value) of one data record.
    record_limit: usize,
    /// The Quix Streams envelope, or one JSON row per sample.
    format: RecordFormat,
    /// The host a JSON row names.
    host: Arc<str>,
}

impl StreamWriter {
    /// A stream that has sent nothing yet.
    pub fn new(id: StreamId, properties: StreamProperties, definitions: Vec<ParameterDefinition>) -> Self {
        StreamWriter {
            id,
            properties,
            definitions,
            properties_sent: None,
            definitions_sent: false,
            closed: false,
            record_limit: usize::MAX,
            format: RecordFormat::Quix,
            host: Arc::from(""),
        }
    }

    /// Switches the record format from the next rows on; `host` is what JSON rows name. JSON
    /// rows have no properties, definitions or stream end: a stream's life is the envelope's.
    pub fn set_format(&mut self, format: RecordFormat, host: &str) {
        self.format = format;
        if *self.host != *host {
            self.host = Arc::from(host);
        }
    }

    /// The record format in force.
    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// Bounds data records to `bytes` (key and value): the rows of a batch that would pass it go
    /// out in several records of consecutive rows, so none is too large for the broker. A single
    /// row always makes one record (settings validation keeps rows far below the bound).
    pub fn set_record_limit(&mut self, bytes: usize) {
        self.record_limit = bytes;
    }

    /// The stream id.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// The properties that are (or will be) sent.
    pub fn properties(&self) -> &StreamProperties {
        &self.properties
    }

    /// Replaces the properties; they are sent before the next record, or at close, if changed.
    pub fn set_properties(&mut self, properties: StreamProperties) {
        self.properties = properties;
    }

    /// Replaces the definitions; sent again before the next data if they changed.
    pub fn set_definitions(&mut self, definitions: Vec<ParameterDefinition>) {
        if definitions != self.definitions {
            self.definitions = definitions;
            self.definitions_sent = false;
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Records for one batch of rows: properties when due, definitions when not yet sent, then
    /// the data (one record, or several within the record limit). A data record's Kafka
    /// timestamp is its first row's time.
    pub fn data(&mut self, rows: &[Row], now_ns: i64) -> Vec<Record> {
        let mut out = Vec::with_capacity(1);
        if rows.is_empty() {
            return out;
        }
        if self.format == RecordFormat::Json {
            let ids: Vec<&str> = self.definitions.iter().map(|d| d.id.as_str()).collect();
            for row in rows {
                let value = json_rows::encode(row, &self.host, ids.iter().copied());
                out.push(self.record(ModelKey::JsonRow, value, row.timestamp_ns));
            }
            return out;
        }
        self.preamble(now_ns, &mut out);
        self.push_data(rows, &mut out);
        out
    }

    /// One `ParameterData` record of `rows` or, past the record limit, records of consecutive
    /// parts of them, each within it.
    fn push_data(&self, rows: &[Row], out: &mut Vec<Record>) {
        let value = envelope(ModelKey::ParameterData, 160 * rows.len(), |o| write_parameter_data(o, rows));
        let bytes = self.id.as_str().len() + value.len();
        if rows.len() > 1 && bytes > self.record_limit {
            let parts = bytes.div_ceil(self.record_limit.max(1)).max(2);
            for part in rows.chunks(rows.len().div_ceil(parts)) {
                self.push_data(part, out);
            }
            return;
        }
        out.push(self.record(ModelKey::ParameterData, value, rows[0].timestamp_ns));
    }

    /// Records that end the stream: properties if they changed since last sent, definitions if
    /// never sent (only when data was sent), the remaining rows, then `StreamEnd`.
    pub fn close(&mut self, remaining: &[Row], end: StreamEndType, now_ns: i64) -> Vec<Record> {
        let mut out = self.data(remaining, now_ns);
        if self.format == RecordFormat::Json {
            self.closed = true;
            return out;
        }
        if self.properties_sent.as_ref().is_none_or(|(_, sent)| *sent != self.properties) {
            self.push_properties(now_ns, &mut out);
        }
        let value = envelope(ModelKey::StreamEnd, 32, |o| write_stream_end(o, end));
        out.push(self.record(ModelKey::StreamEnd, value, now_ns));
        self.closed = true;
        out
    }

    /// Makes the next record start a fresh stream life (after a close, e.g. resume after pause):
    /// properties and definitions are sent again before the next data.
    pub fn reopen(&mut self) {
        self.properties_sent = None;
        self.definitions_sent = false;
        self.closed = false;
    }

    fn preamble(&mut self, now_ns: i64, out: &mut Vec<Record>) {
        let due = match &self.properties_sent {
            None => true,
            Some((at, sent)) => *sent != self.properties || now_ns.saturating_sub(*at) > PROPERTIES_HEARTBEAT_NS,
        };
        if due {
            self.push_properties(now_ns, out);
        }
        if !self.definitions_sent && !self.definitions.is_empty() {
            let value =
                envelope(ModelKey::ParameterDefinitions, 256, |o| write_parameter_definitions(o, &self.definitions));
            out.push(self.record(ModelKey::ParameterDefinitions, value, now_ns));
            self.definitions_sent = true;
        }
    }

    fn push_properties(&mut self, now_ns: i64, out: &mut Vec<Record>) {
        let value = envelope(ModelKey::StreamProperties, 128, |o| self.properties.write(o));
        out.push(self.record(ModelKey::StreamProperties, value, now_ns));
        self.properties_sent = Some((now_ns, self.properties.clone()));
    }

    fn record(&self, model: ModelKey, value: String, time_ns: i64) -> Record {
        Record { model, key: self.id.key(), value, timestamp_ms: time_ns.div_euclid(1_000_000) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn writer() -> StreamWriter {
        let props = StreamProperties { name: Some("CPU Load - h".into()), ..Default::default() };
        let defs = crate::metrics::definitions(crate::metrics::Metric::Cpu, &Default::default());
        StreamWriter::new(StreamId::parse("host-1").unwrap(), props, defs)
    }

    fn models(records: &[Record]) -> Vec<ModelKey> {
        records.iter().map(|r| r.model).collect()
    }

    fn rows(t: i64) -> Vec<Row> {
        vec![Row::new(t).with_value("CPU_Load", 1.0)]
    }

    use ModelKey::{ParameterData, ParameterDefinitions, StreamEnd};

    #[test]
    fn json_rows_are_one_record_per_row_keyed_and_stamped_with_no_envelope_records() {
        let mut w = writer();
        w.set_format(RecordFormat::Json, "web-1");
        let batch = [Row::new(S).with_value("CPU_Load", 1.5), Row::new(2 * S + 7_000_000).with_tag("site", "lab")];
        let records = w.data(&batch, 0);
        assert_eq!(models(&records), [ModelKey::JsonRow, ModelKey::JsonRow], "no properties, no definitions");
        assert_eq!(&*records[0].key, "host-1");
        assert_eq!(records[1].timestamp_ms, 2007, "the sample time in ms");
        assert_eq!(records[0].value, r#"{"timestamp":1000000000,"host":"web-1","CPU_Load":1.5}"#);
        assert_eq!(records[1].value, r#"{"timestamp":2007000000,"host":"web-1","CPU_Load":null,"site":"lab"}"#);
        assert!(w.close(&[], StreamEndType::Closed, 0).is_empty(), "no StreamEnd");
        // Back to the envelope: a new stream life, properties and definitions first.
        w.set_format(RecordFormat::Quix, "web-1");
        w.reopen();
        assert_eq!(models(&w.data(&rows(3 * S), 0)), [ModelKey::StreamProperties, ParameterDefinitions, ParameterData]);
    }

    #[test]
    fn a_batch_past_the_record_limit_goes_out_in_records_within_it_each_row_once_in_order() {
        let mut w = writer();
        w.data(&rows(0), 0); // properties and definitions out of the way
        let batch: Vec<Row> = (0..1000)
            .map(|i| Row::new(i * S / 10).with_value("CPU_Load", i as f64).with_tag("site", "x".repeat(200)))
            .collect();
        let whole = w.data(&batch, 0);
        assert_eq!(whole.len(), 1, "no limit: one record");
        assert!(whole[0].value.len() > 200_000);
        w.set_record_limit(50_000);
        let parts = w.data(&batch, 0);
        assert!(parts.len() >= 5, "{} records", parts.len());
        let mut next = 0;
        for r in &parts {
            assert_eq!(r.model, ParameterData);
            assert!(r.key.len() + r.value.len() <= 50_000, "{} bytes", r.value.len());
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            let stamps = v["V"]["Timestamps"].as_array().unwrap();
            assert_eq!(r.timestamp_ms, stamps[0].as_i64().unwrap() / 1_000_000, "stamped with its first row");
            for (t, load) in stamps.iter().zip(v["V"]["NumericValues"]["CPU_Load"].as_array().unwrap()) {
                assert_eq!((t.as_i64().unwrap(), load.as_f64().unwrap()), (next * S / 10, next as f64));
                next += 1;
            }
        }
        assert_eq!(next, 1000, "every row exactly once, in order");
        // A single row larger than the limit still makes its one record.
        w.set_record_limit(16);
        assert_eq!(w.data(&batch[..1], 0).len(), 1);
    }

    #[test]
    fn first_data_is_preceded_by_properties_and_definitions() {
        let mut w = writer();
        let out = w.data(&rows(100 * S), 100 * S);
        assert_eq!(models(&out), [ModelKey::StreamProperties, ParameterDefinitions, ParameterData]);
        assert!(out.iter().all(|r| &*r.key == "host-1"));
        assert_eq!(out[2].timestamp_ms, 100_000, "data record time = first row time");
        assert_eq!(models(&w.data(&rows(101 * S), 101 * S)), [ParameterData]);
    }

    #[test]
    fn properties_are_resent_after_the_heartbeat_and_when_changed() {
        let mut w = writer();
        w.data(&rows(0), 0);
        assert_eq!(models(&w.data(&rows(30 * S), 30 * S)), [ParameterData], "30 s is not more than 30 s");
        assert_eq!(models(&w.data(&rows(31 * S), 30 * S + 1)), [ModelKey::StreamProperties, ParameterData]);
        let mut p = w.properties().clone();
        p.name = Some("renamed".into());
        w.set_properties(p);
        let out = w.data(&rows(32 * S), 32 * S);
        assert_eq!(models(&out), [ModelKey::StreamProperties, ParameterData]);
        assert!(out[0].value.contains(r#""Name":"renamed""#));
    }

    #[test]
    fn close_flushes_rows_then_ends_and_reopen_starts_over() {
        let mut w = writer();
        w.data(&rows(0), 0);
        let out = w.close(&rows(S), StreamEndType::Closed, 2 * S);
        assert_eq!(models(&out), [ParameterData, StreamEnd]);
        assert!(out[1].value.contains(r#""V":{}"#));
        assert!(w.is_closed());
        w.reopen();
        assert_eq!(
            models(&w.data(&rows(3 * S), 3 * S)),
            [ModelKey::StreamProperties, ParameterDefinitions, ParameterData]
        );
    }

    #[test]
    fn closing_a_stream_that_sent_nothing_still_names_it() {
        let mut w = writer();
        let out = w.close(&[], StreamEndType::Aborted, 0);
        assert_eq!(models(&out), [ModelKey::StreamProperties, StreamEnd]);
        assert!(out[1].value.contains("Aborted"));
    }

    #[test]
    fn stream_ids_are_checked() {
        assert!(StreamId::parse("b99bdad4-3d5d-4559-a941-c766f649a9d5").is_ok());
        for (bad, needle) in [
            ("", "must not be empty"),
            ("  ", "must not be empty"),
            ("a/b", "`/` or `\\`"),
            ("a\\b", "`/` or `\\`"),
            ("a\nb", "control characters"),
            (" a", "white space"),
        ] {
            let e = StreamId::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("`stream_id`") && e.contains(needle), "{bad:?}: {e}");
        }
        let e = StreamId::parse(&"x".repeat(101)).unwrap_err().to_string();
        assert_eq!(e, "`stream_id` must be at most 100 bytes, got 101");
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(check_stream_name("CPU Load - web-1 😀").is_ok());
        assert_eq!(check_stream_name("").unwrap_err().to_string(), "`stream_name` must not be empty");
        assert!(check_stream_name("a\u{7}").unwrap_err().to_string().contains("control characters"));
        assert!(check_stream_name(&"é".repeat(200)).is_ok(), "the limit counts characters, not bytes");
        assert!(check_stream_name(&"é".repeat(201)).is_err());
    }
}
