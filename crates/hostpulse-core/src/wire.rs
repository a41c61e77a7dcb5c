//! Quix Streams records: the legacy JSON envelope with codec `JT` and the payload models
//! (`StreamProperties`, `ParameterDefinitions`, `ParameterData`, `EventData[]`, `StreamEnd`),
//! byte-identical to what quixstreams 0.5.7 writes (docs/spec/quix-wire-format.md, "A Kafka record
//! as 0.5.7 writes it by default").
//!
//! Every record of a stream carries the stream id as its Kafka key and no headers; the Kafka
//! record timestamp is chosen by the caller (we use the time of the record's first sample).

use std::sync::Arc;

use crate::json::{push_f64, push_str};
use crate::sample::Row;

/// Codec id of Newtonsoft "typed JSON", the only codec both SDK generations decode
/// (docs/spec/quix-wire-format.md, "Codec ids").
pub const CODEC_TYPED_JSON: &str = "JT";

/// Model keys, as written by 0.5.7 (docs/spec/quix-wire-format.md, "Model keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKey {
    /// Stream name, location, metadata, parents.
    StreamProperties,
    /// Units, ranges and descriptions of the parameters.
    ParameterDefinitions,
    /// Timeseries rows (the historical write key for `TimeseriesData`).
    ParameterData,
    /// A batch of events, always an array.
    EventData,
    /// The end of a stream.
    StreamEnd,
    /// Not a Quix Streams model: one JSON row (the `json` record format), no envelope.
    JsonRow,
}

impl ModelKey {
    /// The `K` member of the envelope.
    pub const fn as_str(self) -> &'static str {
        match self {
            ModelKey::StreamProperties => "StreamProperties",
            ModelKey::ParameterDefinitions => "ParameterDefinitions",
            ModelKey::ParameterData => "ParameterData",
            ModelKey::EventData => "EventData[]",
            ModelKey::StreamEnd => "StreamEnd",
            ModelKey::JsonRow => "JsonRow",
        }
    }
}

/// One Kafka record ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What the value holds.
    pub model: ModelKey,
    /// The Kafka key: the stream id as UTF-8.
    pub key: Arc<str>,
    /// The Kafka value: the JSON envelope.
    pub value: String,
    /// The Kafka record timestamp (CreateTime), ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Wraps a payload written by `write_payload` into the envelope
