//! The process table, read only when something needs it: the `processes` metric is on, the
//! window shows its list (it asks through a [`ProcessView`]), or a high-CPU spell is running
//! (the notification and the tray name its top processes). At most one read per sample; each read
//! takes only the CPU time and memory of processes (on Linux from `/proc/<pid>/stat`, elsewhere
//! with sysinfo), the most expensive reading HostPulse makes (`cargo bench -p hostpulse-agent
//! --bench sampler`: `sample/processes`, `process_table/*`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostpulse_core::processes::{self, ProcessReading, Spell, TopProcess};

/// How long a window's request keeps the table being read at least: a little more than two
/// samples at 1 Hz, so that a status handled late does not drop the list. A request also lasts
/// until the next sample, however long the interval (5 s on battery).
const VIEW_LEASE: Duration = Duration::from_millis(2500);

/// Where process readings come from: the OS ([`SystemProcesses`]), or a test's own.
pub trait ProcessSource: Send + 'static {
    /// Every process now, with its CPU since the previous call (percent of the whole machine;
    /// 0 on the first call) and its resident memory.
    fn read(&mut self) -> Vec<ProcessReading>;
}

/// The OS's process table, through sysinfo: CPU time, memory and the executable's path (read
/// once per process) only; no command lines, no environment, no threads as processes.
pub struct SystemProcesses {
    system: sysinfo::System,
    cores: f64,
    /// Each process's CPU time (ms) at the previous read, and when that read was.
    before: HashMap<u32, u64>,
    read_at: Option<Instant>,
}

impl SystemProcesses {
    /// A table not read yet; `None` when sysinfo cannot be used here.
    pub fn new() -> Option<Self> {
        let system = sysinfo::System::new().ok()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Some(SystemProcesses { system, cores, before: HashMap::new(), read_at: None })
    }
}

/// The name to show: the OS's, or, where the OS cut it (`cut`: Linux keeps 15 bytes of it), the
/// executable's file name it was cut from (`WebKitWebProces` is `WebKitWebProcess`). An
/// executable deleted since it started (an upgrade) still names it.
fn full_name(name: &str, cut: bool, exe: Option<&std::path::Path>) -> Arc<str> {
    let file = exe.and_then(|e| e.file_name()).map(|f| f.to_string_lossy());
    let file = file.as_deref().map(|f| f.strip_suffix(" (deleted)").unwrap_or(f));
    match file {
        Some(file) if cut && file.len() > 15 && String::from_utf8_lossy(&file.as_bytes()[..15]) == name => {
            Arc::from(file)
        }
        _ => Arc::from(name),
    }
}

impl ProcessSource for SystemProcesses {
    fn read(&mut self) -> Vec<ProcessReading> {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, UpdateKind};
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory().with_exe(UpdateKind::OnlyIfNotSet),
        );
        // CPU share = CPU time used since the previous read over the wall time of all cores (the
        // same quantity as CPU_Load); a process first seen now has no figure yet (0).
        let now = Instant::now();
        let wall_ms = self.read_at.replace(now).map(|t| now.duration_since(t).as_secs_f64() * 1000.0);
        let mut before = HashMap::with_capacity(self.before.len());
        let readings = self
            .system
            .processes()
            .iter()
            .filter(|(_, p)| p.thread_kind().is_none())
            .map(|(pid, p)| {
                let (pid, cpu_ms) = (pid.as_u32(), p.accumulated_cpu_time());
                let used = self.before.get(&pid).map(|b| cpu_ms.saturating_sub(*b) as f64);
                before.insert(pid, cpu_ms);
                let cpu = match (used, wall_ms) {
                    (Some(used), Some(wall)) if wall > 0.0 => used / (wall * self.cores) * 100.0,
                    _ => 0.0,
                };
                let name = p.name().to_string_lossy();
                ProcessReading { pid, name: full_name(&name, name.len() == 15, p.exe()), cpu, memory: p.memory() }
            })
            .collect();
        self.before = before;
        readings
    }
}

