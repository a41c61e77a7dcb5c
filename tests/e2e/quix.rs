//! Quix mode end to end: a streaming token leads through the Portal API test server to the
//! local broker; quixstreams 3 reads the stream the way Quix users do (token + Portal); the
//! token is replaced mid-run without a gap; the Portal's failure answers give clear errors.

use std::sync::Arc;
use std::time::Duration;

use hostpulse_agent::agent::{self, AgentConfig, Parts};
use hostpulse_agent::backoff::Backoff;
use hostpulse_agent::connector::{Credential, QuixConnector};
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::portal::{Portal, PortalError, PortalOptions};
use hostpulse_agent::sampler::ScriptedSampler;
use hostpulse_agent::token::TokenSource;
use hostpulse_core::secret::Secret;
use hostpulse_core::settings::{MachineFacts, Settings};
use hostpulse_tests::portal::{PortalServer, PortalState, TopicState};
use hostpulse_tests::{Hostpulse, Tansu, parse_summary, qs3_rows, raw_records, read_qs3_via_portal, sent_rows};
use serde_json::json;

use crate::{STREAM_NAME, assert_stream_shape, expected_rows, scripted_rows};

const WS: &str = "quixdev-ws";
const TOKEN_1: &str = "sdk-token-one-1111";
const TOKEN_2: &str = "sdk-token-two-2222";

fn fast() -> PortalOptions {
    PortalOptions {
        request_timeout: Duration::from_secs(2),
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(40), 3),
        topic_poll: Duration::from_millis(50),
        topic_ready_timeout: Duration::from_secs(5),
    }
}

fn secret(t: &str) -> Secret {
    Secret::new(t).unwrap()
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn token_run_publishes_through_the_portal_and_quixstreams_3_reads_it_the_quix_way() {
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single(WS, TOKEN_1, &broker.addr));
    let home = tempfile::tempdir().unwrap();
    let args = ["--portal-url", &portal.url, "--topic", "cpu-load", "--interval-ms", "200", "--stream-id", "tok-cli"];
    let (status, out, err) = Hostpulse::run(args)
        .args(["--stream-name", STREAM_NAME])
        .env("Quix__Sdk__Token", TOKEN_1)
        .home(home.path())
        .run_for(Duration::from_secs(5));
    assert!(status.success(), "{err}");
    assert!(!out.contains(TOKEN_1) && !err.contains(TOKEN_1), "the token never appears in output");
    assert!(!out.contains("stopped while connecting"), "publishing did not start in time:\n{err}");
    let [samples, sent, acked, pending, _, _] = parse_summary(&out);
    assert_eq!((acked, pending), (sent, 0));

    let log = portal.log();
    assert!(log.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN_1}"))));
    assert!(log.iter().all(|r| r.x_version.as_deref() == Some("2.0")), "X-Version: 2.0 on every request");
    let paths: Vec<String> = log.iter().map(|r| format!("{} /{}", r.method, r.path.trim_start_matches('/'))).collect();
    for want in [
        "GET /workspaces",
        "GET /workspaces/quixdev-ws/broker/librdkafka",
        "GET /quixdev-ws/topics/cpu-load",
        "POST /quixdev-ws/topics",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} in {paths:?}");
    }
    let create = log.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&create.body).unwrap(), json!({"name": "cpu-load"}));

    // The Kafka topic is the Portal topic id `{workspaceId}-{name}`.
    let raw = raw_records(&broker.addr, "quixdev-ws-cpu-load");
    assert_stream_shape(&raw, "tok-cli");
    let rows = sent_rows(&raw);
    assert_eq!(rows.len() as u64, samples);
    let read = qs3_rows(&read_qs3_via_portal(&portal.url, TOKEN_1, "cpu-load", rows.len(), "token-qs3"));
    assert_eq!(read, rows);
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn replacing_the_token_mid_run_continues_one_stream_with_every_row_once() {
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single(WS, TOKEN_1, &broker.addr));
    portal.with(|s| s.tokens.push(TOKEN_2.into())); // Quix keeps two tokens valid
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let connector = QuixConnector {
            portal_url: portal.url.clone(),
            workspace_id: None,
            topic: "cpu-rotate".into(),
            data_dir: data.path().into(),
            verify_hostname: true,
            options: fast(),
        };
        let (publisher, target) = connector.publisher(secret(TOKEN_1), TokenSource::CredentialStore).await.unwrap();
        assert_eq!(target.topic_id, "quixdev-ws-cpu-rotate");
        let settings = Settings {
            stream_id: Some("rotating".into()),
            stream_name: Some(STREAM_NAME.into()),
            interval_ms: 200,
            ..Default::default()
        };
        let checked = settings.check(&MachineFacts { default_stream_id: "x".into(), hostname: "e2e".into() }).unwrap();
        let rows = scripted_rows().len() as u64;
        let parts = Parts {
            sampler: Box::new(ScriptedSampler::new(scripted_rows())),
            outbox: Outbox::in_memory(checked.outbox),
            connector: Some(Arc::new(connector)),
            credential: Some(Credential::new(secret(TOKEN_1), TokenSource::CredentialStore)),
            publisher: Some(Box::new(publisher)),
        };
        let (agent, _) = agent::spawn(AgentConfig::from_checked(&checked, "e2e"), parts);
        let mut watch = agent.watch();
        watch.wait_for(|s| s.samples >= 4).await.unwrap();
        agent.replace_token(Credential::new(secret(TOKEN_2), TokenSource::CredentialStore)).await.unwrap();
        portal.with(|s| s.tokens.retain(|t| t != TOKEN_1)); // the old token is revoked
        tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|s| s.samples >= rows)).await.unwrap().unwrap();
        agent.shutdown().await
    });
    assert_eq!((status.records_pending(), status.records_failed), (0, 0), "{status:?}");
    let after_switch =
        portal.log().iter().filter(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN_2}"))).count();
    assert!(after_switch >= 2, "the new token resolved workspace, broker and topic again");

    let raw = raw_records(&broker.addr, "quixdev-ws-cpu-rotate");
    assert_stream_shape(&raw, "rotating");
    let ends = raw.iter().filter(|r| r.model() == "StreamEnd").count();
    assert_eq!(ends, 1, "no StreamEnd at the switch, one at the end");
    assert_eq!(sent_rows(&raw), expected_rows("rotating"), "every row exactly once, in order");
    let read =
        qs3_rows(&read_qs3_via_portal(&portal.url, TOKEN_2, "cpu-rotate", scripted_rows().len(), "rotation-qs3"));
    assert_eq!(read, expected_rows("rotating"));
}

