//! The one decoder of data rows, so that what was sent and what each reader saw compare as equals:
//! a `ParameterData` record on the broker ([`record_rows`], [`sent_rows`]), the rows quixstreams
//! 3 yields ([`qs3_rows`], printed by `tests/python/read_qs3.py`) and the data quixstreams 0.5.7
//! reports ([`qs057_rows`], printed by `tests/python/read_qs057.py`) all become [`DataRow`]s.
//!
//! A row holds every numeric and string parameter that has a value in it and every tag that has
//! one: a `null` (a parameter or tag the row lacks) is left out on every side alike.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::RawRecord;

/// One data row: the stream it belongs to, when it was measured, its values and tags.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRow {
    /// The stream id (the Kafka key).
    pub stream_id: String,
    /// ns since the Unix epoch (the envelope's `Epoch` added, as 0.5.7 does; we send none).
    pub timestamp_ns: i64,
    /// Numeric parameter id -> value.
    pub values: BTreeMap<String, f64>,
    /// String parameter id -> value (process names).
    pub texts: BTreeMap<String, String>,
    /// Tag name -> value.
    pub tags: BTreeMap<String, String>,
}

impl DataRow {
    /// A row with no values or tags yet.
    pub fn new(stream_id: &str, timestamp_ns: i64) -> DataRow {
        DataRow {
            stream_id: stream_id.into(),
            timestamp_ns,
            values: BTreeMap::new(),
            texts: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }

    /// The row of stream `stream_id` that publishing `row` sends (NaN and infinities go as `null`,
    /// so they are left out).
    pub fn from_sample(stream_id: &str, row: &hostpulse_core::sample::Row) -> DataRow {
        DataRow {
            values: row.values.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.to_string(), *v)).collect(),
            texts: row.texts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            tags: row.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..DataRow::new(stream_id, row.timestamp_ns)
        }
    }

    /// The value of parameter `id`, if the row has one.
    pub fn value(&self, id: &str) -> Option<f64> {
        self.values.get(id).copied()
    }

    /// `Sequence`, the sample counter of a synthetic run (`hostpulse run --synthetic`).
    pub fn sequence(&self) -> u64 {
        let v = self.value("Sequence").unwrap_or_else(|| panic!("a row of a synthetic run has a Sequence: {self:?}"));
        v as u64
    }
}

/// The rows of one `ParameterData` record, in order (none for any other model).
pub fn record_rows(record: &RawRecord) -> Vec<DataRow> {
    let envelope = record.envelope();
    if envelope["K"] != "ParameterData" {
        return Vec::new();
    }
    payload_rows(&record.key, &envelope["V"])
}

/// The rows of every `ParameterData` record, in the order stored.
pub fn sent_rows(records: &[RawRecord]) -> Vec<DataRow> {
    records.iter().flat_map(record_rows).collect()
}

/// The rows of a `ParameterData` payload (`V`): `Timestamps` (+ `Epoch`), `NumericValues`,
/// `StringValues`, `TagValues`; every column as long as `Timestamps`.
pub fn payload_rows(stream_id: &str, v: &Value) -> Vec<DataRow> {
    let epoch = v.get("Epoch").map_or(0, |e| e.as_i64().expect("Epoch is an integer"));
    let stamps = v["Timestamps"].as_array().unwrap_or_else(|| panic!("ParameterData without Timestamps: {v}"));
    let column = |dict: &str| -> Vec<(&String, &Vec<Value>)> {
        let columns = v[dict].as_object().unwrap_or_else(|| panic!("ParameterData without {dict}: {v}"));
        columns
            .iter()
            .map(|(id, col)| {
                let col = col.as_array().unwrap_or_else(|| panic!("{dict}.{id} is not an array: {v}"));
                assert_eq!(col.len(), stamps.len(), "{dict}.{id} has one entry per timestamp: {v}");
                (id, col)
            })
            .collect()
    };
    let (numeric, texts, tags) = (column("NumericValues"), column("StringValues"), column("TagValues"));
    stamps
        .iter()
        .enumerate()
        .map(|(i, ts)| DataRow {
            values: numeric.iter().filter_map(|(id, col)| Some(((*id).clone(), col[i].as_f64()?))).collect(),
            texts: texts.iter().filter_map(|(id, col)| Some(((*id).clone(), col[i].as_str()?.to_owned()))).collect(),
            tags: tags.iter().filter_map(|(id, col)| Some(((*id).clone(), col[i].as_str()?.to_owned()))).collect(),
            ..DataRow::new(stream_id, epoch + ts.as_i64().expect("timestamps are integers"))
        })
        .collect()
}

/// The rows quixstreams 3 yielded: `{"key", "row": {<param>: value, "Timestamp": ns, "Tags": {}}}`.
pub fn qs3_rows(lines: &[Value]) -> Vec<DataRow> {
    lines
        .iter()
        .map(|l| {
            let row = l["row"].as_object().unwrap_or_else(|| panic!("no row in {l}"));
            let parameters = || row.iter().filter(|(k, _)| !matches!(k.as_str(), "Timestamp" | "Tags"));
            DataRow {
                values: parameters().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect(),
                texts: parameters().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect(),
                tags: strings(&row["Tags"]),
                ..DataRow::new(
                    l["key"].as_str().unwrap_or_else(|| panic!("no key in {l}")),
                    row["Timestamp"].as_i64().unwrap_or_else(|| panic!("no Timestamp in {l}")),
                )
            }
        })
        .collect()
}

/// The data rows quixstreams 0.5.7 reported: `{"event": "data", "id", "timestamp_ns", "values", "tags"}`.
pub fn qs057_rows(events: &[Value]) -> Vec<DataRow> {
    events
        .iter()
        .filter(|e| e["event"] == "data")
        .map(|e| DataRow {
            values: e["values"]
                .as_object()
                .unwrap_or_else(|| panic!("no values in {e}"))
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect(),
            texts: strings(&e["values"]),
            tags: strings(&e["tags"]),
            ..DataRow::new(
                e["id"].as_str().unwrap_or_else(|| panic!("no id in {e}")),
                e["timestamp_ns"].as_i64().unwrap_or_else(|| panic!("no timestamp_ns in {e}")),
            )
        })
        .collect()
}

/// A JSON object of tags (names to text; `null`s left out).
fn strings(tags: &Value) -> BTreeMap<String, String> {
    let tags = tags.as_object().unwrap_or_else(|| panic!("tags are an object: {tags}"));
    tags.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
}
