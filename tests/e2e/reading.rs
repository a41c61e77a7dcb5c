//! The `json` record format through a real broker, read the way docs/reading.md says: the page's
//! own programs (extracted from it) with quixstreams 3.28.1's default `app.topic(name)`, a 1 s
//! tumbling window of `CPU_Load`, and the envelope with quixstreams 3 and 0.5.7.

use std::collections::BTreeMap;
use std::time::Duration;

use hostpulse_tests::{Hostpulse, RawRecord, Tansu, docs_program, parse_summary, python_lines, raw_records};
use serde_json::Value;

/// Creates `topic` with a `retention.ms` (quixstreams 3's windows read it from the broker's
/// description of the input topic, and tansu describes it only when it was given).
fn create_topic(broker: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("retention.ms", "86400000");
    for r in rt.block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

/// The JSON rows of `raw`, each checked against the format: an object whose first fields are
/// `timestamp` and `host`, keyed by the stream id, stamped with the sample time, no headers.
fn json_rows(raw: &[RawRecord], stream_id: &str, fields: &[&str]) -> Vec<serde_json::Map<String, Value>> {
    raw.iter()
        .map(|r| {
            assert_eq!(r.key, stream_id, "keyed by the stream id");
            assert_eq!(r.headers, 0, "no headers");
            let row: serde_json::Map<String, Value> = serde_json::from_str(&r.value).expect("one JSON object");
            let mut names: Vec<&str> = row.keys().map(String::as_str).collect();
            names.sort_by_key(|name| r.value.find(&format!("\"{name}\":")));
            assert_eq!(names, fields, "the fields, in order: {}", r.value);
            let ns = row["timestamp"].as_i64().expect("integer ns");
            assert_eq!(r.timestamp_ms, Some(ns / 1_000_000), "Kafka timestamp = sample time");
            row
        })
        .collect()
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn json_rows_are_read_by_a_default_quixstreams_3_app_and_a_window_over_them_adds_up() {
    let broker = Tansu::start();
    let topic = "cpu-json";
    create_topic(&broker.addr, topic);
    let args = ["--format", "json", "--broker", &broker.addr, "--topic", topic, "--stream-id", "json-stream"];
    let args: Vec<&str> =
        args.into_iter().chain(["--interval-ms", "200", "--metrics", "memory", "--tag", "site=lab"]).collect();
    let (status, out, err) = Hostpulse::run(args).run_for(Duration::from_secs(5));
    assert!(status.success(), "{err}");
    let [samples, sent, acked, waiting, failed, _] = parse_summary(&out);
    assert_eq!((acked, waiting, failed), (sent, 0, 0), "{out}");
    let raw = raw_records(&broker.addr, topic);
    let fields = ["timestamp", "host", "CPU_Load", "Memory_Used", "Memory_Available", "site"];
    let rows = json_rows(&raw, "json-stream", &fields);
    assert_eq!(rows.len() as u64, samples, "one message per sample, every sample");
    assert!(rows.windows(2).all(|w| w[0]["timestamp"].as_i64() < w[1]["timestamp"].as_i64()), "in order");
    assert!(rows.iter().all(|r| r["site"] == "lab" && r["CPU_Load"].is_number() && r["host"].is_string()));

    // The docs' first program: every row, as written, with its key and Kafka timestamp.
    let env = [("KAFKA_BROKER", broker.addr.as_str()), ("TOPIC", topic), ("GROUP", "docs-rows")];
    let lines =
        python_lines("HOSTPULSE_QS3_PYTHON", &docs_program("read_rows.py"), &env, Duration::from_secs(90), |l| {
            l.len() >= rows.len()
        });
    let read: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (line, (row, record)) in read.iter().zip(rows.iter().zip(&raw)) {
        assert_eq!(line["key"], "json-stream");
        assert_eq!(line["kafka_ts"].as_i64(), record.timestamp_ms);
        assert_eq!(line["row"], Value::Object(row.clone()), "quixstreams 3 sees the row as written");
    }

    // The second: a 1 s tumbling window over the Kafka timestamps; each closed window's count and
    // mean are those of the rows published in that second.
    let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (row, record) in rows.iter().zip(&raw) {
        let second = record.timestamp_ms.unwrap() / 1000 * 1000;
        expected.entry(second).or_default().push(row["CPU_Load"].as_f64().unwrap());
    }
    let closed = expected.len() - 1; // the last window closes only with a later row
    let env = [("KAFKA_BROKER", broker.addr.as_str()), ("TOPIC", topic), ("GROUP", "docs-window")];
    let lines =
        python_lines("HOSTPULSE_QS3_PYTHON", &docs_program("window_mean.py"), &env, Duration::from_secs(90), |l| {
            l.len() >= closed
        });
    assert!(closed >= 3, "several seconds of rows: {expected:?}");
    for line in &lines {
        let w: Value = serde_json::from_str(line).unwrap();
        let values = &expected[&w["start"].as_i64().unwrap()];
        assert_eq!(w["end"].as_i64().unwrap() - w["start"].as_i64().unwrap(), 1000);
        assert_eq!(w["count"].as_u64(), Some(values.len() as u64), "{w}");
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((w["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{w}: mean {mean}");
    }
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_envelope_is_read_by_the_docs_programs_for_quixstreams_3_and_0_5_7() {
    // quixstreams 3 from tansu.
    let broker = Tansu::start();
    let args =
        ["--broker", &broker.addr, "--topic", "cpu-envelope", "--stream-id", "env-stream", "--interval-ms", "200"];
    let (status, out, err) = Hostpulse::run(args).run_for(Duration::from_secs(3));
    assert!(status.success(), "{err}");
    let samples = parse_summary(&out)[0] as usize;
    let env = [("KAFKA_BROKER", broker.addr.as_str()), ("TOPIC", "cpu-envelope"), ("GROUP", "docs-envelope")];
    let lines =
        python_lines("HOSTPULSE_QS3_PYTHON", &docs_program("read_envelope.py"), &env, Duration::from_secs(90), |l| {
            l.len() >= samples
        });
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["key"], "env-stream");
        assert!(v["row"]["CPU_Load"].is_number() && v["row"]["Timestamp"].is_i64(), "{v}");
    }
    // quixstreams 0.5.7 from librdkafka's mock cluster (its librdkafka cannot talk to tansu).
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("cpu-057", 1, 1).unwrap();
    let mock_addr = mock.bootstrap_servers();
    let args = ["--broker", &mock_addr, "--topic", "cpu-057", "--stream-id", "stream-057", "--stream-name", "Docs 057"];
    let (status, out, err) = Hostpulse::run(args).args(["--interval-ms", "200"]).run_for(Duration::from_secs(3));
    assert!(status.success(), "{err}");
    let samples = parse_summary(&out)[0] as usize;
    let env = [("KAFKA_BROKER", mock_addr.as_str()), ("TOPIC", "cpu-057"), ("GROUP", "docs-057")];
    let lines =
        python_lines("HOSTPULSE_QS057_PYTHON", &docs_program("read_057.py"), &env, Duration::from_secs(90), |l| {
            l.iter().any(|x| x.starts_with("closed"))
        });
    assert_eq!(lines[0], "stream stream-057");
    assert!(lines.contains(&"name Docs 057".to_owned()), "{lines:?}");
    assert!(lines.contains(&"parameter CPU_Load unit=% min=0.0 max=100.0".to_owned()), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("row ")).count(), samples, "every row: {lines:?}");
    assert_eq!(lines.last().unwrap(), "closed Closed");
}