/// Runs one Portal resolution against a server in `state`, with fast retries.
fn resolve(
    state: PortalState,
    workspace: Option<&str>,
    token: &str,
) -> (Result<hostpulse_agent::portal::QuixTarget, PortalError>, PortalServer, tempfile::TempDir) {
    let server = PortalServer::start(state);
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let portal = Portal::new(&server.url, secret(token), TokenSource::Environment, fast()).unwrap();
        portal.resolve(workspace, "cpu-load", data.path(), true).await
    });
    (result, server, data)
}

/// A Portal whose broker is not contacted (these tests stop at the Portal).
fn state() -> PortalState {
    PortalState { kafka: None, ..PortalState::single(WS, TOKEN_1, "127.0.0.1:9") }
}

#[test]
fn portal_failures_give_clear_errors_and_transient_ones_are_retried() {
    // A rejected token names where it came from, never the token.
    let (r, _, _) = resolve(state(), None, "wrong-token-XYZ");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("rejected the streaming token from the environment variable Quix__Sdk__Token (HTTP 401: Token is invalid or expired)"), "{e}");
    assert!(!e.contains("wrong-token-XYZ"));

    // Two server errors, then success: retried with backoff.
    let mut s = state();
    s.next_answers = [(503, "busy".to_owned()), (500, r#"{"message":"oops"}"#.to_owned())].into();
    let (r, server, _) = resolve(s, None, TOKEN_1);
    assert_eq!(r.unwrap().topic_id, "quixdev-ws-cpu-load");
    assert_eq!(server.log().iter().filter(|l| l.path == "/workspaces").count(), 3);

    // Server errors that persist: reported with status, path and message after the retries.
    let mut s = state();
    s.next_answers = std::iter::repeat_n((502, r#"{"message":"bad gateway"}"#.to_owned()), 3).collect();
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.starts_with("the Quix Portal at http://127.0.0.1:"), "the error names the URL tried: {e}");
    assert!(e.ends_with("/ answered HTTP 502 to GET workspaces: bad gateway"), "{e}");

    // Malformed and truncated JSON.
    for body in ["not json", r#"[{"workspaceId": "a""#, r#"{"workspaces": []}"#] {
        let mut s = state();
        s.next_answers = [(200, body.to_owned())].into();
        let (r, server, _) = resolve(s, None, TOKEN_1);
        let e = r.unwrap_err().to_string();
        let start = format!("the Quix Portal sent an answer HostPulse cannot use for {}workspaces: ", server.url);
        assert!(e.starts_with(&start), "{body}: {e}");
    }

    // Several workspaces: the error lists them; none: says so.
    let mut s = state();
    s.workspaces.push(json!({"workspaceId": "other-ws", "name": "Other"}));
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("set `workspace_id` to one of: quixdev-ws (Test workspace), other-ws (Other)"), "{e}");
    let mut s = state();
    s.workspaces.clear();
    assert!(matches!(resolve(s, None, TOKEN_1).0, Err(PortalError::NoWorkspaces)));

    // A configured workspace the token does not see.
    let e = resolve(state(), Some("missing-ws"), TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("no workspace `missing-ws`"), "{e}");

    // A topic the Portal reports as failed.
    let mut s = state();
    s.topics.insert(
        (WS.into(), "cpu-load".into()),
        TopicState { status: "Error".into(), polls_until_ready: 0, last_error: Some("quota exceeded".into()) },
    );
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert_eq!(e, "Quix topic `cpu-load` is not usable: the Portal reports an error: quota exceeded");

    // A slow Portal: the request times out, is retried, and the error says so.
    let mut s = state();
    s.delay = Duration::from_millis(2500);
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.starts_with("cannot reach the Quix Portal at http://127.0.0.1:") && e.contains("timed out"), "{e}");
}

