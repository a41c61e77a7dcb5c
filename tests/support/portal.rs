//! A Quix Portal API test server on loopback (OS-chosen port) following
//! `docs/spec/quix-portal-api.md`: the request paths and headers the SDKs use, camelCase
//! answers, `{"message","correlationId"}` errors, topics that go `Creating` -> `Ready`, and the
//! broker settings of a local broker. Every request is logged for the tests to inspect.
//!
//! Deliberately small: HTTP/1.1, one request per connection (`Connection: close`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET`, `POST`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `X-Version` header.
    pub x_version: Option<String>,
    /// The body.
    pub body: String,
}

/// A topic the server knows.
#[derive(Debug, Clone)]
pub struct TopicState {
    /// `Creating`, `Ready`, `Error`, `Deleting`.
    pub status: String,
    /// Polls left before `Creating` turns `Ready`.
    pub polls_until_ready: u32,
    /// `lastError` when `Error`.
    pub last_error: Option<String>,
}

/// What the server answers; tests change it while it runs.
#[derive(Debug, Clone)]
pub struct PortalState {
    /// Tokens accepted (`Authorization: Bearer <token>`).
    pub tokens: Vec<String>,
    /// Workspace objects (`workspaceId`, `name`, `status`, `broker`, ...).
    pub workspaces: Vec<Value>,
    /// The `/broker/librdkafka` answer per workspace; absent: 404 (the 0.5.7 fallback path).
    pub librdkafka: BTreeMap<String, Value>,
    /// The `/certificates` ZIP per workspace; absent: 204.
    pub certificates: BTreeMap<String, Vec<u8>>,
    /// Topics per `(workspace, name)`.
    pub topics: BTreeMap<(String, String), TopicState>,
    /// Polls a created topic stays `Creating`.
    pub creating_polls: u32,
    /// The Kafka broker where a created topic is made, as the real Portal does.
    pub kafka: Option<String>,
    /// Canned answers `(status, body)` for the next requests, before any routing.
    pub next_answers: VecDeque<(u16, String)>,
    /// Delay before answering anything.
    pub delay: Duration,
    /// Answer every request with a 200 HTML maintenance page (as a proxy in front of a Portal
    /// under maintenance does).
    pub maintenance: bool,
    /// Every request.
    pub log: Vec<Logged>,
}

impl PortalState {
    /// One workspace `ws` whose broker is `broker` (plaintext) with the given token.
    pub fn single(ws: &str, token: &str, broker: &str) -> Self {
        PortalState {
            tokens: vec![token.into()],
            workspaces: vec![json!({
                "workspaceId": ws, "name": "Test workspace", "status": "Ready",
                "broker": {"address": broker, "securityMode": "PlainText", "hasCertificate": false},
                "brokerSettings": {"brokerType": "SelfHosted"}
            })],
            librdkafka: BTreeMap::from([(
                ws.to_owned(),
                json!({"bootstrap.servers": broker, "security.protocol": "plaintext"}),
            )]),
            certificates: BTreeMap::new(),
            topics: BTreeMap::new(),
            creating_polls: 2,
            kafka: Some(broker.into()),
            next_answers: VecDeque::new(),
            delay: Duration::ZERO,
            maintenance: false,
            log: Vec::new(),
        }
    }
}

/// The running server; stops on drop.
pub struct PortalServer {
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
    /// What it answers, and what it saw.
    pub state: Arc<Mutex<PortalState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl PortalServer {
    /// Starts serving `state`.
    pub fn start(state: PortalState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let state = state.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, &state);
                        });
                    }
                }
            })
        };
        PortalServer { url: format!("http://127.0.0.1:{port}/"), state, stop, thread: Some(thread), port }
    }

    /// Requests seen so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Changes the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut PortalState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for PortalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<PortalState>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("/").to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let logged = Logged {
        method: method.clone(),
        path: path.clone(),
        authorization: headers.get("authorization").cloned(),
        x_version: headers.get("x-version").cloned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let delay = state.lock().unwrap().delay;
    std::thread::sleep(delay);
    let (status, content_type, bytes) = {
        let mut s = state.lock().unwrap();
        s.log.push(logged.clone());
        route(&mut s, &logged)
    };
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    };
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    )?;
    out.write_all(&bytes)?;
    out.flush()
}