/// Linux's process table read directly: one read of `/proc/<pid>/stat` per process (name, CPU
/// time, start, resident pages), the executable's name looked up once per process where the
/// kernel cut the name short. Measured (`cargo bench -p hostpulse-agent --bench sampler`,
/// `process_table`): several times cheaper than sysinfo's refresh, which reads more files per
/// process.
#[cfg(target_os = "linux")]
pub struct ProcTable {
    root: std::path::PathBuf,
    /// Each process seen at the previous read, by pid.
    known: HashMap<u32, Known>,
    read_at: Option<Instant>,
    /// CPUs in `/proc/stat`, the ones `CPU_Load` covers (not only those this process may use).
    cores: f64,
    /// The kernel's clock ticks per second and page size (from the auxiliary vector).
    ticks_per_s: f64,
    page_size: u64,
    line: Vec<u8>,
}

#[cfg(target_os = "linux")]
struct Known {
    /// With the pid, tells a reused pid: another start is another process.
    start: u64,
    /// The kernel's name for it, as read (a program that execs or renames itself changes it).
    comm: Vec<u8>,
    name: Arc<str>,
    ticks: u64,
}

/// `AT_PAGESZ` and `AT_CLKTCK` in an auxiliary vector (pairs of native-endian words).
#[cfg(target_os = "linux")]
fn parse_auxv(auxv: &[u8]) -> (Option<u64>, Option<u64>) {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |c: &[u8]| c.try_into().map(|b| usize::from_ne_bytes(b) as u64).unwrap_or(0);
    let (mut page, mut ticks) = (None, None);
    for pair in auxv.chunks_exact(2 * WORD) {
        let (key, value) = (word(&pair[..WORD]), word(&pair[WORD..]));
        match key {
            0 => break, // AT_NULL ends the vector
            6 if value > 0 => page = Some(value),
            17 if value > 0 => ticks = Some(value),
            _ => {}
        }
    }
    (page, ticks)
}

#[cfg(target_os = "linux")]
impl ProcTable {
    /// The machine's table; `None` when `/proc` cannot be read.
    pub fn new() -> Option<Self> {
        let (page, ticks) = std::fs::read("/proc/self/auxv").map(|a| parse_auxv(&a)).unwrap_or_default();
        Self::at(std::path::Path::new("/proc"), page.unwrap_or(4096), ticks.unwrap_or(100))
    }

    /// The table under `root` (a `/proc`), with the kernel's page size and clock ticks per second.
    fn at(root: &std::path::Path, page_size: u64, ticks_per_s: u64) -> Option<Self> {
        std::fs::read_dir(root).ok()?;
        let stat = std::fs::read_to_string(root.join("stat")).unwrap_or_default();
        let cores = hostpulse_core::metrics::CpuTimes::parse_proc_stat_cpus(&stat).map_or(0, |c| c.len() - 1);
        let cores = if cores > 0 { cores } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
        Some(ProcTable {
            root: root.to_owned(),
            known: HashMap::new(),
            read_at: None,
            cores: cores as f64,
            ticks_per_s: ticks_per_s as f64,
            page_size,
            line: Vec::with_capacity(512),
        })
    }
}

