//! Golden tests: fed the same inputs as the quixstreams 0.5.7 captures in
//! `tests/fixtures/quixstreams-0.5.7-cpu-load.jsonl`, our encoder writes the same bytes, record
//! for record (keys, values, offsets), and groups rows into records the same way.

use std::time::Duration;

use hostpulse_core::buffer::{BufferConfig, TimespanBuffer};
use hostpulse_core::sample::{CPU_LOAD, Row};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::{
    Event, ModelKey, ParameterDefinition, Record, StreamEndType, StreamProperties, envelope, write_events,
};
use serde_json::Value;

struct Captured {
    model_key: String,
    key: String,
    value: String,
    value_len: usize,
}

fn fixture(scenario: &str) -> Vec<Captured> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quixstreams-0.5.7-cpu-load.jsonl");
    let text = std::fs::read_to_string(path).expect("fixture copied into tests/fixtures");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["scenario"] == scenario)
        .map(|r| Captured {
            model_key: r["model_key"].as_str().unwrap().into(),
            key: r["key"]["utf8"].as_str().unwrap().into(),
            value: r["value"]["utf8"].as_str().unwrap().into(),
            value_len: r["value_len"].as_u64().unwrap() as usize,
        })
        .collect()
}

fn assert_same(ours: &[Record], theirs: &[Captured]) {
    assert_eq!(
        ours.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(),
        theirs.iter().map(|c| c.model_key.as_str()).collect::<Vec<_>>(),
        "record sequence"
    );
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(&*o.key, t.key, "key of record #{i}");
        assert_eq!(o.value, t.value, "value of record #{i}");
        assert_eq!(o.value.len(), t.value_len, "byte length of record #{i}");
    }
}

/// Scenario A: the quickstart shape. Rows ~50 ms apart in real time, 100 ms span, `close()`.
/// The rows arrive on the clock as they did in the capture, and we poll the buffer's deadline
/// before each push, as the agent does: the grouping comes out as 0.5.7's.
#[test]
fn scenario_a_quickstart_stream_is_byte_identical() {
    let theirs = fixture("A");
    let id = StreamId::parse(&theirs[0].key).unwrap();
    let props = StreamProperties { name: Some("CPU load - test host".into()), ..Default::default() };
    let mut writer = StreamWriter::new(id, props, Vec::new());
    let mut buffer =
        TimespanBuffer::new(BufferConfig { time_span: Some(Duration::from_millis(100)), ..Default::default() });
    let samples: [(i64, f64); 6] = [
        (1_795_804_632_942_947_000, 9.999999999999998),
        (1_795_804_632_993_811_000, 0.0),
        (1_795_804_633_044_561_000, 0.0),
        (1_795_804_633_099_661_000, 9.090909090909093),
        (1_795_804_633_150_455_000, 0.0),
        (1_795_804_633_201_548_000, 0.0),
    ];
    let origin = samples[0].0;
    let mut ours = Vec::new();
    for (ts, v) in samples {
        let now = Duration::from_nanos((ts - origin) as u64);
        if let Some(rows) = buffer.poll(now) {
            ours.extend(writer.data(&rows, ts));
        }
        if let Some(rows) = buffer.push(Row::new(ts).with_value(CPU_LOAD, v), now) {
            ours.extend(writer.data(&rows, ts));
        }
    }
    let rest = buffer.flush().unwrap_or_default();
    ours.extend(writer.close(&rest, StreamEndType::Closed, 1_795_804_633_203_000_000));
    assert_same(&ours, &theirs);
}

/// Scenario B: every member the SDK writes (location, metadata, recording time, definitions,
/// tags, an event, an aborted end). 0.5.7 sent its definitions from a timer after two data
/// records; we send them before the data, so the comparison is per model, in order.
#[test]
fn scenario_b_full_stream_is_byte_identical_per_record() {
    let theirs = fixture("B");
    let props = StreamProperties {
        name: Some("CPU load - fixture B".into()),
        location: Some("/hosts/fixture".into()),
        metadata: vec![("os".into(), "linux".into())],
        parents: Vec::new(),
        time_of_recording_ns: Some(1_704_164_645_000_000_000),
    };
    let defs = vec![ParameterDefinition {
        id: CPU_LOAD.into(),
        name: Some("CPU Load".into()),
        description: Some("Total CPU utilisation".into()),
        minimum: Some(0.0),
        maximum: Some(100.0),
        unit: Some("%".into()),
        location: "/".into(),
    }];
    let mut writer = StreamWriter::new(StreamId::parse("cpu-load-fixture-b").unwrap(), props, defs);
    let mut buffer =
        TimespanBuffer::new(BufferConfig { time_span: Some(Duration::from_millis(100)), ..Default::default() });
    let t0 = 1_704_164_645_678_901_000_i64;
    let mut ours = Vec::new();
    for (offset_ms, v) in [(0, 12.5), (40, 13.0), (80, 0.25), (150, 99.75), (400, 42.0)] {
        let row = Row::new(t0 + offset_ms * 1_000_000).with_value(CPU_LOAD, v).with_tag("host", "fixture-host");
        if let Some(rows) = buffer.push(row, Duration::ZERO) {
            ours.extend(writer.data(&rows, t0));
        }
    }
    let event = Event { timestamp_ns: t0, tags: Vec::new(), id: "note".into(), value: "fixture event".into() };
    ours.push(Record {
        model: ModelKey::EventData,
        key: writer.id().key(),
        value: envelope(ModelKey::EventData, 128, |o| write_events(o, &[event])),
        timestamp_ms: 0,
    });
    ours.extend(writer.close(&buffer.flush().unwrap_or_default(), StreamEndType::Aborted, t0));

    for model in ["StreamProperties", "ParameterDefinitions", "ParameterData", "EventData[]", "StreamEnd"] {
        let o: Vec<&Record> = ours.iter().filter(|r| r.model.as_str() == model).collect();
        let t: Vec<&Captured> = theirs.iter().filter(|c| c.model_key == model).collect();
        assert_eq!(o.len(), t.len(), "number of {model} records");
        for (i, (o, t)) in o.iter().zip(&t).enumerate() {
            assert_eq!(&*o.key, t.key, "{model} #{i} key");
            assert_eq!(o.value, t.value, "{model} #{i} value");
        }
    }
    assert_eq!(ours.len(), theirs.len());
}

