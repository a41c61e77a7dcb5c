//! The streaming token never appears in output (at the most verbose log level), files,
//! command lines or errors, on success and on every failure path we can provoke.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use hostpulse_tests::portal::{PortalServer, PortalState};
use hostpulse_tests::{Hostpulse, Tansu, free_port};

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
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_token_appears_in_no_output_file_or_command_line() {
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single("leak-ws", CANARY, &broker.addr));
    let rejecting = PortalServer::start(PortalState::single("leak-ws", "some-other-token", &broker.addr));
    let home = tempfile::tempdir().unwrap();
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
    for (i, (mut args, stop_after)) in cases.into_iter().enumerate() {
        // Every run also writes its status file where the file scan below looks.
        let status_file = home.path().join(format!("status-{i}.json"));
        let status_file = status_file.to_str().unwrap().to_owned();
        if args[0] == "run" {
            args.extend(["--status-file", &status_file]);
        }
        let run = Hostpulse::new(["-vv"])
            .args(&args)
            .env("Quix__Sdk__Token", CANARY)
            .env("HOSTPULSE_LOG", "trace")
            .home(home.path())
            .spawn();
        // While it runs, its command line and environment-free view (ps) must not hold the token.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", run.pid())).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(CANARY), "{args:?}: token on the command line");
        let (_, stdout, stderr) = match stop_after {
            Some(secs) => {
                std::thread::sleep(Duration::from_secs(secs));
                run.terminate()
            }
            None => run.wait(),
        };
        let text = format!("{stdout}{stderr}");
        assert!(text.len() > 20, "{args:?} said something: {text}");
        assert!(!text.contains(CANARY), "{args:?} printed the token:\n{text}");
        assert!(!text.contains("7f3a9c"), "{args:?} printed part of the token:\n{text}");
    }
    assert!(home.path().join("status-0.json").exists(), "the runs wrote their status files");
    assert_eq!(files_containing(home.path(), CANARY), Vec::<String>::new(), "no file holds the token");
    assert!(portal.log().iter().any(|r| r.path.ends_with("/topics/cpu-load")), "the run did reach the Portal");
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn a_proxy_from_the_environment_never_gets_a_plain_http_portal_request() {
    // Corporate machines often set `http_proxy` for everything, without `no_proxy`: a request for
    // a loopback Portal over plain http must still go straight to it, or the proxy would get the
    // bearer token in clear text.
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single("proxy-ws", CANARY, &broker.addr));
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let home = tempfile::tempdir().unwrap();
    let mut check = Hostpulse::new(["check", "--portal-url", &portal.url]).env("Quix__Sdk__Token", CANARY);
    for key in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        check = check.env(key, &proxy_url);
    }
    let out = check.env_remove("no_proxy").env_remove("NO_PROXY").home(home.path()).output();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "check went through the Portal to the broker:\n{text}");
    assert!(portal.log().iter().any(|r| r.path == "/workspaces"), "the Portal was asked directly");
    match proxy.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the proxy was connected to: {other:?}"),
    }
}
