//! Support for the end-to-end suites: the real broker (tansu) and librdkafka's mock cluster on
//! loopback, the real Quix SDK readers (pinned Python venvs), a raw reader of what is on the
//! broker, the one way to run the `hostpulse` binary ([`cli`]) and the one decoder of data rows
//! ([`rows`]).
//!
//! The test command (`scripts/test.sh`) installs tansu and the venvs, exports `HOSTPULSE_TANSU`,
//! `HOSTPULSE_QS057_PYTHON` and `HOSTPULSE_QS3_PYTHON`, and runs the tests that need them (they
//! are `#[ignore]`d, so a plain `cargo test` leaves them out); run without them, they fail
//! saying so.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where tests leave artifacts for people to look at (`test-output/` in the workspace).
pub fn output_dir(suite: &str) -> PathBuf {
    let dir = workspace().join("test-output").join(suite);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free loopback port (bound and released; the broker binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tansu broker on a free loopback port with in-memory storage, stopped on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:<port>` (the advertised address: the relay's when behind one).
    pub addr: String,
}

impl Tansu {
    /// Starts `tansu broker` (from `HOSTPULSE_TANSU` or `PATH`).
    pub fn start() -> Tansu {
        Tansu::launch(None).0
    }

    /// Starts tansu behind a fault relay: tansu advertises the relay's port, so every client
    /// connection goes through the relay (use `relay.addr()`; `Tansu::addr` is the same).
    pub fn start_behind_relay() -> (Tansu, Relay) {
        let (mut relay, listener) = Relay::bind();
        let (tansu, port) = Tansu::launch(Some(relay.port));
        relay.start(listener, port);
        (tansu, relay)
    }

    fn launch(advertise: Option<u16>) -> (Tansu, u16) {
        let bin = std::env::var("HOSTPULSE_TANSU").unwrap_or_else(|_| "tansu".into());
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertise.unwrap_or(port));
        let log = std::fs::File::create(output_dir("broker").join(format!("tansu-{port}.log"))).unwrap();
        let mut child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{bin}` ({e}): run `bash scripts/test.sh` (or `source scripts/setup.sh` first), which installs tansu")
            });
        wait_for_port(port, &mut child, "tansu");
        (Tansu { child, addr: advertised.trim_start_matches("tcp://").to_owned() }, port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record as it sits on the broker.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Kafka key as text.
    pub key: String,
    /// The value as text.
    pub value: String,
    /// CreateTime, ms.
    pub timestamp_ms: Option<i64>,
    /// Number of headers.
    pub headers: usize,
}

impl RawRecord {
    /// The envelope parsed.
    pub fn envelope(&self) -> Value {
        serde_json::from_str(&self.value).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.value))
    }

    /// The model key (`K`); empty for a JSON row.
    pub fn model(&self) -> String {
        self.envelope()["K"].as_str().unwrap_or("").to_owned()
    }
}

/// Every record of `topic`, read from the beginning to the end of each partition, in
/// partition-then-offset order.
pub fn raw_records(broker: &str, topic: &str) -> Vec<RawRecord> {
    raw_records_with(broker, topic, &[])
}

