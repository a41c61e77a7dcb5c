//! The Quix Cloud path for real: token -> Portal -> SASL_SSL with SCRAM-SHA-512 and the
//! workspace CA, TLS host name verification on, through tansu behind stunnel; quixstreams 3
//! reads the result with the same Portal settings. A wrong password is a refused login.

use std::time::Duration;

use hostpulse_tests::portal::{PortalServer, PortalState, TopicState};
use hostpulse_tests::{
    Hostpulse, SecureBroker, parse_summary, qs3_rows, raw_records_with, read_qs3_via_portal, sent_rows,
};
use serde_json::json;

use crate::assert_stream_shape;

const TOKEN: &str = "sdk-secure-token-5555";

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn token_to_sasl_ssl_scram_publishing_with_host_name_verification() {
    let broker = SecureBroker::start(&["sec-ws-cpu-secure"]);
    let mut state = PortalState { kafka: None, ..PortalState::single("sec-ws", TOKEN, &broker.addr) };
    state.librdkafka.insert(
        "sec-ws".into(),
        json!({
            "bootstrap.servers": broker.addr, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": broker.user, "sasl.password": broker.password, "ssl.ca.cert": base64(&broker.ca_pem)
        }),
    );
    state.topics.insert(
        ("sec-ws".into(), "cpu-secure".into()),
        TopicState { status: "Ready".into(), polls_until_ready: 0, last_error: None },
    );
    let portal = PortalServer::start(state);
    let home = tempfile::tempdir().unwrap();
    let args = ["--portal-url", &portal.url, "--topic", "cpu-secure", "--interval-ms", "200", "--stream-id", "secure"];
    let (status, out, err) = Hostpulse::run(args)
        .args(["--stream-name", crate::STREAM_NAME])
        .env("Quix__Sdk__Token", TOKEN)
        .home(home.path())
        .run_for(Duration::from_secs(5));
    assert!(status.success() && !out.contains("stopped before"), "{out}\n{err}");
    for secret in [TOKEN, broker.password] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} leaked into the output");
    }
    let [samples, sent, acked, pending, _, _] = parse_summary(&out);
    assert_eq!((acked, pending), (sent, 0), "{err}");
    let ca = home.path().join("hostpulse/certificates/sec-ws/ca.pem");
    assert_eq!(std::fs::read(&ca).unwrap(), broker.ca_pem, "the workspace CA is kept in the data dir");

    let ca_path = broker.ca_path.to_str().unwrap();
    let security = [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", broker.user),
        ("sasl.password", broker.password),
        ("ssl.ca.location", ca_path),
    ];
    let raw = raw_records_with(&broker.addr, "sec-ws-cpu-secure", &security);
    assert_stream_shape(&raw, "secure");
    let rows = sent_rows(&raw);
    assert_eq!(rows.len() as u64, samples);
    let read = qs3_rows(&read_qs3_via_portal(&portal.url, TOKEN, "cpu-secure", rows.len(), "secure-qs3"));
    assert_eq!(read, rows, "quixstreams 3 reads it over SASL_SSL with the Portal's settings");
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn a_wrong_password_is_reported_as_a_refused_login() {
    let broker = SecureBroker::start(&["direct-secure"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "broker = \"{}\"\ntopic = \"direct-secure\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{}\"\nssl_ca_location = \"{}\"\n",
            broker.addr,
            broker.user,
            broker.ca_path.display()
        ),
    )
    .unwrap();
    let check = |password: &str| {
        Hostpulse::new(["check", "--config", config.to_str().unwrap()])
            .env("HOSTPULSE_SASL_PASSWORD", password)
            .output()
    };
    let good = check(broker.password);
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{text}{}", String::from_utf8_lossy(&good.stderr));
    assert!(text.contains("ok    broker login and topic: connected; topic `direct-secure` is on the broker"), "{text}");

    let bad = check("not-the-password");
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    assert!(text.contains("FAIL  broker login and topic: the Kafka broker at"), "{text}");
    assert!(text.contains("refused the login") && text.contains("SCRAM authentication failed"), "{text}");
    assert!(!text.contains("not-the-password"));
}
