//! The binary's behaviour without a broker: bad flags and bad settings files give a clear error
//! and a non-zero exit, and `dry-run` prints valid Quix records.

use std::process::{Command, Output};

fn hostpulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostpulse")).args(args).env_remove("HOSTPULSE_LOG").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn with_settings(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn bad_flags_name_the_flag_and_fail() {
    for (args, needle) in [
        (&["run", "--interval-ms", "fast"][..], "--interval-ms"),
        (&["run", "--interval-ms", "-5"][..], "--interval-ms"),
        (&["run", "--buffer-span-ms", "99999999999999999999999"][..], "--buffer-span-ms"),
        (&["run", "--security-protocol", "tls"][..], "sasl_ssl"),
        (&["run", "--sasl-mechanism", "md5"][..], "SCRAM-SHA-512"),
        (&["run", "--sasl-password", "x"][..], "--sasl-password"),
        (&["dry-run", "--samples", "0"][..], "--samples"),
    ] {
        let o = hostpulse(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn out_of_range_flags_name_the_field_and_range() {
    let (_d, cfg) = with_settings("");
    let o =
        hostpulse(&["run", "--config", &cfg, "--interval-ms", "100", "--buffer-span-ms", "0", "--stream-id", "a/b"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("`interval_ms` must be between 200 and 3600000 ms, got 100"), "{e}");
    assert!(e.contains("`buffer_span_ms` must be between 1 and 60000 ms, got 0"), "{e}");
    assert!(e.contains("`stream_id` must not contain `/` or `\\`"), "{e}");
}

#[test]
fn bad_settings_files_name_the_file_and_field_and_stay_untouched() {
    for (text, needle) in [
        ("interval_ms = \"soon\"", "interval_ms"),
        ("buffer_span_ms = -1", "buffer_span_ms"),
        ("brokr = \"x:1\"", "brokr"),
        ("not toml at all ][", "line 1"),
    ] {
        let (_d, cfg) = with_settings(text);
        let o = hostpulse(&["dry-run", "--config", &cfg]);
        assert!(!o.status.success(), "{text}");
        let e = stderr(&o);
        assert!(e.contains(needle) && e.contains(&cfg), "{text}: {e}");
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    }
}

#[test]
fn flags_override_the_settings_file() {
    let (_d, cfg) = with_settings("stream_name = \"from file\"\ninterval_ms = 10\n");
    // interval_ms 10 in the file is invalid, but the flag replaces it.
    let o = hostpulse(&["dry-run", "--config", &cfg, "--samples", "1", "--interval-ms", "200"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""Name":"from file""#));
}

#[test]
fn run_without_broker_or_token_says_how_to_provide_one() {
    // No broker: Quix mode. No token in the environment, and no session bus, so no credential
    // store either: the error names the missing store and the environment variable to use.
    let (_d, cfg) = with_settings("");
    let o = Command::new(env!("CARGO_BIN_EXE_hostpulse"))
        .args(["run", "--config", &cfg])
        .env_remove("Quix__Sdk__Token")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no OS credential store is available"), "{e}");
    assert!(e.contains("Quix__Sdk__Token"), "{e}");
}

#[test]
fn sasl_without_password_env_is_refused_before_connecting() {
    let (_d, cfg) = with_settings("");
    let o = Command::new(env!("CARGO_BIN_EXE_hostpulse"))
        .args(["run", "--config", &cfg, "--broker", "127.0.0.1:1", "--security-protocol", "sasl_plaintext"])
        .args(["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "svc"])
        .env_remove("HOSTPULSE_SASL_PASSWORD")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("set the environment variable HOSTPULSE_SASL_PASSWORD"), "{}", stderr(&o));
}

#[test]
fn dry_run_prints_valid_quix_records_for_each_sample() {
    let (_d, cfg) = with_settings("");
    let o = hostpulse(&["dry-run", "--config", &cfg, "--samples", "2", "--interval-ms", "200", "--stream-id", "dry"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let models: Vec<&str> = lines.iter().map(|l| l["value"]["K"].as_str().unwrap()).collect();
    assert_eq!(models.first(), Some(&"StreamProperties"));
    assert_eq!(models.last(), Some(&"StreamEnd"));
    let rows: usize = lines
        .iter()
        .filter(|l| l["value"]["K"] == "ParameterData")
        .map(|l| l["value"]["V"]["Timestamps"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows, 2, "one row per sample");
    for (line, raw) in lines.iter().zip(stdout.lines()) {
        assert_eq!(line["key"], "dry");
        // S/E are byte offsets of V inside the value text.
        let value = &raw[raw.find(r#""value":"#).unwrap() + 8..raw.len() - 1];
        let (s, e) = (line["value"]["S"].as_u64().unwrap() as usize, line["value"]["E"].as_u64().unwrap() as usize);
        let v: serde_json::Value = serde_json::from_str(&value[s..e]).unwrap();
        assert_eq!(v, line["value"]["V"]);
    }
}