fn error(status: u16, message: &str) -> (u16, &'static str, Vec<u8>) {
    let body = json!({"message": message, "correlationId": "cid-test"}).to_string();
    (status, "application/json", body.into_bytes())
}

fn ok(v: Value) -> (u16, &'static str, Vec<u8>) {
    (200, "application/json", v.to_string().into_bytes())
}

fn topic_json(ws: &str, name: &str, t: &TopicState) -> Value {
    let mut v = json!({
        "id": format!("{ws}-{name}"), "name": name, "workspaceId": ws, "status": t.status,
        "configuration": {"partitions": 1, "replicationFactor": 1, "retentionInMinutes": 1440, "retentionInBytes": 52428800}
    });
    if let Some(e) = &t.last_error {
        v["lastError"] = json!(e);
    }
    v
}

fn route(s: &mut PortalState, r: &Logged) -> (u16, &'static str, Vec<u8>) {
    if let Some((status, body)) = s.next_answers.pop_front() {
        return (status, "application/json", body.into_bytes());
    }
    if s.maintenance {
        let page = "<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>";
        return (200, "text/html", page.as_bytes().to_vec());
    }
    let token = r.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    if !token.is_some_and(|t| s.tokens.iter().any(|k| k == t)) {
        return error(401, "Token is invalid or expired");
    }
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let known = |s: &PortalState, ws: &str| s.workspaces.iter().any(|w| w["workspaceId"] == ws);
    match (r.method.as_str(), segs.as_slice()) {
        ("GET", ["workspaces"]) => ok(Value::Array(s.workspaces.clone())),
        ("GET", ["workspaces", ws]) => match s.workspaces.iter().find(|w| w["workspaceId"] == *ws) {
            Some(w) => ok(w.clone()),
            None => error(404, "Workspace not found"),
        },
        ("GET", ["workspaces", ws, "broker", "librdkafka"]) if known(s, ws) => match s.librdkafka.get(*ws) {
            Some(v) => ok(v.clone()),
            None => error(404, "Not found"),
        },
        ("GET", ["workspaces", ws, "certificates"]) if known(s, ws) => match s.certificates.get(*ws) {
            Some(zip) => (200, "application/zip", zip.clone()),
            None => (204, "application/json", Vec::new()),
        },
        ("GET", [ws, "topics"]) if known(s, ws) => {
            let mut list = Vec::new();
            for ((w, name), t) in s.topics.iter_mut().filter(|((w, _), _)| w == ws) {
                advance(t);
                list.push(topic_json(w, name, t));
            }
            ok(Value::Array(list))
        }
        ("GET", [ws, "topics", name]) if known(s, ws) => match s.topics.get_mut(&(ws.to_string(), name.to_string())) {
            Some(t) => {
                advance(t);
                ok(topic_json(ws, name, t))
            }
            None => error(404, "Topic not found"),
        },
        ("POST", [ws, "topics"]) if known(s, ws) => {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let Some(name) = body.get("name").or(body.get("Name")).and_then(Value::as_str) else {
                return error(400, "Topic name is required");
            };
            let key = (ws.to_string(), name.to_owned());
            if s.topics.contains_key(&key) {
                return error(400, &format!("Topic with name similar to '{name}' already exists."));
            }
            if let Some(kafka) = &s.kafka
                && let Err(e) = create_kafka_topic(kafka, &format!("{ws}-{name}"))
            {
                return error(500, &format!("Kafka topic creation failed: {e}"));
            }
            let t = TopicState { status: "Creating".into(), polls_until_ready: s.creating_polls, last_error: None };
            let v = topic_json(ws, name, &t);
            s.topics.insert(key, t);
            (201, "application/json", v.to_string().into_bytes())
        }
        _ => error(404, "Not found"),
    }
}

/// Creates `topic` (1 partition) on the broker, as the real Portal does for a new topic.
fn create_kafka_topic(broker: &str, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker).create().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = rt.block_on(admin.create_topics([&new], &opts)).map_err(|e| e.to_string())?;
    for r in results {
        r.map_err(|(t, code)| format!("{t}: {code}"))?;
    }
    Ok(())
}

fn advance(t: &mut TopicState) {
    if t.status == "Creating" {
        if t.polls_until_ready == 0 {
            t.status = "Ready".into();
        } else {
            t.polls_until_ready -= 1;
        }
    }
}
