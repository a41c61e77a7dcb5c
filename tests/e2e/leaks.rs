//! The streaming token never appears in output (at the most verbose log level), files,
//! command lines or errors, on success and on every failure path we can provoke.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hostpulse_tests::portal::{PortalServer, PortalState};
use hostpulse_tests::{Tansu, free_port, hostpulse_bin};

const CANARY: &str = "hp-CANARY-7f3a9c-token";

/// Every file below `dir`, recursively, that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn the_token_appears_in_no_output_file_or_command_line() {
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single("leak-ws", CANARY, &broker.addr));
    let rejecting = PortalServer::start(PortalState::single("leak-ws", "some-other-token", &broker.addr));
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let dead_portal = format!("http://127.0.0.1:{}/", free_port());
    let cases: Vec<(Vec<&str>, Option<u64>)> = vec![
        (vec!["run", "--portal-url", &portal.url, "--interval-ms", "200"], Some(4)),
        (vec!["run", "--portal-url", &portal.url, "--metrics", "all", "--tag", "site=lab"], Some(3)),
        (vec!["metrics"], None),
        (vec!["check", "--portal-url", &portal.url], None),
        (vec!["check", "--portal-url", &rejecting.url], None),
        (vec!["run", "--portal-url", &rejecting.url], None),
        (vec!["run", "--portal-url", &dead_portal], Some(3)),
        (vec!["run", "--portal-url", &portal.url, "--workspace-id", "nope"], None),
        (vec!["dry-run", "--samples", "1", "--interval-ms", "200"], None),
        (vec!["token", "status"], None),
    ];
    for (args, stop_after) in cases {
        let child = Command::new(hostpulse_bin())
            .arg("-vv")
            .args(&args)
            .env("Quix__Sdk__Token", CANARY)
            .env("HOSTPULSE_LOG", "trace")
            .envs([("HOME", h), ("XDG_DATA_HOME", h), ("XDG_CONFIG_HOME", h)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // While it runs, its command line and environment-free view (ps) must not hold the token.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(CANARY), "{args:?}: token on the command line");
        if let Some(secs) = stop_after {
            std::thread::sleep(Duration::from_secs(secs));
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.len() > 20, "{args:?} said something: {text}");
        assert!(!text.contains(CANARY), "{args:?} printed the token:\n{text}");
        assert!(!text.contains("7f3a9c"), "{args:?} printed part of the token:\n{text}");
    }
    assert_eq!(files_containing(home.path(), CANARY), Vec::<String>::new(), "no file holds the token");
    assert!(portal.log().iter().any(|r| r.path.ends_with("/topics/cpu-load")), "the run did reach the Portal");
}