/// [`raw_records`] with extra client settings (security).
pub fn raw_records_with(broker: &str, topic: &str, extra: &[(&str, &str)]) -> Vec<RawRecord> {
    let mut config = ClientConfig::new();
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", broker)
        .set("group.id", "hostpulse-raw-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic).expect("topic exists");
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    let partitions = t.partitions().len();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while eof.len() < partitions {
        assert!(Instant::now() < deadline, "raw read of {topic} did not reach the end in 30 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(RawRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                value: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                timestamp_ms: m.timestamp().to_millis(),
                headers: rdkafka::message::Headers::count(&m.headers().map(|h| h.detach()).unwrap_or_default()),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("raw read failed: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The Python interpreter of a pinned Quix SDK venv, from the environment variable `var`.
fn python(var: &str) -> PathBuf {
    let p = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `bash scripts/test.sh` (or `source scripts/setup.sh` first), which makes the pinned Quix SDK venvs")
    });
    PathBuf::from(p)
}

/// Runs a reader script and returns its JSON lines; fails the test with its stderr when it fails.
fn run_reader(var: &str, script: &str, args: &[&str], envs: &[(&str, &str)], name: &str) -> Vec<Value> {
    let mut child = Command::new(python(var))
        .arg(workspace().join("tests/python").join(script))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let lines: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let status = child.wait().unwrap();
    let stderr = err_thread.join().unwrap();
    let dir = output_dir("readers");
    std::fs::write(dir.join(format!("{name}.stderr.log")), &stderr).unwrap();
    std::fs::write(dir.join(format!("{name}.jsonl")), lines.iter().map(|l| format!("{l}\n")).collect::<String>())
        .unwrap();
    assert!(status.success(), "{script} failed ({status}); stderr:\n{stderr}");
    lines
}

/// What quixstreams 0.5.7 reports for `topic` until `streams` streams closed.
pub fn read_qs057(broker: &str, topic: &str, streams: usize, name: &str) -> Vec<Value> {
    run_reader(
        "HOSTPULSE_QS057_PYTHON",
        "read_qs057.py",
        &["--broker", broker, "--topic", topic, "--streams", &streams.to_string(), "--timeout", "90"],
        &[],
        name,
    )
}

/// The rows quixstreams 3.x yields for `topic` (waits for `rows` rows).
pub fn read_qs3(broker: &str, topic: &str, rows: usize, name: &str) -> Vec<Value> {
    run_reader(
        "HOSTPULSE_QS3_PYTHON",
        "read_qs3.py",
        &["--broker", broker, "--topic", topic, "--rows", &rows.to_string(), "--timeout", "90"],
        &[],
        name,
    )
}

/// The rows quixstreams 3.x yields for topic *name* `topic`, connecting the way Quix users do:
/// a streaming token and the Portal API (which hands out the broker settings).
pub fn read_qs3_via_portal(portal_url: &str, token: &str, topic: &str, rows: usize, name: &str) -> Vec<Value> {
    run_reader(
        "HOSTPULSE_QS3_PYTHON",
        "read_qs3.py",
        &["--topic", topic, "--rows", &rows.to_string(), "--timeout", "90"],
        &[("Quix__Sdk__Token", token), ("Quix__Portal__Api", portal_url)],
        name,
    )
}

/// The program titled `name` in docs/reading.md (a fenced block opened with
/// ```` ```python title="NAME" ````), written to a file of its own: the tests run the very
/// programs the docs show.
pub fn docs_program(name: &str) -> PathBuf {
    let page = std::fs::read_to_string(workspace().join("docs/reading.md")).unwrap();
    let opening = format!("```python title=\"{name}\"\n");
    let start = page.find(&opening).unwrap_or_else(|| panic!("docs/reading.md has no program {name}")) + opening.len();
    let end = start + page[start..].find("\n```").expect("the block is closed");
    let dir = output_dir("docs-programs");
    let path = dir.join(name);
    std::fs::write(&path, &page[start..=end]).unwrap();
    path
}

/// Runs `script` with the Python of `var` (a venv made by scripts/setup.sh) and `envs`, and
/// returns its standard output's lines once `enough` says so (then stops it) or after `timeout`
/// (a failure naming what it printed). The docs' programs run until stopped, like any Quix app.
pub fn python_lines(
    var: &str,
    script: &Path,
    envs: &[(&str, &str)],
    timeout: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let name = script.file_name().unwrap().to_string_lossy().into_owned();
    // quixstreams keeps its state in `./state`: a directory of this run's own.
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(python(var))
        .arg(script)
        .current_dir(cwd.path())
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(output_dir("readers").join(format!("{name}.stderr.log"))).unwrap())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while !enough(&lines) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not print what was expected within {timeout:?}; it printed:\n{}", lines.join("\n"));
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

pub mod cli;
pub mod desktop;
pub mod portal;
pub mod relay;
pub mod rows;

pub use cli::{CliRun, Hostpulse, parse_summary};
pub use relay::{Mode, Relay};
pub use rows::{DataRow, qs3_rows, qs057_rows, sent_rows};

/// tansu behind TLS with SCRAM-SHA-512 logins: a test CA and a server certificate for
/// 127.0.0.1/localhost (openssl), tansu on sqlite storage with a user created before
/// `--authentication` is switched on (tansu only creates users without it), and stunnel
/// terminating TLS in front of it (tansu's own TLS flags gave no TLS listener). tansu
/// advertises the stunnel port, so every client connection goes through TLS.
pub struct SecureBroker {
    tansu: Child,
    stunnel: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<tls port>`.
    pub addr: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca_pem: Vec<u8>,
    /// The CA file.
    pub ca_path: PathBuf,
    /// SCRAM user.
    pub user: &'static str,
    /// Its password.
    pub password: &'static str,
}

impl SecureBroker {
    /// Sets everything up with `topics` created (1 partition each).
    pub fn start(topics: &[&str]) -> SecureBroker {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sh = |cmd: &str| {
            let out = Command::new("sh").arg("-c").arg(cmd).current_dir(d).output().unwrap();
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=HostPulse Test CA'",
        );
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=localhost'");
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        sh(
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf",
        );
        let bin = std::env::var("HOSTPULSE_TANSU").unwrap_or_else(|_| "tansu".into());
        let (plain, tls) = (free_port(), free_port());
        let tansu = |auth: bool| {
            let log =
                std::fs::File::create(output_dir("broker").join(format!("tansu-secure-{plain}-{auth}.log"))).unwrap();
            let mut c = Command::new(&bin);
            c.args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{plain}")])
                .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{tls}")])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(d)
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if auth {
                c.arg("--authentication");
            }
            let mut child = c.spawn().unwrap();
            wait_for_port(plain, &mut child, "tansu");
            child
        };
        let mut setup = tansu(false);
        let url = format!("tcp://127.0.0.1:{plain}");
        let (user, password) = ("hostpulse-svc", "scram-secret-123");
        sh(&format!("'{bin}' user create {user} {password} --broker {url} --mechanism scram512"));
        for t in topics {
            sh(&format!("'{bin}' topic create {t} --partitions 1 --broker {url}"));
        }
        let _ = setup.kill();
        let _ = setup.wait();
        let tansu = tansu(true);
        std::fs::write(
            d.join("stunnel.conf"),
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\ncert = {}\nkey = {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(output_dir("broker").join(format!("stunnel-{tls}.log"))).unwrap();
        let mut stunnel = Command::new("stunnel4")
            .arg(d.join("stunnel.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("stunnel4 is installed by the test command");
        wait_for_port(tls, &mut stunnel, "stunnel");
        let ca_path = d.join("ca.pem");
        SecureBroker {
            tansu,
            stunnel,
            ca_pem: std::fs::read(&ca_path).unwrap(),
            ca_path,
            _dir: dir,
            addr: format!("127.0.0.1:{tls}"),
            user,
            password,
        }
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        for c in [&mut self.stunnel, &mut self.tansu] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