/// A record of several parameters where a row lacks some, with a tag on every row: parameters in
/// first-seen order, `null` where a row has no value, `.0` on integral doubles, the tag repeated
/// per row, and `E` = `S` + the payload's UTF-8 length (237, counted independently).
#[test]
fn a_multi_parameter_record_with_nulls_and_tags_is_encoded_as_specified() {
    let rows = [
        Row::new(1_704_164_645_678_901_000)
            .with_value(CPU_LOAD, 12.5)
            .with_value("Memory_Used", 1_048_576.0)
            .with_tag("site", "lab"),
        Row::new(1_704_164_645_718_901_000)
            .with_value(CPU_LOAD, 13.0)
            .with_value("Net_eth0_RxBytesPerSec", 250.5)
            .with_tag("site", "lab"),
    ];
    let stream = StreamId::parse("golden-multi").unwrap();
    let mut writer = StreamWriter::new(stream, StreamProperties::default(), Vec::new());
    let records = writer.data(&rows, 0);
    let data = records.iter().find(|r| r.model == ModelKey::ParameterData).expect("a data record");
    assert_eq!(
        data.value,
        concat!(
            r#"{"C":"JT","K":"ParameterData","V":{"Timestamps":[1704164645678901000,1704164645718901000],"#,
            r#""NumericValues":{"CPU_Load":[12.5,13.0],"Memory_Used":[1048576.0,null],"#,
            r#""Net_eth0_RxBytesPerSec":[null,250.5]},"StringValues":{},"BinaryValues":{},"#,
            r#""TagValues":{"site":["lab","lab"]}},"S":34,"E":271}"#
        )
    );
}

/// The `json` record format: a sample with several parameters, a failed reading and tags, as
/// the writer sends it. The bytes are pinned here; the order of the fields, the integer
/// nanosecond timestamp and the number spelling are part of the format (docs/reading.md).
#[test]
fn a_json_row_is_encoded_byte_for_byte() {
    use hostpulse_core::settings::RecordFormat;
    let defs = |ids: &[&str]| -> Vec<ParameterDefinition> {
        ids.iter()
            .map(|id| ParameterDefinition {
                id: (*id).into(),
                name: None,
                description: None,
                minimum: None,
                maximum: None,
                unit: None,
                location: "/".into(),
            })
            .collect()
    };
    let mut w = StreamWriter::new(
        StreamId::parse("6f1c2b0e-4d3a-5b7c-9e8f-0a1b2c3d4e5f").unwrap(),
        StreamProperties::default(),
        defs(&[CPU_LOAD, "Memory_Used", "Temp_cpu", "Load_1"]),
    );
    w.set_format(RecordFormat::Json, "web-1.example");
    let row = Row::new(1_795_804_632_942_947_123)
        .with_value(CPU_LOAD, 9.999999999999998)
        .with_value("Memory_Used", 8_123_456_789.0)
        .with_value("Load_1", 0.00001)
        .with_tag("rack", "3")
        .with_tag("site", "lab/β \"east\"");
    let records = w.data(&[row], 0);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.model, ModelKey::JsonRow);
    assert_eq!(&*r.key, "6f1c2b0e-4d3a-5b7c-9e8f-0a1b2c3d4e5f");
    assert_eq!(r.timestamp_ms, 1_795_804_632_942);
    assert_eq!(
        r.value,
        r#"{"timestamp":1795804632942947123,"host":"web-1.example","CPU_Load":9.999999999999998,"Memory_Used":8123456789.0,"Temp_cpu":null,"Load_1":1E-05,"rack":"3","site":"lab/β \"east\""}"#
    );
}
