//! The token in a real Secret Service (gnome-keyring in the private D-Bus session the test
//! command starts): set, read, replace, clear; the CLI's token commands; a running agent that
//! switches tokens on `hostpulse token set` (SIGHUP); and a clear error without a Secret Service.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hostpulse_agent::token::{KeyringStore, SecretStore};
use hostpulse_core::secret::Secret;
use hostpulse_tests::cli::text;
use hostpulse_tests::portal::{PortalServer, PortalState};
use hostpulse_tests::{Hostpulse, Tansu, parse_summary, qs3_rows, raw_records, read_qs3_via_portal, sent_rows};

fn require_session() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the suite through scripts/test.sh, which starts one with gnome-keyring's Secret Service"
    );
}

/// Runs `hostpulse <args>` with its own HOME and XDG dirs, `stdin` piped in.
fn hostpulse(home: &Path, args: &[&str], stdin: &str) -> Output {
    Hostpulse::new(args).home(home).stdin(stdin).output()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_keyring_store_sets_reads_replaces_and_clears_in_the_real_secret_service() {
    require_session();
    let store = KeyringStore::named("hostpulse-test", &format!("store-{}", std::process::id()));
    assert_eq!(store.get().unwrap(), None, "a missing entry is Ok(None)");
    store.set(&Secret::new("first-token").unwrap()).unwrap();
    assert_eq!(store.get().unwrap().unwrap().expose(), "first-token");
    store.set(&Secret::new("second-token").unwrap()).unwrap();
    assert_eq!(store.get().unwrap().unwrap().expose(), "second-token", "set replaces");
    assert!(store.clear().unwrap());
    assert_eq!(store.get().unwrap(), None);
    assert!(!store.clear().unwrap(), "clearing nothing is not an error");
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn token_commands_and_a_running_agent_switch_tokens_through_the_secret_service() {
    require_session();
    const T1: &str = "sdk-keyring-token-AAAA";
    const T2: &str = "sdk-keyring-token-BBBB";
    let home = tempfile::tempdir().unwrap();
    KeyringStore::new().clear().unwrap(); // start from no token, whatever ran before
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single("kr-ws", T1, &broker.addr));
    portal.with(|s| s.tokens.push(T2.into()));

    let o = hostpulse(home.path(), &["token", "status"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("token: none"), "{}", text(&o));
    // A pid file left by an agent that died (kill -9, OOM, power cut) names a pid that another
    // process has now: `token set` must not signal it (SIGHUP ends a shell or, here, `sleep`).
    let mut stranger = Command::new("sleep").arg("120").spawn().unwrap();
    let pid_file = home.path().join("hostpulse/run.pid");
    std::fs::create_dir_all(pid_file.parent().unwrap()).unwrap();
    std::fs::write(&pid_file, stranger.id().to_string()).unwrap();
    let o = hostpulse(home.path(), &["token", "set"], &format!("{T1}\n"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("token stored in the OS credential store (Secret Service)"), "{}", text(&o));
    assert!(text(&o).contains("is left from an agent that no longer runs; ignored"), "{}", text(&o));
    assert!(text(&o).contains("`hostpulse run` will use it"), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(300));
    assert!(stranger.try_wait().unwrap().is_none(), "the process named by the stale pid file was signalled");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    let o = hostpulse(home.path(), &["token", "status"], "");
    assert!(text(&o).contains("token: stored in the OS credential store"), "{}", text(&o));

    // A running agent, started with the stored token...
    let run = Hostpulse::run(["--portal-url", &portal.url, "--topic", "cpu-hup", "--interval-ms", "200"])
        .args(["--stream-id", "hup"])
        .home(home.path())
        .env("HOSTPULSE_LOG", "info")
        .start();
    assert!(run.started, "the agent never started publishing: {:?}", run.status());
    // `token set` signals the agent that the pid file names; it is written right after the start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&pid_file).ok().as_deref() != Some(&run.pid().to_string()) {
        assert!(std::time::Instant::now() < deadline, "the agent wrote no pid file");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    // ...switches when the token is replaced (`token set` signals it), then the old one is revoked.
    let o = hostpulse(home.path(), &["token", "set"], T2);
    assert!(
        text(&o).contains(&format!("the running agent (pid {}) switches to the new token", run.pid())),
        "{}",
        text(&o)
    );
    std::thread::sleep(Duration::from_secs(2));
    portal.with(|s| s.tokens.retain(|t| t != T1));
    std::thread::sleep(Duration::from_secs(2));
    let (status, out, err) = run.stop();
    let all = format!("{out}{err}");
    assert!(status.success(), "{all}");
    assert!(all.contains("now publishing with the token from the OS credential store"), "{all}");
    assert!(!all.contains(T1) && !all.contains(T2), "tokens never appear in output");
    let [samples, sent, acked, pending, failed, _] = parse_summary(&out);
    assert_eq!((acked, pending, failed), (sent, 0, 0));
    assert!(portal.log().iter().any(|r| r.authorization.as_deref() == Some(&format!("Bearer {T2}"))));

    let raw = raw_records(&broker.addr, "kr-ws-cpu-hup");
    assert_eq!(raw.iter().filter(|r| r.model() == "StreamEnd").count(), 1, "one stream, ended once");
    let rows = sent_rows(&raw);
    assert_eq!(rows.len() as u64, samples, "every sample once");
    assert!(rows.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns), "in order");
    let read = qs3_rows(&read_qs3_via_portal(&portal.url, T2, "cpu-hup", rows.len(), "keyring-hup-qs3"));
    assert_eq!(read, rows);

    for t in [T1, T2] {
        let mut hits = Vec::new();
        for entry in walk(home.path()) {
            if std::fs::read(&entry).is_ok_and(|b| String::from_utf8_lossy(&b).contains(t)) {
                hits.push(entry);
            }
        }
        assert!(hits.is_empty(), "token in files {hits:?}: only the credential store may hold it");
    }
    let o = hostpulse(home.path(), &["token", "clear"], "");
    assert!(text(&o).contains("token removed from the OS credential store"), "{}", text(&o));
    let o = hostpulse(home.path(), &["token", "status"], "");
    assert!(text(&o).contains("token: none"));
}

/// A session bus of our own. With `activation` off, the bus knows no services at all; with it
/// on, it starts gnome-keyring on demand, which then has no unlocked keyring.
fn private_bus(dir: &Path, activation: bool) -> (std::process::Child, String) {
    let mut cmd = Command::new("dbus-daemon");
    if activation {
        cmd.arg("--session");
    } else {
        let config = dir.join("bus.conf");
        // Debian's session.conf, but with an empty service directory instead of the standard ones.
        let standard = std::fs::read_to_string("/usr/share/dbus-1/session.conf").unwrap();
        let empty = dir.join("services");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(
            &config,
            standard
                .replace("<standard_session_servicedirs />", &format!("<servicedir>{}</servicedir>", empty.display())),
        )
        .unwrap();
        cmd.arg(format!("--config-file={}", config.display()));
    }
    let mut bus = cmd
        .args(["--nofork", "--print-address=1"])
        .env("XDG_DATA_HOME", dir) // an activated gnome-keyring keeps its files here
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon (package dbus) is installed by the test command");
    let mut address = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(bus.stdout.as_mut().unwrap()), &mut address).unwrap();
    (bus, address.trim().to_owned())
}

/// Runs each token-needing command against `address` and checks the error.
fn assert_every_command_explains(address: &str, home: &Path, needles: &[&str]) {
    for args in [&["token", "status"][..], &["token", "set"], &["run"], &["check"]] {
        let o = Hostpulse::new(args).home(home).env("DBUS_SESSION_BUS_ADDRESS", address).stdin("some-token").output();
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        for needle in needles {
            assert!(t.contains(needle), "{args:?} should say {needle:?}: {t}");
        }
        assert!(t.contains("Quix__Sdk__Token"), "{args:?} says how to do without: {t}");
        assert!(!t.contains("panicked") && !t.contains("some-token"), "{t}");
    }
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn without_a_secret_service_the_error_says_what_to_do_and_nothing_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bus, address) = private_bus(dir.path(), false);
    assert_every_command_explains(
        &address,
        dir.path(),
        &["no OS credential store is available", "org.freedesktop.secrets"],
    );
    let _ = bus.kill();
    let _ = bus.wait();
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn a_locked_secret_service_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bus, address) = private_bus(dir.path(), true);
    assert_every_command_explains(&address, dir.path(), &["the OS credential store is locked", "unlock"]);
    let _ = bus.kill();
    let _ = bus.wait();
    let _ = Command::new("pkill").args(["-f", &format!("gnome-keyring-daemon.*{}", dir.path().display())]).status();
}
