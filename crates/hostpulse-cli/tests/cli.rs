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
    let o = hostpulse(&["run", "--config", &cfg, "--interval-ms", "99", "--buffer-span-ms", "0", "--stream-id", "a/b"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("`interval_ms` must be between 100 and 3600000 ms, got 99"), "{e}");
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

/// Hostile settings files: each is refused with a message naming the file and the field (or the
/// line), no panic, and the file is left exactly as it was.
#[test]
fn hostile_settings_files_are_refused_clearly_and_left_untouched() {
    let long_name = format!("stream_name = \"{}\"", "n".repeat(100_000));
    let table: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\xff\xfe\x01 garbage \x7f".to_vec(), "valid UTF-8"),
        (b"interval_ms = 1.5".to_vec(), "interval_ms"),
        (b"interval_ms = [1, 2]".to_vec(), "interval_ms"),
        (b"interval_ms = 99999999999999999999999".to_vec(), "line 1"),
        (b"interval_ms = 18446744073709551615".to_vec(), "`interval_ms` must be between 100 and 3600000 ms"),
        (b"buffer_span_ms = -9223372036854775808".to_vec(), "buffer_span_ms"),
        (b"topic_partitions = 2147483648".to_vec(), "topic_partitions"),
        (b"topic_partitions = 0".to_vec(), "`topic_partitions` must be between 1 and 1000"),
        (b"shutdown_timeout_ms = 300001".to_vec(), "`shutdown_timeout_ms` must be between"),
        (b"outbox_max_kb = 0".to_vec(), "`outbox_max_kb` must be between 10 and"),
        (b"outbox_max_age_hours = 100000".to_vec(), "`outbox_max_age_hours` must be between 1 and"),
        (b"stall_timeout_ms = -5".to_vec(), "stall_timeout_ms"),
        ("stream_name = \"bell \\u0007 here\"".as_bytes().to_vec(), "stream_name"),
        (long_name.into_bytes(), "stream_name"),
        ("stream_id = \"a/b\"".as_bytes().to_vec(), "stream_id"),
        ("stream_id = \"\"".as_bytes().to_vec(), "stream_id"),
        ("topic = \"bad topic ✓\"".as_bytes().to_vec(), "`topic` must be 1 to 249 characters"),
        ("broker = \"no-port\"".as_bytes().to_vec(), "`broker` must be `host:port"),
        ("broker = \"host:99999\"".as_bytes().to_vec(), "`broker` must be `host:port"),
        ("portal_url = \"ftp://portal\"".as_bytes().to_vec(), "`portal_url` must be an https:// URL"),
        ("portal_url = \"http://portal.example/\"".as_bytes().to_vec(), "`portal_url` must use https://"),
        (b"record_max_kb = 2".to_vec(), "`record_max_kb` must be between 16 and 976 KiB"),
        ("workspace_id = \"ws id; rm -rf\"".as_bytes().to_vec(), "`workspace_id` must be"),
        ("security_protocol = \"tls\"".as_bytes().to_vec(), "security_protocol"),
        ("sasl_mechanism = \"PLAIN\"".as_bytes().to_vec(), "`sasl_mechanism` needs `security_protocol`"),
        ("[section]\nx = 1".as_bytes().to_vec(), "section"),
        ("interval_ms = 1000\ninterval_ms = 2000".as_bytes().to_vec(), "interval_ms"),
        ("token = \"abc\"".as_bytes().to_vec(), "token"),
        ("metrics = [\"cpu\", \"gpu\"]".as_bytes().to_vec(), "`metrics`: unknown metric \"gpu\""),
        ("metrics = \"all\"".as_bytes().to_vec(), "metrics"),
        ("network_interfaces = [\"\"]".as_bytes().to_vec(), "`network_interfaces`"),
        ("[tags]\n\"bad name\" = \"x\"".as_bytes().to_vec(), "tag name \"bad name\""),
        ("[tags]\nsite = \"\"".as_bytes().to_vec(), "`tags`: the value of \"site\""),
        ("tags = \"site=lab\"".as_bytes().to_vec(), "tags"),
        ("high_cpu_percent = 0".as_bytes().to_vec(), "`high_cpu_percent` must be between 1 and 100"),
        ("notify_stopped = \"yes\"".as_bytes().to_vec(), "notify_stopped"),
    ];
    let mut wrong = Vec::new();
    for (bytes, needle) in table {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, &bytes).unwrap();
        let cfg = path.display().to_string();
        let o = hostpulse(&["dry-run", "--config", &cfg]);
        let e = stderr(&o);
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        let ok = !o.status.success()
            && e.contains(needle)
            && e.contains(&cfg)
            && !e.contains("panicked")
            && std::fs::read(&path).unwrap() == bytes;
        if !ok {
            wrong.push(format!("{shown}: expected a failure naming {needle:?} and the file, got: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A directory where the file should be.
    let dir = tempfile::tempdir().unwrap();
    let o = hostpulse(&["dry-run", "--config", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read settings file"), "{}", stderr(&o));
    // Unicode where text is free-form is fine, and missing fields take their defaults.
    let (_d, cfg) = with_settings("stream_name = \"Büro-Rechner 🚀 サーバー\"\n");
    let o = hostpulse(&["dry-run", "--config", &cfg, "--samples", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Büro-Rechner 🚀 サーバー"));
}

#[test]
fn hostile_flags_are_refused_naming_the_flag() {
    for (args, needle) in [
        (&["run", "--synthetic", "0"][..], "--synthetic"),
        (&["run", "--synthetic", "100000"][..], "--synthetic"),
        (&["run", "--outbox-max-kb", "-1"][..], "--outbox-max-kb"),
        (&["run", "--stall-timeout-ms", "soon"][..], "--stall-timeout-ms"),
        (&["run", "--topic-partitions", "99999999999"][..], "--topic-partitions"),
        (&["run", "--tls-verify-hostname", "maybe"][..], "--tls-verify-hostname"),
        (&["run", "--stream-name", "a\u{7}b"][..], "`stream_name`"),
        (&["run", "--broker", ""][..], "`broker`"),
        (&["run", "--unknown-flag"][..], "--unknown-flag"),
        (&["run", "--interval-ms"][..], "--interval-ms"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let (_d, cfg) = with_settings("");
        let mut all = args.to_vec();
        all.extend(["--config", &cfg]);
        let o = hostpulse(&all);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
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
fn a_token_that_is_not_one_line_is_refused_at_once_wherever_it_comes_from() {
    // Piped to `token set`: refused before any credential store is asked (none runs here).
    let mut child = Command::new(env!("CARGO_BIN_EXE_hostpulse"))
        .args(["token", "set"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"sdk-first-half sdk-second-half\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("`token` must be one line"), "{e}");
    assert!(!e.contains("no OS credential store"), "refused before the store was asked: {e}");
    assert!(!e.contains("sdk-first") && !String::from_utf8_lossy(&o.stdout).contains("sdk-first"), "{e}");
    // In the environment: named, never shown, and not sent to the Portal ("cannot reach" would
    // mean it was).
    let (_d, cfg) = with_settings("portal_url = \"http://127.0.0.1:9/\"");
    let o = Command::new(env!("CARGO_BIN_EXE_hostpulse"))
        .args(["run", "--config", &cfg])
        .env("Quix__Sdk__Token", "sdk-first-half\tsdk-second-half")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("the streaming token in the environment variable Quix__Sdk__Token is not usable"), "{e}");
    assert!(!e.contains("sdk-first") && !e.contains("cannot reach"), "{e}");
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
fn metrics_and_tags_from_flags_reach_the_records() {
    let (_d, cfg) = with_settings("[tags]\nsite = \"from-file\"\nrack = \"7\"\n");
    let o = hostpulse(&[
        "dry-run",
        "--config",
        &cfg,
        "--samples",
        "2",
        "--interval-ms",
        "200",
        "--metrics",
        "memory,load",
        "--tag",
        "site=lab",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let records: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |k: &'static str| records.iter().filter(move |r| r["value"]["K"] == k).map(|r| &r["value"]["V"]);
    let defs = of("ParameterDefinitions").next().expect("definitions").to_string();
    for id in ["\"CPU_Load\"", "\"Memory_Used\"", "\"Load_15\"", "\"Name\":\"memory\""] {
        assert!(defs.contains(id), "{id} in {defs}");
    }
    assert!(!defs.contains("Swap_Used"), "only what was asked for: {defs}");
    let data: Vec<&serde_json::Value> = of("ParameterData").collect();
    assert!(!data.is_empty());
    for d in data {
        assert!(d["NumericValues"]["Memory_Used"][0].as_f64().unwrap() > 0.0, "{d}");
        assert_eq!(d["TagValues"]["site"][0], "lab", "the flag wins over the file: {d}");
        assert_eq!(d["TagValues"]["rack"][0], "7", "{d}");
    }
    let props = of("StreamProperties").next().unwrap();
    assert_eq!(props["Metadata"]["agent"], concat!("hostpulse ", env!("CARGO_PKG_VERSION")));
    assert!(props["Metadata"]["cpu_cores"].as_str().unwrap().parse::<u32>().unwrap() >= 1, "{props}");

    let o = hostpulse(&["dry-run", "--config", &cfg, "--tag", "site"]);
    assert!(!o.status.success() && stderr(&o).contains("NAME=VALUE"), "{}", stderr(&o));
    let o = hostpulse(&["dry-run", "--config", &cfg, "--metrics", "memory,gpu"]);
    assert!(!o.status.success() && stderr(&o).contains("unknown metric \"gpu\""), "{}", stderr(&o));
}

#[test]
fn the_metrics_command_lists_the_catalog_with_this_machines_parameters() {
    let (_d, cfg) = with_settings("metrics = [\"swap\"]\n");
    let o = hostpulse(&["metrics", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    for m in ["cpu", "cpu_cores", "cpu_times", "memory", "swap", "load", "network", "disk", "temperature", "battery"] {
        assert!(out.lines().any(|l| l.split_whitespace().nth(1) == Some(m)), "{m} listed:\n{out}");
    }
    assert!(out.contains("on  swap") && out.contains("off memory") && out.contains("on  cpu"), "{out}");
    assert!(out.contains("CPU_Core_0_Load") && out.contains("/cpu/cores"), "{out}");
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

#[test]
fn a_status_file_that_cannot_be_written_is_refused_naming_the_flag() {
    let o = hostpulse(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--status-file <PATH>"), "documented in --help");
    let (dir, cfg) = with_settings("");
    let path = dir.path().join("no-such-dir/status.json");
    let o = Command::new(env!("CARGO_BIN_EXE_hostpulse"))
        .args(["run", "--config", &cfg, "--broker", "127.0.0.1:1", "--status-file"])
        .arg(&path)
        .env("XDG_DATA_HOME", dir.path())
        .env_remove("HOSTPULSE_LOG")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains(&format!("cannot write the status file {} (--status-file)", path.display())), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