#[test]
fn hostile_portal_answers_each_give_a_clear_error() {
    let repeat = |status: u16, body: &str| -> Vec<(u16, String)> { vec![(status, body.to_owned()); 3] };
    let table: Vec<(Vec<(u16, String)>, &str)> = vec![
        (
            repeat(403, r#"{"message":"Forbidden for this workspace"}"#),
            "rejected the streaming token from the environment variable Quix__Sdk__Token (HTTP 403: Forbidden for this workspace)",
        ),
        (repeat(404, ""), "/ answered HTTP 404 to GET workspaces"),
        (repeat(500, "<html>oops</html>"), "/ answered HTTP 500 to GET workspaces"),
        (repeat(200, "{"), "the Quix Portal sent an answer HostPulse cannot use for http://127.0.0.1:"),
        (repeat(200, "\u{0}\u{1}\u{fffd}binary"), "the Quix Portal sent an answer HostPulse cannot use for http://"),
        (repeat(200, r#"[{"workspaceId": 42}]"#), "the Quix Portal sent an answer HostPulse cannot use for http://"),
        (repeat(200, &format!("[{}]", "{},".repeat(20_000) + "{}")), "/workspaces: "),
        // A workspace id that would walk out of the data dir, or into a URL, is refused.
        (repeat(200, r#"[{"workspaceId": "../../etc"}]"#), "the workspace id \"../../etc\" is not 1 to 100 letters"),
        // A server that echoes the request's Authorization header into a 2xx answer: where the
        // error quotes the answer (the parser's complaint, an id), the token is blacked out.
        (repeat(200, &format!(r#"["Bearer {TOKEN_1}"]"#)), "invalid type: string \"Bearer [redacted]\""),
        (
            repeat(200, &format!(r#"[{{"workspaceId": "Bearer {TOKEN_1}"}}]"#)),
            "the workspace id \"Bearer [redacted]\" is not 1 to 100 letters",
        ),
        // Quoted text is cut to 200 characters after the token is blacked out, not before: a
        // cut first would leave a piece of it.
        (
            repeat(200, &format!(r#"[{{"workspaceId": "{}{TOKEN_1}"}}]"#, "x".repeat(190))),
            "the workspace id \"xxxxxxxxxx",
        ),
        // More than HostPulse reads (2 MiB of JSON).
        (repeat(200, &format!("[\"{}\"]", "x".repeat(2 << 20))), "with more than 1024 KiB, more than HostPulse reads"),
        // A message far too long for a log line or the window is cut, on one line.
        (repeat(401, &format!("{{\"message\":\"bad\\n{}\"}}", "y".repeat(5000))), "(HTTP 401: bad yyyy"),
    ];
    for (answers, expected) in table {
        let mut s = state();
        s.next_answers = answers.clone().into();
        let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
        assert!(e.contains(expected), "{:?}: {}", &answers[0].0, &e[..e.len().min(300)]);
        assert!(!e.contains(TOKEN_1), "the token never appears in an error");
        assert!(!e.contains(&TOKEN_1[..10]), "nor a piece of it: {e}");
        assert!(e.len() < 600 && !e.contains('\n'), "one line of sane length: {} bytes", e.len());
    }
}

#[test]
fn a_zip_bomb_for_a_certificate_and_a_portal_that_turns_verification_off_are_refused() {
    // 50 MiB of zeros packs into a ZIP of about 50 KiB; only the first 256 KiB are unpacked.
    let bomb = zip_with(&[("ca.cert", &vec![0u8; 50 << 20])]);
    assert!(bomb.len() < 1 << 20, "the ZIP itself is small: {}", bomb.len());
    let mut s = state();
    s.librdkafka.clear();
    s.workspaces[0]["broker"] = json!({"address": "k:9093", "securityMode": "Ssl", "hasCertificate": true});
    s.certificates.insert(WS.into(), bomb);
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("`ca.cert` in the certificate ZIP is larger than 256 KiB"), "{e}");
    // The Portal cannot switch TLS host name verification off; only `tls_verify_hostname` can.
    let mut s = state();
    s.librdkafka.insert(
        WS.into(),
        json!({"bootstrap.servers": "k:9093", "security.protocol": "ssl", "ssl.endpoint.identification.algorithm": "none"}),
    );
    let k = resolve(s, None, TOKEN_1).0.unwrap().kafka;
    assert!(!k.contains_key("ssl.endpoint.identification.algorithm"), "{k:?}");
    // A topic id that is not a Kafka topic name.
    let mut s = state();
    s.next_answers = [
        (200, json!({"bootstrap.servers": "k:9093"}).to_string()),
        (200, json!({"id": "ws/../../x", "status": "Ready"}).to_string()),
    ]
    .into();
    let e = resolve(s, Some(WS), TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("the topic id \"ws/../../x\" is not a valid Kafka topic name"), "{e}");
}

/// SIGHUP starts a token switch that hangs at a slow Portal; SIGTERM right after must still stop
/// the agent within its shutdown timeout, with everything acknowledged.
#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn a_stop_during_a_token_switch_is_honoured_within_the_shutdown_timeout() {
    let broker = Tansu::start();
    let portal = PortalServer::start(PortalState::single(WS, TOKEN_1, &broker.addr));
    let args = ["--portal-url", &portal.url, "--topic", "cpu-stop", "--interval-ms", "200"];
    let args: Vec<&str> = args.into_iter().chain(["--shutdown-timeout-ms", "1000"]).collect();
    let run = Hostpulse::run(args).env("Quix__Sdk__Token", TOKEN_1).start();
    std::thread::sleep(Duration::from_secs(1));
    portal.with(|s| s.delay = Duration::from_secs(25));
    std::process::Command::new("kill").args(["-HUP", &run.pid().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let asked = std::time::Instant::now();
    let (status, out, err) = run.stop();
    let took = asked.elapsed();
    assert!(status.success(), "{err}");
    assert!(took < Duration::from_secs(5), "stopped {took:?} after SIGTERM (shutdown timeout 1 s)\n{err}");
    let [_, sent, acked, pending, _, _] = parse_summary(&out);
    assert_eq!((acked, pending), (sent, 0), "{out}");
}

#[test]
fn the_token_is_never_sent_to_a_portal_over_plain_http_on_another_host() {
    let e = Portal::new("http://portal.example/", secret(TOKEN_1), TokenSource::Environment, fast()).err().unwrap();
    assert!(e.to_string().starts_with("`portal_url` must use https://"), "{e}");
    assert!(!e.to_string().contains(TOKEN_1));
}

fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn without_the_librdkafka_endpoint_the_workspace_broker_and_certificate_zip_are_used() {
    let mut s = state();
    s.librdkafka.clear();
    s.workspaces[0]["broker"] = json!({
        "address": "kafka-1:9093,kafka-2:9093", "securityMode": "SaslSsl", "saslMechanism": "ScramSha512",
        "username": "ws-user", "password": "ws-password", "hasCertificate": true
    });
    s.certificates.insert(WS.into(), zip_with(&[("ca.cert", PEM)]));
    let (r, server, data) = resolve(s, None, TOKEN_1);
    let target = r.unwrap();
    let k = &target.kafka;
    assert_eq!(k["bootstrap.servers"], "kafka-1:9093,kafka-2:9093");
    assert_eq!(k["security.protocol"], "sasl_ssl");
    assert_eq!(k["sasl.mechanism"], "SCRAM-SHA-512");
    assert_eq!((k["sasl.username"].as_str(), k["sasl.password"].as_str()), ("ws-user", "ws-password"));
    assert!(!k.contains_key("ssl.endpoint.identification.algorithm"), "host name verification stays on");
    let ca = std::path::PathBuf::from(&k["ssl.ca.location"]);
    assert!(ca.starts_with(data.path()), "the CA lives in the app's data dir");
    assert_eq!(std::fs::read(&ca).unwrap(), PEM);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777, 0o600, "readable only by the user");
    }
    assert!(!format!("{target:?}").contains("ws-password"), "Debug of the target hides values");
    assert!(server.log().iter().any(|l| l.path == "/workspaces/quixdev-ws/certificates"));

    // The same, but the ZIP lacks `ca.cert`.
    let mut s = state();
    s.librdkafka.clear();
    s.workspaces[0]["broker"] = json!({"address": "k:9093", "securityMode": "Ssl"});
    s.certificates.insert(WS.into(), zip_with(&[("readme.txt", b"hi")]));
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("the certificate ZIP has no `ca.cert`"), "{e}");
}

#[test]
fn the_librdkafka_answer_is_mapped_and_its_ca_stored() {
    let mut s = state();
    let b64 = base64_encode(PEM);
    s.librdkafka.insert(
        WS.into(),
        json!({"bootstrap.servers": "k:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "scram-sha-256",
               "sasl.username": "u", "sasl.password": "p", "ssl.ca.cert": b64, "acks": "0"}),
    );
    let (r, _server, _data) = resolve(s, None, TOKEN_1);
    let k = r.unwrap().kafka;
    assert_eq!(k["security.protocol"], "sasl_ssl");
    assert_eq!(k["sasl.mechanism"], "SCRAM-SHA-256");
    assert_eq!(std::fs::read(&k["ssl.ca.location"]).unwrap(), PEM);
    assert!(!k.contains_key("acks"), "the Portal cannot weaken our delivery settings");
    assert!(!k.contains_key("ssl.ca.cert"));
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn every_workspace_security_mode_and_mechanism_maps_to_librdkafka() {
    for (mode, mechanism, protocol, sasl) in [
        ("PlainText", None, "plaintext", None),
        ("Ssl", None, "ssl", None),
        ("Sasl", Some("Plain"), "sasl_plaintext", Some("PLAIN")),
        ("SaslSsl", Some("Plain"), "sasl_ssl", Some("PLAIN")),
        ("SaslSsl", Some("ScramSha256"), "sasl_ssl", Some("SCRAM-SHA-256")),
        ("SaslSsl", Some("ScramSha512"), "sasl_ssl", Some("SCRAM-SHA-512")),
    ] {
        let mut s = state();
        s.librdkafka.clear();
        s.workspaces[0]["broker"] = json!({"address": "k:9093", "securityMode": mode, "saslMechanism": mechanism,
            "username": "u", "password": "p", "hasCertificate": false});
        let (r, _server, _data) = resolve(s, None, TOKEN_1);
        let k = r.unwrap_or_else(|e| panic!("{mode}/{mechanism:?}: {e}")).kafka;
        assert_eq!(k["security.protocol"], protocol, "{mode}");
        assert_eq!(k.get("sasl.mechanism").map(String::as_str), sasl, "{mode}/{mechanism:?}");
        assert_eq!(k.contains_key("sasl.username"), sasl.is_some());
        assert!(!k.contains_key("ssl.ca.location"), "hasCertificate false: no CA download");
    }
    let mut s = state();
    s.librdkafka.clear();
    s.workspaces[0]["broker"] = json!({"address": "k:9093", "securityMode": "SaslSsl", "saslMechanism": "OAuthBearer"});
    let e = resolve(s, None, TOKEN_1).0.unwrap_err().to_string();
    assert!(e.contains("unsupported `broker.saslMechanism` \"OAuthBearer\""), "{e}");
}