/// `{"C":"JT","K":"<key>","V":<payload>,"S":<start>,"E":<end>}`, where `S`/`E` are the byte
/// offsets of the payload inside the value (the 0.5.7 reader slices exactly those bytes).
pub fn envelope(model: ModelKey, capacity: usize, write_payload: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(capacity + 64);
    out.push_str(r#"{"C":""#);
    out.push_str(CODEC_TYPED_JSON);
    out.push_str(r#"","K":""#);
    out.push_str(model.as_str());
    out.push_str(r#"","V":"#);
    let start = out.len();
    write_payload(&mut out);
    let end = out.len();
    out.push_str(r#","S":"#);
    push_int(&mut out, start as i64);
    out.push_str(r#","E":"#);
    push_int(&mut out, end as i64);
    out.push('}');
    out
}

/// Appends `v` in decimal (without the formatting machinery: this runs once per row).
fn push_int(out: &mut String, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

fn push_string_map<'a>(out: &mut String, entries: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push('}');
}

/// The `StreamProperties` payload (docs/spec/quix-wire-format.md, "`StreamProperties`").
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StreamProperties {
    /// Display name of the stream.
    pub name: Option<String>,
    /// A path grouping streams, such as `/hosts/web-1`.
    pub location: Option<String>,
    /// Free-form facts, in insertion order.
    pub metadata: Vec<(String, String)>,
    /// Ids of streams this one derives from.
    pub parents: Vec<String>,
    /// Recording time, ns since the Unix epoch (written as a zone-less ISO date, as the SDK does).
    pub time_of_recording_ns: Option<i64>,
}

impl StreamProperties {
    /// Encodes the payload as the SDK does: unset members omitted, `Metadata` and `Parents`
    /// always present.
    pub fn write(&self, out: &mut String) {
        out.push('{');
        if let Some(name) = &self.name {
            out.push_str(r#""Name":"#);
            push_str(out, name);
            out.push(',');
        }
        if let Some(location) = &self.location {
            out.push_str(r#""Location":"#);
            push_str(out, location);
            out.push(',');
        }
        out.push_str(r#""Metadata":"#);
        push_string_map(out, self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out.push_str(r#","Parents":["#);
        for (i, p) in self.parents.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, p);
        }
        out.push(']');
        if let Some(ns) = self.time_of_recording_ns {
            out.push_str(r#","TimeOfRecording":"#);
            push_str(out, &dotnet_datetime(ns));
        }
        out.push('}');
    }
}

/// Formats ns since the epoch like a .NET `DateTime` of kind Unspecified:
/// `yyyy-MM-ddTHH:mm:ss` plus up to seven fractional digits without trailing zeros.
fn dotnet_datetime(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ticks = ns.rem_euclid(1_000_000_000) / 100;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if ticks > 0 {
        let frac = format!("{ticks:07}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

/// One parameter's description (docs/spec/quix-wire-format.md, "`ParameterDefinitions`").
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterDefinition {
    /// The parameter id used in `ParameterData` (non-empty, no `/` or `\`).
    pub id: String,
    /// Human name.
    pub name: Option<String>,
    /// What it measures.
    pub description: Option<String>,
    /// Lowest expected value.
    pub minimum: Option<f64>,
    /// Highest expected value.
    pub maximum: Option<f64>,
    /// Unit, such as `%`.
    pub unit: Option<String>,
    /// Group path: `/` for top level, `/cpu/cores` for nested groups.
    pub location: String,
}

impl ParameterDefinition {
    fn write(&self, out: &mut String) {
        out.push_str(r#"{"Id":"#);
        push_str(out, &self.id);
        let optional_str = |out: &mut String, member: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push_str(member);
                push_str(out, v);
            }
        };
        optional_str(out, r#","Name":"#, &self.name);
        optional_str(out, r#","Description":"#, &self.description);
        // Nullable doubles: 0.0 *is* written, only "not set" is omitted.
        for (member, v) in [(r#","MinimumValue":"#, self.minimum), (r#","MaximumValue":"#, self.maximum)] {
            if let Some(v) = v {
                out.push_str(member);
                push_f64(out, v);
            }
        }
        optional_str(out, r#","Unit":"#, &self.unit);
        out.push('}');
    }
}

/// Writes the `ParameterDefinitions` payload: definitions at `/` in `Parameters`, others in
/// nested `ParameterGroups` built from their location, groups in first-seen order.
pub fn write_parameter_definitions(out: &mut String, definitions: &[ParameterDefinition]) {
    #[derive(Default)]
    struct Group<'a> {
        name: &'a str,
        children: Vec<Group<'a>>,
        parameters: Vec<&'a ParameterDefinition>,
    }
    fn write_group(out: &mut String, g: &Group<'_>) {
        out.push_str(r#"{"Name":"#);
        push_str(out, g.name);
        out.push_str(r#","ChildGroups":"#);
        write_level(out, &g.children, &g.parameters);
        out.push('}');
    }
    // Writes `[groups...],"Parameters":[defs...]` (the caller has written the groups member).
    fn write_level(out: &mut String, groups: &[Group<'_>], params: &[&ParameterDefinition]) {
        out.push('[');
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_group(out, g);
        }
        out.push_str(r#"],"Parameters":["#);
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            p.write(out);
        }
        out.push(']');
    }

    let mut root = Group::default();
    for def in definitions {
        let mut node = &mut root;
        for segment in def.location.split('/').filter(|s| !s.is_empty()) {
            let index = match node.children.iter().position(|c| c.name == segment) {
                Some(i) => i,
                None => {
                    node.children.push(Group { name: segment, ..Group::default() });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[index];
        }
        node.parameters.push(def);
    }
    out.push_str(r#"{"ParameterGroups":"#);
    write_level(out, &root.children, &root.parameters);
    out.push('}');
}

/// Writes `"id":[…]` for each id of `entries` in order of first appearance among `rows`, with
/// each row's entry for it, or `null` where a row has none.
fn write_columns<'a, T: 'a>(
    out: &mut String,
    rows: &'a [Row],
    entries: impl Fn(&'a Row) -> &'a [(Arc<str>, T)],
    write: impl Fn(&mut String, &T),
) {
    let mut seen: Vec<&Arc<str>> = Vec::new();
    for row in rows {
        for (id, _) in entries(row) {
            if seen.iter().any(|s| **s == *id) {
                continue;
            }
            if !seen.is_empty() {
                out.push(',');
            }
            seen.push(id);
            push_str(out, id);
            out.push_str(":[");
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match entries(r).iter().find(|(k, _)| k == id) {
                    Some((_, v)) => write(out, v),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
    }
}

/// Writes the `ParameterData` payload for `rows`, in order: absolute ns timestamps (no `Epoch`),
/// one array per parameter and per tag with `null` where a row lacks it, and all four
/// dictionaries (the SDK never omits one, and 3.x fails on a `null` dictionary).
pub fn write_parameter_data(out: &mut String, rows: &[Row]) {
    out.push_str(r#"{"Timestamps":["#);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_int(out, row.timestamp_ns);
    }
    out.push_str(r#"],"NumericValues":{"#);
    // The usual batch: every row has the same parameters in the same order (one sampler made
    // them). Its columns are the first row's, each value found by position: linear in the values.
    let same_columns = |r: &Row| {
        r.values.len() == rows[0].values.len()
            && r.values.iter().zip(&rows[0].values).all(|((a, _), (b, _))| Arc::ptr_eq(a, b) || a == b)
    };
    if rows.iter().all(same_columns) {
        for (k, (id, _)) in rows.first().map(|r| &r.values[..]).unwrap_or_default().iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            push_str(out, id);
            out.push_str(":[");
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_f64(out, r.values[k].1);
            }
            out.push(']');
        }
    } else {
        // Rows that differ: each parameter in order of first appearance, `null` where a row lacks it.
        write_columns(out, rows, |r| &r.values, |o, v| push_f64(o, *v));
    }
    out.push_str(r#"},"StringValues":{"#);
    write_columns(out, rows, |r| &r.texts, |o, v| push_str(o, v));
    out.push_str(r#"},"BinaryValues":{},"TagValues":{"#);
    write_columns(out, rows, |r| &r.tags, |o, v| push_str(o, v));
    out.push_str("}}");
}

/// One event (docs/spec/quix-wire-format.md, "`EventData[]` (and `EventData`)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// Tags, in insertion order.
    pub tags: Vec<(String, String)>,
    /// Event id.
    pub id: String,
    /// Event text.
    pub value: String,
}

/// Writes the `EventData[]` payload.
pub fn write_events(out: &mut String, events: &[Event]) {
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"Timestamp":"#);
        push_int(out, e.timestamp_ns);
        out.push_str(r#","Tags":"#);
        push_string_map(out, e.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out.push_str(r#","Id":"#);
        push_str(out, &e.id);
        out.push_str(r#","Value":"#);
        push_str(out, &e.value);
        out.push('}');
    }
    out.push(']');
}

/// How a stream ended (docs/spec/quix-wire-format.md, "`StreamEnd`").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEndType {
    /// Normal end: publishing turned off or the program quit.
    Closed,
    /// Ended by an error.
    Aborted,
    /// Ended from outside.
    Terminated,
}

/// Writes the `StreamEnd` payload: `{}` for `Closed` (the enum default, which Newtonsoft omits).
pub fn write_stream_end(out: &mut String, end: StreamEndType) {
    match end {
        StreamEndType::Closed => out.push_str("{}"),
        StreamEndType::Aborted => out.push_str(r#"{"StreamEndType":"Aborted"}"#),
        StreamEndType::Terminated => out.push_str(r#"{"StreamEndType":"Terminated"}"#),
    }
}

#[cfg(test)]
mod int_tests {
    #[test]
    fn integers_are_written_as_rust_writes_them() {
        for v in [0, 7, -7, 10, 1_764_000_000_123_456_789, i64::MAX, i64::MIN, -1_000_000] {
            let mut out = String::new();
            super::push_int(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_offsets_are_byte_offsets_of_the_payload() {
        let v = envelope(ModelKey::StreamProperties, 0, |o| o.push_str(r#"{"Name":"é😀"}"#));
        let s: usize = 37;
        let e = s + r#"{"Name":"é😀"}"#.len();
        assert_eq!(v, format!(r#"{{"C":"JT","K":"StreamProperties","V":{{"Name":"é😀"}},"S":{s},"E":{e}}}"#));
        assert_eq!(&v.as_bytes()[s..e], r#"{"Name":"é😀"}"#.as_bytes());
    }

    #[test]
    fn payload_start_matches_the_spec_for_every_model() {
        // docs/spec/quix-wire-format.md, "Record value: the legacy JSON envelope (0.5.7 default)":
        // S = 19 + len(C) + len(K).
        for (model, s) in [
            (ModelKey::StreamProperties, 37),
            (ModelKey::ParameterData, 34),
            (ModelKey::StreamEnd, 30),
            (ModelKey::ParameterDefinitions, 41),
            (ModelKey::EventData, 32),
        ] {
            let v = envelope(model, 0, |o| o.push_str("{}"));
            assert!(v.ends_with(&format!(r#","S":{s},"E":{}}}"#, s + 2)), "{v}");
        }
    }

    #[test]
    fn properties_omit_unset_members_but_keep_metadata_and_parents() {
        let mut out = String::new();
        StreamProperties::default().write(&mut out);
        assert_eq!(out, r#"{"Metadata":{},"Parents":[]}"#);
    }

    #[test]
    fn recording_time_is_a_zoneless_date_with_trimmed_ticks() {
        assert_eq!(dotnet_datetime(1_704_164_645_000_000_000), "2024-01-02T03:04:05");
        assert_eq!(dotnet_datetime(1_704_164_645_678_901_000), "2024-01-02T03:04:05.678901");
        assert_eq!(dotnet_datetime(1_704_164_645_678_901_234), "2024-01-02T03:04:05.6789012");
        assert_eq!(dotnet_datetime(0), "1970-01-01T00:00:00");
        assert_eq!(dotnet_datetime(951_782_400_000_000_000), "2000-02-29T00:00:00");
    }

    #[test]
    fn definitions_at_a_location_go_into_nested_groups() {
        let def = |id: &str, location: &str| ParameterDefinition {
            id: id.into(),
            name: None,
            description: None,
            minimum: Some(0.0),
            maximum: None,
            unit: None,
            location: location.into(),
        };
        let mut out = String::new();
        write_parameter_definitions(
            &mut out,
            &[def("CPU_Load", "/"), def("Core_0", "/cpu/cores"), def("Core_1", "/cpu/cores"), def("Mem", "/mem")],
        );
        let want = concat!(
            r#"{"ParameterGroups":["#,
            r#"{"Name":"cpu","ChildGroups":[{"Name":"cores","ChildGroups":[],"Parameters":["#,
            r#"{"Id":"Core_0","MinimumValue":0.0},{"Id":"Core_1","MinimumValue":0.0}]}],"Parameters":[]},"#,
            r#"{"Name":"mem","ChildGroups":[],"Parameters":[{"Id":"Mem","MinimumValue":0.0}]}],"#,
            r#""Parameters":[{"Id":"CPU_Load","MinimumValue":0.0}]}"#
        );
        assert_eq!(out, want);
        serde_json::from_str::<serde_json::Value>(&out).expect("valid JSON");
    }

    #[test]
    fn data_rows_missing_a_parameter_or_tag_hold_null() {
        let rows = [Row::new(1).with_value("a", 1.0).with_tag("host", "x"), Row::new(2).with_value("b", f64::NAN)];
        let mut out = String::new();
        write_parameter_data(&mut out, &rows);
        assert_eq!(
            out,
            r#"{"Timestamps":[1,2],"NumericValues":{"a":[1.0,null],"b":[null,null]},"StringValues":{},"BinaryValues":{},"TagValues":{"host":["x",null]}}"#
        );
    }

    #[test]
    fn string_values_are_columns_of_their_own_with_null_where_a_row_has_none() {
        let rows = [
            Row::new(1).with_value("Proc_1_CPU", 50.0).with_text("Proc_1_Name", "fire\"fox\u{1}"),
            Row::new(2).with_value("Proc_1_CPU", 20.0),
        ];
        let mut out = String::new();
        write_parameter_data(&mut out, &rows);
        assert_eq!(
            out,
            r#"{"Timestamps":[1,2],"NumericValues":{"Proc_1_CPU":[50.0,20.0]},"StringValues":{"Proc_1_Name":["fire\"fox\u0001",null]},"BinaryValues":{},"TagValues":{}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["StringValues"]["Proc_1_Name"][0], "fire\"fox\u{1}");
    }

    #[test]
    fn rows_with_the_same_columns_encode_as_the_general_path_does() {
        let row = |t: i64, order: &[(&str, f64)]| {
            order.iter().fold(Row::new(t).with_tag("host", "x"), |r, (id, v)| r.with_value(*id, *v))
        };
        let encode = |rows: &[Row]| {
            let mut out = String::new();
            write_parameter_data(&mut out, rows);
            out
        };
        // Same ids in the same order (the by-position path), one of them NaN.
        let same = [row(1, &[("a", 1.0), ("b", 2.0)]), row(2, &[("a", f64::NAN), ("b", 4.0)])];
        // The same values with the second row's ids in another order (the by-id path).
        let reordered = [row(1, &[("a", 1.0), ("b", 2.0)]), row(2, &[("b", 4.0), ("a", f64::NAN)])];
        let want = r#"{"Timestamps":[1,2],"NumericValues":{"a":[1.0,null],"b":[2.0,4.0]},"StringValues":{},"BinaryValues":{},"TagValues":{"host":["x","x"]}}"#;
        assert_eq!(encode(&same), want);
        assert_eq!(encode(&reordered), want);
        assert_eq!(
            encode(&[Row::new(5)]),
            r#"{"Timestamps":[5],"NumericValues":{},"StringValues":{},"BinaryValues":{},"TagValues":{}}"#
        );
    }

    #[test]
    fn stream_end_closed_is_empty_and_others_are_named() {
        let enc = |t| {
            let mut o = String::new();
            write_stream_end(&mut o, t);
            o
        };
        assert_eq!(enc(StreamEndType::Closed), "{}");
        assert_eq!(enc(StreamEndType::Aborted), r#"{"StreamEndType":"Aborted"}"#);
        assert_eq!(enc(StreamEndType::Terminated), r#"{"StreamEndType":"Terminated"}"#);
    }
}
