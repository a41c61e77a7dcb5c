//! Running HostPulse as a service: the systemd unit (verify, security score), the token as a
//! systemd credential, and a first run's setup that installs only what the app needs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hostpulse_tests::portal::{PortalServer, PortalState, TopicState};
use hostpulse_tests::{Hostpulse, parse_summary, raw_records, sent_rows, workspace};

#[test]
#[ignore = "end-to-end: needs systemd-analyze (scripts/setup.sh installs systemd); run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_service_unit_verifies_cleanly_and_scores_ok_on_systemd_security() {
    let analyze = "systemd-analyze";
    let found = Command::new(analyze).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "systemd-analyze is not installed here (Debian: apt install systemd): the unit cannot be checked");
    let unit = workspace().join("packaging/systemd/hostpulse.service");
    let out = Command::new(analyze).args(["security", "--offline=yes"]).arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hostpulse.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 4.0, "exposure {score} above 4.0 (OK):\n{text}");
    // `verify` checks that the command exists: the unit as installed, with this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let bin = workspace().join("target/debug/hostpulse");
    let text = std::fs::read_to_string(&unit).unwrap().replace("/usr/bin/hostpulse", bin.to_str().unwrap());
    let copy = dir.path().join("hostpulse.service");
    std::fs::write(&copy, text).unwrap();
    let out = Command::new(analyze).arg("verify").arg(&copy).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// A Portal (in-process) whose workspace broker is librdkafka's mock cluster, with the topic ready.
fn portal_and_broker(
    token: &str,
) -> (PortalServer, rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>) {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("ops-ws-cpu-load", 1, 1).unwrap();
    let mut state = PortalState { kafka: None, ..PortalState::single("ops-ws", token, &mock.bootstrap_servers()) };
    let ready = TopicState { status: "Ready".into(), polls_until_ready: 0, last_error: None };
    state.topics.insert(("ops-ws".into(), "cpu-load".into()), ready);
    (PortalServer::start(state), mock)
}

#[test]
fn check_and_run_take_the_token_from_a_systemd_credential_without_env_or_keyring() {
    const TOKEN: &str = "sdk-from-a-systemd-credential";
    let (portal, mock) = portal_and_broker(TOKEN);
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("quix-streaming-token"), format!("{TOKEN}\n")).unwrap();
    let as_a_service = |h: Hostpulse| {
        h.env("CREDENTIALS_DIRECTORY", credentials.path())
            .env_remove("Quix__Sdk__Token")
            .env_remove("DBUS_SESSION_BUS_ADDRESS") // no Secret Service either
    };
    let o = as_a_service(Hostpulse::new(["token", "status"])).output();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("token: from the systemd credential quix-streaming-token"), "{text}");
    assert!(!text.contains(TOKEN));
    let o = as_a_service(Hostpulse::new(["check", "--portal-url", &portal.url])).output();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("ok    token: from the systemd credential quix-streaming-token"), "{text}");
    assert!(text.contains("ok    broker login: connected"), "{text}");
    let run = as_a_service(Hostpulse::run(["--portal-url", &portal.url, "--interval-ms", "200"])).start();
    std::thread::sleep(Duration::from_secs(2));
    let (status, out, err) = run.stop();
    assert!(status.success(), "{err}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "the token never appears");
    let [samples, sent, acked, ..] = parse_summary(&out);
    assert_eq!(acked, sent, "{out}");
    assert!(portal.log().iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));
    assert_eq!(sent_rows(&raw_records(&mock.bootstrap_servers(), "ops-ws-cpu-load")).len() as u64, samples);
}

/// What scripts/run.sh sets up (scripts/setup-app.sh), with an empty cache and `cargo` and
/// `apt-get` replaced by recorders: it installs no test tool (no tansu, tauri-driver or venv).
#[test]
fn the_app_setup_installs_nothing_the_tests_need() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, cache, log) = (dir.path().join("bin"), dir.path().join("cache"), dir.path().join("calls.log"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    for tool in ["cargo", "apt-get", "python3", "pip"] {
        let shim = bin.join(tool);
        std::fs::write(&shim, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 0\n", log.display())).unwrap();
        make_executable(&shim);
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", "source scripts/setup-app.sh && echo ready"])
        .current_dir(workspace())
        .env("PATH", path)
        .env("HOSTPULSE_CACHE", &cache)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("ready"), "{said}");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    for forbidden in
        ["cargo install", "python3 -m venv", "pip install", "tansu", "tauri-driver", "gnome-keyring", "xvfb"]
    {
        assert!(!calls.contains(forbidden), "the app's setup ran `{forbidden}`:\n{calls}");
    }
    assert!(std::fs::read_dir(&cache).unwrap().next().is_none(), "nothing built into the cache");
    assert!(!said.contains("building tansu") && !said.contains("making the"), "{said}");
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn make_executable(_: &Path) {}
