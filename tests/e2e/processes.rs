//! The opt-in `processes` metric through real brokers and the real Quix SDK readers: a busy
//! child process with a known name (a copy of `yes` writing to /dev/null, spawned here) is
//! `Proc_1_Name` in the envelope read by quixstreams 3.28.1 and 0.5.7, and in the JSON rows a
//! default quixstreams 3 app reads.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hostpulse_tests::{
    DataRow, Hostpulse, RawRecord, Tansu, docs_program, python_lines, qs3_rows, qs057_rows, raw_records, read_qs3,
    read_qs057, sent_rows,
};
use rdkafka::mocking::MockCluster;
use serde_json::Value;

/// The busy child's name.
const BUSY: &str = "hp-proc-probe";

/// A child process named [`BUSY`] keeping one core busy until dropped.
struct Busy {
    child: Child,
    /// Holds the copy the child runs from.
    _dir: tempfile::TempDir,
}

impl Busy {
    fn start() -> Busy {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join(BUSY);
        std::fs::copy("/usr/bin/yes", &bin).unwrap();
        let child = Command::new(&bin).stdout(Stdio::null()).spawn().expect("the busy child starts");
        Busy { child, _dir: dir }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hostpulse run --metrics processes --process-count 2` for a few seconds into `topic`.
fn run(broker: &str, topic: &str, format: &str) -> Vec<RawRecord> {
    let args = [
        "--broker",
        broker,
        "--topic",
        topic,
        "--stream-id",
        "proc-stream",
        "--format",
        format,
        "--interval-ms",
        "250",
        "--metrics",
        "processes",
        "--process-count",
        "2",
    ];
    let samples = Hostpulse::run(args).run_acknowledged(Duration::from_secs(3));
    assert!(samples >= 8, "{samples} samples");
    raw_records(broker, topic)
}

/// The busy child leads the rows from the second sample on (the first has no CPU figures yet);
/// every row names two processes with their CPU and memory.
fn check(rows: &[DataRow]) {
    assert!(rows.len() >= 8, "{rows:?}");
    for row in &rows[1..] {
        assert_eq!(row.texts.get("Proc_1_Name").map(String::as_str), Some(BUSY), "{row:?}");
        let cpu = row.value("Proc_1_CPU").unwrap();
        assert!(cpu > 20.0 && cpu <= 100.0, "one busy core of this machine: {row:?}");
        assert!(row.value("Proc_1_Memory").unwrap() > 0.0, "{row:?}");
        // The second may be a kernel thread, without memory of its own.
        assert!(row.texts.contains_key("Proc_2_Name") && row.value("Proc_2_Memory").is_some(), "{row:?}");
        assert!(!row.texts.contains_key("Proc_3_Name"), "two asked for: {row:?}");
    }
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_top_process_is_read_by_quixstreams_3_in_both_formats_and_by_0_5_7() {
    let _busy = Busy::start();

    // The envelope, read by quixstreams 3: the names are string values.
    let broker = Tansu::start();
    let raw = run(&broker.addr, "proc-envelope", "quix");
    let sent = sent_rows(&raw);
    check(&sent);
    let read = qs3_rows(&read_qs3(&broker.addr, "proc-envelope", sent.len(), "processes-qs3"));
    assert_eq!(read, sent, "quixstreams 3 yields every row with the process names");

    // JSON rows, read by a default quixstreams 3 app (the docs' program): the names are strings.
    let raw = run(&broker.addr, "proc-json", "json");
    let env = [("KAFKA_BROKER", broker.addr.as_str()), ("TOPIC", "proc-json"), ("GROUP", "processes-json")];
    let lines =
        python_lines("HOSTPULSE_QS3_PYTHON", &docs_program("read_rows.py"), &env, Duration::from_secs(90), |l| {
            l.len() >= raw.len()
        });
    assert_eq!(lines.len(), raw.len());
    let rows: Vec<Value> = lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["row"].clone()).collect();
    for (row, record) in rows.iter().zip(&raw) {
        assert_eq!(*row, serde_json::from_str::<Value>(&record.value).unwrap(), "read as written");
    }
    for row in &rows[1..] {
        assert_eq!(row["Proc_1_Name"], BUSY, "{row}");
        assert!(row["Proc_1_CPU"].as_f64().unwrap() > 20.0 && row["Proc_2_Name"].is_string(), "{row}");
    }

    // The envelope, read by quixstreams 0.5.7 (from librdkafka's mock cluster).
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("proc-057", 1, 1).unwrap();
    let broker = mock.bootstrap_servers();
    let raw = run(&broker, "proc-057", "quix");
    let sent = sent_rows(&raw);
    check(&sent);
    let read = qs057_rows(&read_qs057(&broker, "proc-057", 1, "processes-qs057"));
    assert_eq!(read, sent, "quixstreams 0.5.7 reports every row with the process names");
}