#[cfg(target_os = "linux")]
impl ProcessSource for ProcTable {
    fn read(&mut self) -> Vec<ProcessReading> {
        use std::io::Read as _;
        let now = Instant::now();
        let wall_s = self.read_at.replace(now).map(|t| now.duration_since(t).as_secs_f64());
        let Ok(dir) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut known = HashMap::with_capacity(self.known.len());
        let mut readings = Vec::with_capacity(self.known.len());
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let dir = entry.path();
            self.line.clear();
            // A process that ended meanwhile has no file any more: it is simply not listed. The
            // name may hold any bytes (and the kernel may have cut a character in two): bytes.
            let read = std::fs::File::open(dir.join("stat")).and_then(|mut f| f.read_to_end(&mut self.line));
            if read.is_err() {
                continue;
            }
            let (Some(open), Some(close)) =
                (self.line.iter().position(|b| *b == b'('), self.line.iter().rposition(|b| *b == b')'))
            else {
                continue;
            };
            let comm = self.line.get(open + 1..close).unwrap_or_default().to_vec();
            let text = String::from_utf8_lossy(&self.line);
            let Some(stat) = processes::parse_pid_stat(&text) else { continue };
            let before = self.known.remove(&pid).filter(|k| k.start == stat.start);
            let cpu = match (&before, wall_s) {
                (Some(b), Some(wall)) if wall > 0.0 => {
                    stat.ticks.saturating_sub(b.ticks) as f64 / self.ticks_per_s / (wall * self.cores) * 100.0
                }
                _ => 0.0,
            };
            let name = match before {
                Some(b) if b.comm == comm => b.name,
                // New, or renamed (exec): the executable is looked at only for a cut name.
                _ if comm.len() == 15 => {
                    full_name(stat.comm, true, std::fs::read_link(dir.join("exe")).ok().as_deref())
                }
                _ => Arc::from(stat.comm),
            };
            readings.push(ProcessReading {
                pid,
                name: name.clone(),
                cpu,
                memory: stat.rss_pages.saturating_mul(self.page_size),
            });
            known.insert(pid, Known { start: stat.start, comm, name, ticks: stat.ticks });
        }
        self.known = known;
        readings
    }
}

/// This OS's process table: on Linux [`ProcTable`], elsewhere [`SystemProcesses`] (sysinfo).
pub fn os_table() -> Option<Box<dyn ProcessSource>> {
    #[cfg(target_os = "linux")]
    if let Some(t) = ProcTable::new() {
        return Some(Box::new(t));
    }
    SystemProcesses::new().map(|t| Box::new(t) as Box<dyn ProcessSource>)
}

/// The window's handle on the process list: asking for it (the app does with each status while
/// the window exists) keeps the table being read at the list's pace, so the list is live while
/// the window is open and costs nothing after.
#[derive(Clone, Default)]
pub struct ProcessView {
    inner: Arc<Mutex<ViewState>>,
}

#[derive(Default)]
struct ViewState {
    latest: Vec<TopProcess>,
    wanted_until: Option<Instant>,
    /// Asked for since the previous sample.
    asked: bool,
}

impl ProcessView {
    /// The latest top processes (empty until the second sample after the first request: the
    /// first read only primes); keeps the table being read until the next sample, and for at
    /// least [`VIEW_LEASE`].
    pub fn top(&self) -> Vec<TopProcess> {
        let mut s = self.inner.lock().expect("not poisoned");
        s.wanted_until = Some(Instant::now() + VIEW_LEASE);
        s.asked = true;
        s.latest.clone()
    }

    /// Whether the window asks for the list; once it stops, the list is forgotten (a window
    /// opened later does not see an old one).
    fn wanted(&self, now: Instant) -> bool {
        let mut s = self.inner.lock().expect("not poisoned");
        let wanted = std::mem::take(&mut s.asked) || s.wanted_until.is_some_and(|t| t > now);
        if !wanted && !s.latest.is_empty() {
            s.latest = Vec::new();
        }
        wanted
    }

    fn show(&self, top: Vec<TopProcess>) {
        self.inner.lock().expect("not poisoned").latest = top;
    }
}

/// How many processes the window lists.
pub const VIEW_COUNT: usize = 8;

/// How often the window's list is refreshed, as `top` and GNOME System Monitor refresh theirs.
/// When only the window needs the table it is read at this pace too, so each share is the
/// average over those seconds (while a spell or the metric reads at each sample, over the last
/// interval), and the open window repaints (and the agent reads the table) a third as often.
pub const VIEW_PACE: Duration = Duration::from_secs(3);

/// Reads the process table when needed and keeps what each need takes from it.
pub struct ProcessWatch {
    source: Option<Box<dyn ProcessSource>>,
    /// Processes the metric publishes (0: the metric is off).
    pub(crate) metric_count: usize,
    /// The CPU load at or above which a spell is tracked.
    pub(crate) spell_threshold: Option<f64>,
    spell: Option<Spell>,
    view: ProcessView,
    /// When the table was last read (`None`: never, or not needed since).
    last_read: Option<i64>,
    /// When the window's list was last refreshed (`None`: not since it was last asked for).
    view_shown: Option<i64>,
    /// Reads of the table, for tests and benchmarks.
    pub(crate) reads: u64,
}

