//! `hostpulse run --status-file`, the machine-readable signal the suites wait on: one JSON object
//! with the status's fields and the stream id, kept current while a run publishes to librdkafka's
//! in-process mock cluster, and the final status at exit. Needs no broker, venv or session bus.

use std::collections::BTreeSet;

use hostpulse_tests::{Hostpulse, parse_summary};
use rdkafka::mocking::MockCluster;
use serde_json::Value;

const FIELDS: [&str; 16] = [
    "state",
    "label",
    "can_toggle",
    "toggle_label",
    "last_value",
    "samples",
    "acknowledged",
    "waiting",
    "failed",
    "dropped",
    "next_try_ms",
    "error",
    "spell_top",
    "low_power",
    "interval_ms",
    "stream_id",
];

fn count(status: &Value, field: &str) -> u64 {
    status[field].as_u64().unwrap_or_else(|| panic!("`{field}` is a count: {status}"))
}

#[test]
fn the_status_file_holds_the_current_status_as_one_json_object_and_the_final_one_at_exit() {
    let topic = "status-file";
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(topic, 1, 1).unwrap();
    let broker = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let mut run = Hostpulse::run(["--broker", &broker, "--topic", topic, "--stream-id", "status-stream"])
        .args(["--interval-ms", "200", "--buffer-span-ms", "100"])
        .status_file(&path)
        .start();
    assert!(run.started, "the status file showed publishing: {:?}", run.status());

    let first = run.status().unwrap();
    let fields: BTreeSet<&str> = first.as_object().expect("one JSON object").keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(FIELDS), "the fields of StatusView and the stream id: {first}");
    assert_eq!((first["state"].as_str(), first["label"].as_str()), (Some("publishing"), Some("Publishing")));
    assert_eq!(first["stream_id"], "status-stream");
    assert_eq!((first["interval_ms"].as_u64(), first["low_power"].as_bool()), (Some(200), Some(false)));
    assert_eq!(first["spell_top"], serde_json::json!([]), "the headless agent watches no spells");

    // Kept current while it publishes: the counters move on.
    let later = run.wait_for_status("5 samples and 3 acknowledged records", 30, |s| {
        s["samples"].as_u64() >= Some(5) && s["acknowledged"].as_u64() >= Some(3)
    });
    assert!(count(&later, "samples") > count(&first, "samples"), "{first}\n{later}");
    assert_eq!(later["state"], "publishing", "{later}");
    assert_eq!((later["can_toggle"].as_bool(), later["toggle_label"].as_str()), (Some(true), Some("Pause publishing")));
    assert!(later["last_value"].as_f64().is_some_and(|v| (0.0..=100.0).contains(&v)), "a CPU load: {later}");
    assert_eq!((count(&later, "failed"), count(&later, "dropped")), (0, 0), "{later}");
    assert!(later["next_try_ms"].is_null() && later["error"].is_null(), "{later}");
    assert_eq!(later["stream_id"], "status-stream");
    // One line (replaced atomically: every read above parsed whole), readable only by the user.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() == 1, "one line: {text:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // At exit it holds the final status: the one the summary shows.
    let (status, out, err) = run.stop();
    assert!(status.success(), "{err}");
    let [samples, sent, acked, pending, failed, dropped] = parse_summary(&out);
    assert_eq!((acked, pending), (sent, 0), "{out}");
    let last: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let counts = ["samples", "acknowledged", "waiting", "failed", "dropped"].map(|f| count(&last, f));
    assert_eq!(counts, [samples, acked, pending, failed, dropped], "the final status: {last}\n{out}");
    assert!(matches!(last["state"].as_str(), Some("paused" | "unconfigured")), "stopped: {last}");
    assert_eq!(last["stream_id"], "status-stream");
}
