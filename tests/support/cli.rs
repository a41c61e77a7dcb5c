//! The one way the suites run the `hostpulse` binary: [`Hostpulse`], a builder for its command
//! line, environment, home and standard input, which either runs it to the end
//! ([`Hostpulse::output`]) or starts it ([`Hostpulse::start`], [`Hostpulse::spawn`]) as a
//! [`CliRun`].
//!
//! Every run is kept away from the user's files: unless [`Hostpulse::home`] (or an explicit
//! `XDG_DATA_HOME`/`XDG_CONFIG_HOME`) says otherwise, it gets a data and a config dir of its own
//! (outbox, pid file, settings), and the environment variables that would change what it does
//! (`Quix__Sdk__Token`, `Quix__Portal__Api`, `Quix__Workspace__Id`, `HOSTPULSE_SASL_PASSWORD`,
//! `HOSTPULSE_LOG`) are removed unless the test sets them.
//!
//! A started `hostpulse run` is ready when its `--status-file` shows a state other than
//! `connecting` (a machine-readable signal, not a log sentence).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `hostpulse` binary in the target dir (`cargo test` at the root builds it; after changing
/// `crates/hostpulse-cli`, `cargo build -p hostpulse-cli` before `cargo test -p hostpulse-tests`).
fn bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(format!("hostpulse{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p hostpulse-cli`", bin.display());
    bin
}

/// Environment variables that change what `hostpulse` does; removed unless a test sets them.
const CLEARED: [&str; 5] =
    ["Quix__Sdk__Token", "Quix__Portal__Api", "Quix__Workspace__Id", "HOSTPULSE_SASL_PASSWORD", "HOSTPULSE_LOG"];

/// The log filter of a started `hostpulse run` (its stderr is kept for the test to read).
const RUN_LOG: &str = "info,hostpulse_agent=debug";

/// How long [`Hostpulse::start`] waits for `hostpulse run` to leave `connecting`.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A `hostpulse` command line to run.
#[must_use]
pub struct Hostpulse {
    args: Vec<OsString>,
    /// In order; `None` removes the variable.
    envs: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    status_file: Option<PathBuf>,
}

