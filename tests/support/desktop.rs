//! Support for the desktop suite: an X server (Xvfb) on a free display, a StatusNotifierWatcher
//! host on the session bus (the tray registers with it), tauri-driver with Debian's
//! WebKitWebDriver, and a small WebDriver client.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{free_port, workspace};

/// The desktop app binary next to the test binary (`cargo build -p hostpulse-app`).
pub fn app_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("hostpulse-app");
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p hostpulse-app`", bin.display());
    bin
}

/// Kills a child on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb server on a free display.
pub struct Xvfb {
    _child: Guard,
    /// `:N`.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb at 1280x900x24.
    pub fn start() -> Xvfb {
        let n = (90..190).find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()).expect("a free display");
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed by the test command");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb { _child: Guard(child), display }
    }
}

/// The StatusNotifierWatcher host (`tests/python/sni_host.py`) and its command line.
pub struct SniHost {
    child: Guard,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl SniHost {
    /// Starts it on the session bus.
    pub fn start() -> SniHost {
        let python = std::env::var("HOSTPULSE_DESKTOP_PYTHON").expect(
            "HOSTPULSE_DESKTOP_PYTHON is not set: run `bash scripts/test.sh` (or `source scripts/setup.sh` first), which makes the desktop venv",
        );
        let mut child = Command::new(python)
            .arg(workspace().join("tests/python/sni_host.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "watcher did not start: {line:?}");
        SniHost { child: Guard(child), stdin, stdout }
    }

    /// Sends one command and returns its answer.
    pub fn ask(&mut self, cmd: &str) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let _ = &self.child;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{cmd}: {e}: {line:?}"))
    }

    /// Asks until `ok` accepts the answer, for up to `secs` seconds.
    pub fn wait_for(&mut self, cmd: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.ask(cmd);
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "`{cmd}` never gave what was expected; last: {v}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// tauri-driver on a free port, with the environment the app should get.
pub struct Driver {
    _child: Guard,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Driver {
    /// Starts tauri-driver (from `HOSTPULSE_TAURI_DRIVER`) with `envs` for the app.
    pub fn start(envs: &[(&str, &str)], log: &Path) -> Driver {
        let bin = std::env::var("HOSTPULSE_TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into());
        let (port, native) = (free_port(), free_port());
        let log = std::fs::File::create(log).unwrap();
        let mut child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--native-port", &native.to_string()])
            .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
            .envs(envs.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run `bash scripts/test.sh` (or `source scripts/setup.sh` first)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "tauri-driver exited");
            assert!(Instant::now() < deadline, "tauri-driver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { _child: Guard(child), url: format!("http://127.0.0.1:{port}") }
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver session on the app.
pub struct Session {
    http: reqwest::blocking::Client,
    base: String,
}

impl Session {
    /// Launches `app` through the driver.
    pub fn new(driver: &Driver, app: &Path) -> Session {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let caps =
            json!({"capabilities": {"alwaysMatch": {"browserName": "wry", "tauri:options": {"application": app}}}});
        let v: Value = http.post(format!("{}/session", driver.url)).json(&caps).send().unwrap().json().unwrap();
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        Session { http, base: format!("{}/session/{id}", driver.url) }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().unwrap().json().unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Replaces the text of the input matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({})));
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn js(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Runs `script` (returning a promise) in the page and returns what it resolves to.
    pub fn js_async(&self, script: &str) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1]; ({script}).then(done, (e) => done({{rejected: String(e)}}));"
        );
        self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": wrapped, "args": []})))
    }

    /// Waits until `script` returns true.
    pub fn wait(&self, what: &str, secs: u64, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.js(script) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what} ({script})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a screenshot of the window.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}