/// What one sample took from the table.
#[derive(Debug, Default, PartialEq)]
pub struct Taken {
    /// The top `metric_count` processes now, for the metric.
    pub metric: Vec<TopProcess>,
}

impl ProcessWatch {
    /// A watch over `source` (`None`: this OS has no process table; nothing is ever read).
    pub fn new(source: Option<Box<dyn ProcessSource>>) -> Self {
        ProcessWatch {
            source,
            metric_count: 0,
            spell_threshold: None,
            spell: None,
            view: ProcessView::default(),
            last_read: None,
            view_shown: None,
            reads: 0,
        }
    }

    /// Whether a process table can be read here.
    pub fn available(&self) -> bool {
        self.source.is_some()
    }

    /// The window's handle.
    pub fn view(&self) -> ProcessView {
        self.view.clone()
    }

    /// The top processes of the running spell (empty when none runs).
    pub fn spell_top(&self) -> Vec<TopProcess> {
        self.spell.as_ref().map(|s| s.top(processes::SPELL_COUNT)).unwrap_or_default()
    }

    /// Called once per sample taken at `at_ns` with the CPU load `load`: reads the table if
    /// anything needs it, and hands each need its part.
    pub fn on_sample(&mut self, at_ns: i64, load: Option<f64>) -> Taken {
        let in_spell = match (self.spell_threshold, load) {
            (Some(threshold), Some(load)) => load >= threshold,
            // A sample without a CPU figure neither starts nor ends a spell (nor does the
            // notifier's clock, which keeps the last value).
            (Some(_), None) => self.spell.is_some(),
            (None, _) => false,
        };
        if !in_spell {
            self.spell = None;
        }
        let viewed = self.view.wanted(Instant::now());
        if !viewed {
            self.view_shown = None;
        }
        // Due a little early, so that a sample's jitter does not put the refresh a whole
        // interval later.
        let pace = VIEW_PACE.as_nanos() as i64 * 9 / 10;
        // A wall clock set back (at_ns before the last refresh) makes it due too, rather than
        // holding the list until the clock is back where it was.
        let view_due = viewed && self.view_shown.is_none_or(|t| at_ns < t || at_ns - t >= pace);
        let Some(source) = self.source.as_mut().filter(|_| in_spell || view_due || self.metric_count > 0) else {
            // The window waiting for its next refresh keeps the time of the last read (its next
            // figures cover the seconds since); otherwise reading pauses.
            if !viewed {
                self.last_read = None;
            }
            return Taken::default();
        };
        let mut readings = source.read();
        self.reads += 1;
        // CPU figures cover the time since the previous read. After a pause in reading (nothing
        // needed the table) that is the whole pause: no figures then, this read only primes.
        let since = self.last_read.replace(at_ns).map(|t| at_ns.saturating_sub(t).max(0) as u64);
        if since.is_none() {
            readings.iter_mut().for_each(|r| r.cpu = 0.0);
        }
        if in_spell {
            let spell = self.spell.get_or_insert_with(Spell::default);
            if let Some(ns) = since {
                spell.add(&readings, ns);
            }
        }
        // A read that only primed has no figures to show: the list is refreshed at the next
        // sample, then at the window's pace.
        if view_due && since.is_some() {
            self.view.show(processes::top(&readings, VIEW_COUNT));
            self.view_shown = Some(at_ns);
        }
        Taken { metric: processes::top(&readings, self.metric_count) }
    }
}

