//! Turning what the readers printed into rows comparable with what was sent.

use hostpulse_tests::SentRow;
use serde_json::Value;

/// Rows yielded by quixstreams 3 (`{"key", "row": {"CPU_Load", "Timestamp", "Tags"}}`).
pub fn qs3_rows(lines: &[Value]) -> Vec<SentRow> {
    lines
        .iter()
        .map(|l| SentRow {
            stream_id: l["key"].as_str().expect("key").into(),
            timestamp_ns: l["row"]["Timestamp"].as_i64().expect("Timestamp"),
            cpu_load: l["row"]["CPU_Load"].as_f64(),
        })
        .collect()
}

/// Data rows reported by quixstreams 0.5.7.
pub fn qs057_rows(events: &[Value]) -> Vec<SentRow> {
    events
        .iter()
        .filter(|e| e["event"] == "data")
        .map(|e| SentRow {
            stream_id: e["id"].as_str().expect("id").into(),
            timestamp_ns: e["timestamp_ns"].as_i64().expect("timestamp_ns"),
            cpu_load: e["values"]["CPU_Load"].as_f64(),
        })
        .collect()
}
