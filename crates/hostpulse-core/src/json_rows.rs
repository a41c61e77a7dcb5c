//! JSON rows: the record format a default quixstreams 3 app reads (`app.topic(name)` with JSON
//! values). One Kafka message per sample, its value one JSON object with, in this order:
//! `timestamp` (integer ns since the Unix epoch, when the sample was measured), `host`, every
//! published parameter by its id (a number, a string such as a process name, or `null` when its
//! reading failed), then every tag as a string. The key is the stream id, the Kafka timestamp the sample time in ms, and there are
//! no headers. The bytes are deterministic for a given sample (numbers and strings are written as
//! the envelope writes them).

use crate::json::{push_f64, push_str};
use crate::sample::Row;

/// The JSON row of `row`, measured on `host`, with one field for each of `parameters` (in their
/// order; `null` where the row has no value) and one for each of its tags. A value the row has
/// for a parameter not listed is written after the listed ones, so nothing measured is dropped.
pub fn encode<'a>(row: &Row, host: &str, parameters: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(64 + 24 * row.values.len());
    out.push_str(r#"{"timestamp":"#);
    out.push_str(&row.timestamp_ns.to_string());
    out.push_str(r#","host":"#);
    push_str(&mut out, host);
    let mut listed: Vec<&str> = Vec::new();
    for id in parameters {
        listed.push(id);
        match row.text(id) {
            Some(text) => push_text(&mut out, id, text),
            None => push_field(&mut out, id, row.value(id)),
        }
    }
    for (id, v) in &row.values {
        if !listed.contains(&&**id) {
            push_field(&mut out, id, Some(*v));
        }
    }
    for (id, text) in &row.texts {
        if !listed.contains(&&**id) {
            push_text(&mut out, id, text);
        }
    }
    for (name, value) in &row.tags {
        push_text(&mut out, name, value);
    }
    out.push('}');
    out
}

fn push_text(out: &mut String, id: &str, text: &str) {
    out.push(',');
    push_str(out, id);
    out.push(':');
    push_str(out, text);
}

fn push_field(out: &mut String, id: &str, value: Option<f64>) {
    out.push(',');
    push_str(out, id);
    out.push(':');
    match value {
        Some(v) => push_f64(out, v), // NaN and infinities are written as null
        None => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_in_order_with_nulls_for_failed_readings_and_tags_last() {
        let row = Row::new(1_795_804_632_942_947_123)
            .with_value("CPU_Load", 12.5)
            .with_value("Memory_Used", 8.0e9)
            .with_tag("site", "lab \"A\"");
        let text = encode(&row, "web-1", ["CPU_Load", "Temp_cpu", "Memory_Used"]);
        assert_eq!(
            text,
            r#"{"timestamp":1795804632942947123,"host":"web-1","CPU_Load":12.5,"Temp_cpu":null,"Memory_Used":8000000000.0,"site":"lab \"A\""}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"].as_i64(), Some(1_795_804_632_942_947_123), "an exact integer");
        let names =
            Row::new(6).with_value("Proc_1_CPU", 9.5).with_text("Proc_1_Name", "a\tb").with_text("Extra_Name", "x");
        assert_eq!(
            encode(&names, "h", ["Proc_1_Name", "Proc_1_CPU", "Proc_2_Name"]),
            r#"{"timestamp":6,"host":"h","Proc_1_Name":"a\tb","Proc_1_CPU":9.5,"Proc_2_Name":null,"Extra_Name":"x"}"#
        );
        let nan = Row::new(5).with_value("CPU_Load", f64::NAN).with_value("Extra", 1.0);
        assert_eq!(encode(&nan, "h", ["CPU_Load"]), r#"{"timestamp":5,"host":"h","CPU_Load":null,"Extra":1.0}"#);
    }
}