/// An injected process table for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Hands out the readings its handle holds at each read.
    pub(crate) struct Scripted {
        readings: Arc<Mutex<Vec<ProcessReading>>>,
    }

    impl Scripted {
        /// A table holding `readings`, and the handle to change them.
        pub(crate) fn new(readings: Vec<ProcessReading>) -> (Self, Arc<Mutex<Vec<ProcessReading>>>) {
            let readings = Arc::new(Mutex::new(readings));
            (Scripted { readings: readings.clone() }, readings)
        }
    }

    impl ProcessSource for Scripted {
        fn read(&mut self) -> Vec<ProcessReading> {
            self.readings.lock().unwrap().clone()
        }
    }

    /// Process `pid` named `name` at `cpu` %, with `pid` MiB of memory.
    pub(crate) fn reading(pid: u32, name: &str, cpu: f64) -> ProcessReading {
        ProcessReading { pid, name: name.into(), cpu, memory: u64::from(pid) << 20 }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Scripted, reading as p};
    use super::*;

    const S: i64 = 1_000_000_000;

    /// The window stopped asking: its lease is over and it has not asked since the last sample.
    fn lapse(w: &ProcessWatch) {
        let mut s = w.view.inner.lock().unwrap();
        s.wanted_until = Some(Instant::now());
        s.asked = false;
    }

    fn watch() -> (ProcessWatch, Arc<Mutex<Vec<ProcessReading>>>) {
        let (source, readings) = Scripted::new(vec![p(1, "idle", 0.5), p(2, "busy", 40.0)]);
        (ProcessWatch::new(Some(Box::new(source))), readings)
    }

    #[test]
    fn nothing_needs_the_table_so_it_is_never_read() {
        let (mut w, _) = watch();
        w.spell_threshold = Some(90.0);
        for k in 0..10 {
            assert_eq!(w.on_sample(k * S, Some(50.0)), Taken::default());
        }
        assert_eq!(w.reads, 0);
        assert!(w.spell_top().is_empty());
    }

    #[test]
    fn a_spell_is_read_at_each_sample_while_it_lasts_and_forgotten_after() {
        let (mut w, readings) = watch();
        w.spell_threshold = Some(90.0);
        w.on_sample(0, Some(50.0));
        w.on_sample(S, Some(95.0));
        assert!(w.spell_top().is_empty(), "the first read of a spell only primes");
        w.on_sample(2 * S, Some(95.0));
        *readings.lock().unwrap() = vec![p(2, "busy", 40.0), p(3, "new one", 80.0)];
        w.on_sample(3 * S, Some(96.0));
        let top = w.spell_top();
        // `new one` ran one second of two at 80 %; a tie with `busy` is broken by memory.
        assert_eq!(
            top.iter().map(|t| (t.name.as_str(), t.cpu)).collect::<Vec<_>>(),
            [("new one", 40.0), ("busy", 40.0), ("idle", 0.3)]
        );
        assert_eq!(w.reads, 3);
        w.on_sample(4 * S, Some(10.0));
        assert!(w.spell_top().is_empty(), "the spell ended");
        assert_eq!(w.reads, 3, "and the table is left alone again");
        w.on_sample(5 * S, None);
        assert_eq!(w.reads, 3, "no reading is no spell");
    }

    #[test]
    fn the_metric_takes_its_count_at_each_sample_and_the_view_only_while_asked() {
        let (mut w, _) = watch();
        w.metric_count = 1;
        let taken = w.on_sample(0, Some(5.0));
        assert_eq!(taken.metric.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["busy"]);
        assert_eq!(w.reads, 1);
        w.metric_count = 0;
        let view = w.view();
        assert!(view.top().is_empty(), "nothing read for the view yet");
        w.on_sample(S, Some(5.0));
        assert_eq!(view.top().iter().map(|t| t.pid).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(w.reads, 2);
        lapse(&w);
        w.on_sample(2 * S, Some(5.0));
        assert_eq!(w.reads, 2, "the window stopped asking");
    }

    #[test]
    fn the_window_alone_has_the_table_read_at_its_pace_with_figures_over_the_seconds_between() {
        let (mut w, readings) = watch();
        let view = w.view();
        let ms = 1_000_000;
        view.top();
        w.on_sample(0, Some(5.0));
        assert!(view.top().is_empty(), "the first read only primes: nothing to show");
        w.on_sample(S + 3 * ms, Some(5.0));
        assert_eq!(view.top()[0].cpu, 40.0, "then a list at once, at the next sample");
        assert_eq!(w.reads, 2);
        *readings.lock().unwrap() = vec![p(3, "later", 70.0)];
        w.on_sample(2 * S, Some(5.0));
        w.on_sample(3 * S + 2 * ms, Some(5.0));
        assert_eq!((w.reads, view.top()[0].name.as_str()), (2, "busy"), "not read between refreshes");
        // Due a little early: a sample 2.98 s after the refresh refreshes it.
        w.on_sample(4 * S - 20 * ms, Some(5.0));
        assert_eq!((w.reads, view.top()[0].name.as_str()), (3, "later"));
        assert_eq!(w.last_read, Some(4 * S - 20 * ms));
        // A spell reads at each sample; the window's list still follows its own pace.
        w.spell_threshold = Some(50.0);
        *readings.lock().unwrap() = vec![p(4, "spinner", 99.0)];
        w.on_sample(5 * S, Some(95.0));
        w.on_sample(6 * S, Some(95.0));
        assert_eq!((w.reads, view.top()[0].name.as_str()), (5, "later"));
        w.on_sample(7 * S, Some(95.0));
        assert_eq!((w.reads, view.top()[0].name.as_str()), (6, "spinner"));
    }

    #[test]
    fn without_a_process_table_nothing_is_read_or_shown() {
        let mut w = ProcessWatch::new(None);
        w.metric_count = 3;
        w.spell_threshold = Some(0.0);
        assert_eq!(w.on_sample(0, Some(50.0)), Taken::default());
        assert!(!w.available() && w.spell_top().is_empty());
    }

    #[test]
    fn names_the_os_cut_short_are_completed_from_the_executable() {
        let path = std::path::Path::new;
        let exe = path("/usr/lib/webkit/WebKitWebProcess");
        assert_eq!(&*full_name("WebKitWebProces", true, Some(exe)), "WebKitWebProcess");
        let deleted = path("/usr/lib/webkit/WebKitWebProcess (deleted)");
        assert_eq!(&*full_name("WebKitWebProces", true, Some(deleted)), "WebKitWebProcess", "upgraded meanwhile");
        assert_eq!(&*full_name("bash", false, Some(path("/usr/bin/bash"))), "bash");
        assert_eq!(&*full_name("kworker/0:1-eve", true, None), "kworker/0:1-eve", "no executable: as the OS says");
        let other = path("/usr/bin/python3.11");
        assert_eq!(&*full_name("my-long-service", true, Some(other)), "my-long-service", "renamed: the OS's name");
        // 15 bytes cut in the middle of a two-byte character: the lossy name ends in U+FFFD.
        let cyrillic = "ааааааааа"; // 9 characters, 18 bytes
        let cut = String::from_utf8_lossy(&cyrillic.as_bytes()[..15]).into_owned();
        assert_eq!(&*full_name(&cut, true, Some(&path("/opt").join(cyrillic))), cyrillic);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_auxiliary_vector_gives_the_page_size_and_the_clock_ticks() {
        let words = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs.iter().flat_map(|(k, v)| k.to_ne_bytes().into_iter().chain(v.to_ne_bytes())).collect()
        };
        assert_eq!(parse_auxv(&words(&[(33, 7), (6, 16384), (17, 250), (0, 0)])), (Some(16384), Some(250)));
        assert_eq!(parse_auxv(&words(&[(0, 0), (6, 16384)])), (None, None), "nothing after AT_NULL");
        assert_eq!(parse_auxv(&[1, 2, 3]), (None, None), "a torn vector gives nothing, no panic");
        let real = parse_auxv(&std::fs::read("/proc/self/auxv").unwrap());
        assert!(real.0.is_some_and(|p| p.is_power_of_two()) && real.1.is_some(), "{real:?}");
    }

    /// A `/proc` of our own: each process a directory with a `stat` file and an `exe` link.
    #[cfg(target_os = "linux")]
    fn fake_proc(processes: &[(u32, &[u8], u64, u64, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("stat"), "cpu  1 0 1 1 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0\n")
            .unwrap();
        for (pid, comm, ticks, start, exe) in processes {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            let mut line = format!("{pid} (").into_bytes();
            line.extend_from_slice(comm);
            line.extend_from_slice(
                format!(") S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 {start} 1000 25 0\n").as_bytes(),
            );
            std::fs::write(dir.join("stat"), line).unwrap();
            std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
        }
        root
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_proc_reader_counts_cpu_per_process_and_tells_a_reused_pid_and_a_renamed_program() {
        let long = "a-rather-long-program-name";
        let root = fake_proc(&[(10, b"a-rather-long-p", 100, 5, long), (11, b"\xd0\xb0\xd0", 0, 6, "/bin/x")]);
        let mut t = ProcTable::at(root.path(), 4096, 100).unwrap();
        let first = t.read();
        let get = |rs: &[ProcessReading], pid| rs.iter().find(|r| r.pid == pid).unwrap().clone();
        assert_eq!(first.len(), 2, "a name with a torn character is listed too: {first:?}");
        assert_eq!(&*get(&first, 10).name, long, "completed from the executable");
        assert_eq!(&*get(&first, 11).name, "а\u{fffd}");
        assert_eq!((get(&first, 10).cpu, get(&first, 10).memory), (0.0, 25 * 4096), "no CPU figure on the first read");
        // 0.2 s later pid 10 used 20 more ticks (0.2 s of CPU: one of the two cores); pid 11 is
        // now another program (exec) and pid 12 a reused pid of 11's old start.
        std::thread::sleep(Duration::from_millis(200));
        let root2 = fake_proc(&[
            (10, b"a-rather-long-p", 120, 5, long),
            (11, b"sh", 50, 6, "/bin/sh"),
            (13, b"new", 70, 9, "/bin/new"),
        ]);
        t.root = root2.path().to_owned();
        let second = t.read();
        let busy = get(&second, 10);
        assert!((40.0..=51.0).contains(&busy.cpu), "20 ticks over ~0.2 s of two cores: {busy:?}");
        assert_eq!(&*get(&second, 11).name, "sh", "renamed: named again");
        assert_eq!(get(&second, 13).cpu, 0.0, "new: no figure yet");
        let root3 = fake_proc(&[(10, b"a-rather-long-p", 999, 77, long)]);
        t.root = root3.path().to_owned();
        assert_eq!(get(&t.read(), 10).cpu, 0.0, "pid 10 started again (another start): no figure from the old one");
    }

    #[test]
    fn after_a_pause_in_reading_the_first_read_has_no_cpu_figures_and_a_sample_without_cpu_keeps_the_spell() {
        let (mut w, readings) = watch();
        w.metric_count = 2;
        assert_eq!(w.on_sample(0, Some(5.0)).metric.iter().map(|t| t.cpu).collect::<Vec<_>>(), [0.0, 0.0]);
        assert_eq!(w.on_sample(S, Some(5.0)).metric[0].cpu, 40.0);
        w.metric_count = 0;
        w.on_sample(2 * S, Some(5.0)); // not read
        w.metric_count = 2;
        assert!(w.on_sample(3 * S, Some(5.0)).metric.iter().all(|t| t.cpu == 0.0), "the pause is not averaged in");
        w.metric_count = 0;
        w.spell_threshold = Some(30.0);
        w.on_sample(4 * S, Some(50.0));
        w.on_sample(5 * S, Some(50.0));
        assert!(!w.spell_top().is_empty());
        *readings.lock().unwrap() = vec![p(2, "busy", 40.0)];
        w.on_sample(6 * S, None);
        assert_eq!(w.spell_top()[0].name, "busy", "a sample without a CPU figure keeps the spell");
        assert_eq!(w.reads, 6);
    }

    #[test]
    fn a_window_asking_with_each_status_keeps_its_list_at_a_5_s_interval_and_after_the_clock_is_set_back() {
        let (mut w, _) = watch();
        let view = w.view();
        let asked_long_ago = |w: &ProcessWatch| {
            view.top();
            // 5 s between samples on battery: the time lease is long over at the next one.
            w.view.inner.lock().unwrap().wanted_until = Some(Instant::now());
        };
        asked_long_ago(&w);
        w.on_sample(0, Some(5.0));
        asked_long_ago(&w);
        w.on_sample(5 * S, Some(5.0));
        assert_eq!((w.reads, view.top()[0].cpu), (2, 40.0), "asked since the last sample: still wanted");
        // The clock is set back an hour: the list is refreshed at the next sample all the same.
        asked_long_ago(&w);
        w.on_sample(5 * S - 3600 * S, Some(5.0));
        assert_eq!(w.reads, 3);
        assert_eq!(w.view_shown, Some(5 * S - 3600 * S));
        lapse(&w);
        w.on_sample(10 * S, Some(5.0));
        assert_eq!(w.reads, 3, "not asked since: not read");
        assert!(view.top().is_empty(), "and the list is forgotten");
    }

    #[test]
    fn a_window_opened_again_does_not_see_the_last_session_s_list() {
        let (mut w, _) = watch();
        let view = w.view();
        view.top();
        w.on_sample(0, Some(5.0));
        w.on_sample(S, Some(5.0));
        assert!(!view.top().is_empty());
        lapse(&w);
        w.on_sample(2 * S, Some(5.0));
        assert!(view.top().is_empty(), "the lease lapsed: the list went with it");
        view.top();
        w.on_sample(3 * S, Some(5.0));
        assert!(view.top().is_empty(), "asked again: the first read primes, no figures of the pause");
        w.on_sample(4 * S, Some(5.0));
        assert_eq!(view.top()[0].cpu, 40.0, "and the next sample shows a list at once");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn both_tables_agree_on_a_process_of_steady_size() {
        // A child that only sleeps: its memory stays put between the two reads (this test
        // process's own changes with the tests running beside it).
        // Ended when the test ends, however it ends (a panicking table read included).
        struct Sleeper(std::process::Child);
        impl Drop for Sleeper {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Sleeper(std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs"));
        let pid = child.0.id();
        // Asleep in `sleep` itself: its loader has finished mapping it.
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..400 {
            if std::fs::read_to_string(&stat).is_ok_and(|s| s.contains("(sleep) S ")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let find = |table: &mut dyn ProcessSource| table.read().into_iter().find(|r| r.pid == pid);
        let (mut ours, mut sysinfo) = (ProcTable::new().unwrap(), SystemProcesses::new().unwrap());
        let (a, b) = (find(&mut ours), find(&mut sysinfo));
        drop(child);
        let (a, b) = (a.expect("listed by ours"), b.expect("listed by sysinfo"));
        assert_eq!((&*a.name, &*b.name), ("sleep", "sleep"));
        // `stat`'s resident figure is the kernel's quick approximation of its per-CPU counters
        // (sysinfo reads the summed one): they differ by up to a few hundred KiB, which is 10 %
        // of a process this small; a wrong unit (pages, KiB) would be 1000 times off.
        let (ma, mb) = (a.memory as f64, b.memory as f64);
        assert!(mb > 0.0 && (ma - mb).abs() < (0.1 * mb).max(1024.0 * 1024.0), "resident memory: {ma} vs {mb}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_real_table_names_a_busy_thread_of_this_process_by_its_name() {
        let mut table = ProcTable::new().expect("Linux has a process table");
        let first = table.read();
        let me = std::process::id();
        assert!(first.iter().any(|r| r.pid == me), "this process is listed");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let second = table.read();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        let mine = second.iter().find(|r| r.pid == me).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(&*mine.name, exe.file_name().unwrap().to_str().unwrap(), "the test binary's whole name");
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        assert!(mine.cpu >= 80.0 / cores && mine.cpu <= 100.0, "one spinning thread: {mine:?}");
        assert!(mine.memory > 1 << 20, "{mine:?}");
        assert!(second.iter().all(|r| r.pid != 0 && r.cpu.is_finite()), "no threads as processes, no NaN");
        assert_eq!(second.iter().filter(|r| r.pid == me).count(), 1, "threads are not listed as processes");
    }
}