impl Hostpulse {
    /// `hostpulse <args>`.
    pub fn new<I, S>(args: I) -> Hostpulse
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Hostpulse { args: Vec::new(), envs: Vec::new(), stdin: None, status_file: None }.args(args)
    }

    /// `hostpulse run <args>`.
    pub fn run<I, S>(args: I) -> Hostpulse
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Hostpulse::new(["run"]).args(args)
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Hostpulse
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (the last setting of a name wins).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Hostpulse {
        self.envs.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(self, envs: I) -> Hostpulse
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        envs.into_iter().fold(self, |h, (k, v)| h.env(k, v))
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Hostpulse {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Uses `dir` as `HOME`, `XDG_DATA_HOME` and `XDG_CONFIG_HOME` (settings, outbox, pid file,
    /// workspace CA all below it).
    pub fn home(self, dir: &Path) -> Hostpulse {
        self.env("HOME", dir).env("XDG_DATA_HOME", dir).env("XDG_CONFIG_HOME", dir)
    }

    /// Text piped to its standard input (otherwise it reads an empty one).
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> Hostpulse {
        self.stdin = Some(text.into());
        self
    }

    /// Where [`start`](Self::start) has it keep its `--status-file` (default: a temp dir that
    /// goes when the run ends), for a test that reads the final status after the run.
    pub fn status_file(mut self, path: &Path) -> Hostpulse {
        self.status_file = Some(path.to_owned());
        self
    }

    fn sets(&self, key: &str) -> bool {
        self.envs.iter().any(|(k, v)| k == key && v.is_some())
    }

    /// The command, and the temporary dirs it uses (they must outlive it).
    fn command(&self) -> (Command, Option<tempfile::TempDir>) {
        let mut cmd = Command::new(bin());
        cmd.args(&self.args);
        for key in CLEARED {
            cmd.env_remove(key);
        }
        let own = (!self.sets("XDG_DATA_HOME") || !self.sets("XDG_CONFIG_HOME")).then(|| tempfile::tempdir().unwrap());
        if let Some(dir) = &own {
            cmd.env("XDG_DATA_HOME", dir.path().join("data")).env("XDG_CONFIG_HOME", dir.path().join("config"));
        }
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        (cmd, own)
    }

    /// Runs it to the end and returns what it printed.
    pub fn output(self) -> Output {
        let (mut cmd, _dirs) = self.command();
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = &self.stdin {
            // It may exit before reading (a refused flag): a closed pipe is not the test's failure.
            let _ = child.stdin.take().unwrap().write_all(text);
        }
        child.wait_with_output().unwrap()
    }

    /// Starts it and returns at once (for commands that end by themselves, or that the test
    /// stops). [`CliRun::started`] is false: nothing was waited for.
    pub fn spawn(self) -> CliRun {
        CliRun::spawn(self, None)
    }

    /// Starts `hostpulse run …` with `--status-file` in a temp dir and waits (up to 90 s) until
    /// that file shows a state other than `connecting`: it publishes (`publishing`), or samples
    /// wait in the outbox while it retries (`retrying`); or it stopped. Its log goes to its
    /// stderr at `info,hostpulse_agent=debug` unless `HOSTPULSE_LOG` is set.
    pub fn start(self) -> CliRun {
        assert_eq!(self.args.first().map(OsString::as_os_str), Some(OsStr::new("run")), "start runs `hostpulse run`");
        let dir = tempfile::tempdir().unwrap();
        let path = self.status_file.clone().unwrap_or_else(|| dir.path().join("status.json"));
        let mut this = self.args(["--status-file".as_ref(), path.as_os_str()]);
        if !this.sets("HOSTPULSE_LOG") {
            this.envs.insert(0, ("HOSTPULSE_LOG".into(), Some(RUN_LOG.into())));
        }
        let mut run = CliRun::spawn(this, Some((path, dir)));
        run.wait_until_started();
        run
    }

    /// [`start`](Self::start)s it, lets it run `duration` once it started, stops it with SIGTERM
    /// and returns its exit status, stdout and stderr (fails the test when it never started).
    /// Waiting for the start rather than a fixed time keeps a slow, busy machine from failing the
    /// test.
    pub fn run_for(self, duration: Duration) -> (ExitStatus, String, String) {
        let run = self.start();
        if run.started {
            std::thread::sleep(duration);
        }
        run.stop()
    }

    /// [`run_for`](Self::run_for), and the run ended well with everything it sent acknowledged
    /// and nothing waiting, failed or dropped; returns the samples it took.
    pub fn run_acknowledged(self, duration: Duration) -> u64 {
        let (status, out, err) = self.run_for(duration);
        assert!(status.success(), "hostpulse run failed: {status}\n{err}");
        let [samples, sent, acked, pending, failed, dropped] = parse_summary(&out);
        assert_eq!((acked, pending, failed, dropped), (sent, 0, 0, 0), "{out}");
        samples
    }
}

/// A running `hostpulse`: its output is collected as it goes; `stop`, `terminate`, `wait`,
/// `wait_within` or `kill_9` ends it.
pub struct CliRun {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    status_file: Option<PathBuf>,
    /// It left `connecting` for `publishing` or `retrying` (only [`Hostpulse::start`] waits).
    pub started: bool,
    _dirs: Vec<tempfile::TempDir>,
}

impl CliRun {
    fn spawn(hostpulse: Hostpulse, status: Option<(PathBuf, tempfile::TempDir)>) -> CliRun {
        let (mut cmd, own) = hostpulse.command();
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = &hostpulse.stdin {
            let _ = child.stdin.take().unwrap().write_all(text);
        }
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let (status_file, status_dir) = status.unzip();
        let dirs = own.into_iter().chain(status_dir).collect();
        CliRun { child, stdout, stderr, status_file, started: false, _dirs: dirs }
    }

    fn wait_until_started(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = self.status();
            if let Some(state) = status.as_ref().and_then(|s| s["state"].as_str())
                && state != "connecting"
            {
                self.started = matches!(state, "publishing" | "retrying");
                return;
            }
            if self.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What its `--status-file` holds now (None before the first write, or without one).
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.status_file.as_ref()?).ok()?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the status file is not one JSON object ({e}): {text}")),
        )
    }

    /// Waits (up to `secs`) until the status file satisfies `ok`; returns that status.
    pub fn wait_for_status(&mut self, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let status = self.status();
            if let Some(s) = status.as_ref().filter(|s| ok(s)) {
                return s.clone();
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("hostpulse exited ({exit}) before the status showed {what}; last status {status:?}");
            }
            assert!(Instant::now() < deadline, "the status never showed {what} within {secs} s; last {status:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM (unless it already exited) and returns its exit status, stdout and
    /// stderr.
    pub fn terminate(mut self) -> (ExitStatus, String, String) {
        if self.child.try_wait().unwrap().is_none() {
            let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
            assert!(ok.success());
        }
        self.finish()
    }

    /// [`terminate`](Self::terminate), failing the test when it never started publishing.
    pub fn stop(self) -> (ExitStatus, String, String) {
        let started = self.started;
        let (status, stdout, stderr) = self.terminate();
        assert!(started, "hostpulse never started publishing ({status}):\n{stderr}");
        (status, stdout, stderr)
    }

    /// Waits for it to exit by itself; returns its exit status, stdout and stderr.
    pub fn wait(self) -> (ExitStatus, String, String) {
        self.finish()
    }

    /// [`wait`](Self::wait), but for at most `limit`: a run still going then is killed and fails
    /// the test with what it logged (a command that should end must not hang the suite).
    pub fn wait_within(mut self, limit: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let err = self.kill_9();
                panic!("hostpulse did not exit within {limit:?}:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.finish()
    }

    fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().unwrap();
        (status, self.stdout.join().unwrap(), self.stderr.join().unwrap())
    }

    /// Kills it with SIGKILL (no cleanup at all); returns its stderr.
    pub fn kill_9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr.join().unwrap()
    }
}

/// Reads a pipe to its end on a thread of its own (so a chatty child never blocks on it).
fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Stdout and stderr of a finished command, as one text.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Parses the summary line `hostpulse: N samples taken, N records sent, N acknowledged, N waiting,
/// N failed, N dropped`.
pub fn parse_summary(stdout: &str) -> [u64; 6] {
    let line =
        stdout.lines().find(|l| l.contains("samples taken")).unwrap_or_else(|| panic!("no summary in {stdout:?}"));
    let nums: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    nums.try_into().unwrap_or_else(|_| panic!("summary has not six numbers: {line}"))
}
