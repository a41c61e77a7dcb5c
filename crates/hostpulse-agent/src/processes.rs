//! The process table, read only when something needs it: the `processes` metric is on, the
//! window shows its list (it asks through a [`ProcessView`]), or a high-CPU spell is running
//! (the notification and the tray name its top processes). At most one read per sample; each read
//! refreshes only the CPU and memory of processes (sysinfo), the most expensive reading HostPulse
//! makes (`cargo bench -p hostpulse-agent --bench sampler`, `processes`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostpulse_core::processes::{self, ProcessReading, Spell, TopProcess};

/// How long a window's request keeps the table being read: a little more than its 1 s poll.
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

/// The name to show: the OS's, or, where the OS cut it (Linux keeps 15 bytes of it), the
/// executable's file name it was cut from (`WebKitWebProces` is `WebKitWebProcess`).
fn full_name(name: &str, exe: Option<&std::path::Path>) -> Arc<str> {
    let file = exe.and_then(|e| e.file_name()).map(|f| f.to_string_lossy());
    match file {
        Some(file) if name.len() == 15 && file.len() > 15 && file.starts_with(name) => Arc::from(&*file),
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
                ProcessReading { pid, name: full_name(&p.name().to_string_lossy(), p.exe()), cpu, memory: p.memory() }
            })
            .collect();
        self.before = before;
        readings
    }
}

/// Linux's process table read directly: one read of `/proc/<pid>/stat` per process (name, CPU
/// time, start, resident pages), the executable's name looked up once per process where the OS
/// cut the name short. Measured (`cargo bench -p hostpulse-agent --bench sampler`,
/// `process_table`): several times cheaper than sysinfo's refresh, which reads more files per
/// process.
#[cfg(target_os = "linux")]
pub struct ProcTable {
    /// Each process seen at the previous read: its start, its name, its CPU ticks then.
    known: HashMap<u32, Known>,
    read_at: Option<Instant>,
    cores: f64,
    /// The kernel's clock ticks per second and page size (from the auxiliary vector).
    ticks_per_s: f64,
    page_size: u64,
    line: String,
}

#[cfg(target_os = "linux")]
struct Known {
    start: u64,
    name: Arc<str>,
    ticks: u64,
}

/// `AT_PAGESZ` and `AT_CLKTCK` from `/proc/self/auxv` (pairs of native-endian words), or Linux's
/// usual 4096 and 100.
#[cfg(target_os = "linux")]
fn page_size_and_clock_ticks() -> (u64, u64) {
    const WORD: usize = std::mem::size_of::<usize>();
    let (mut page, mut ticks) = (4096, 100);
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        let word = |c: &[u8]| usize::from_ne_bytes(c.try_into().expect("one word")) as u64;
        for pair in auxv.chunks_exact(2 * WORD) {
            match word(&pair[..WORD]) {
                6 if word(&pair[WORD..]) > 0 => page = word(&pair[WORD..]),
                17 if word(&pair[WORD..]) > 0 => ticks = word(&pair[WORD..]),
                _ => {}
            }
        }
    }
    (page, ticks)
}

#[cfg(target_os = "linux")]
impl ProcTable {
    /// A table not read yet; `None` when `/proc` cannot be read.
    pub fn new() -> Option<Self> {
        std::fs::read_dir("/proc").ok()?;
        let (page_size, ticks) = page_size_and_clock_ticks();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Some(ProcTable {
            known: HashMap::new(),
            read_at: None,
            cores,
            ticks_per_s: ticks as f64,
            page_size,
            line: String::with_capacity(512),
        })
    }
}

#[cfg(target_os = "linux")]
impl ProcessSource for ProcTable {
    fn read(&mut self) -> Vec<ProcessReading> {
        use std::io::Read as _;
        let now = Instant::now();
        let wall_s = self.read_at.replace(now).map(|t| now.duration_since(t).as_secs_f64());
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut known = HashMap::with_capacity(self.known.len());
        let mut readings = Vec::with_capacity(self.known.len());
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            self.line.clear();
            // A process that ended meanwhile has no file any more: it is simply not listed.
            let read =
                std::fs::File::open(format!("/proc/{pid}/stat")).and_then(|mut f| f.read_to_string(&mut self.line));
            let Some(stat) = read.ok().and_then(|_| processes::parse_pid_stat(&self.line)) else { continue };
            let before = self.known.remove(&pid).filter(|k| k.start == stat.start);
            let cpu = match (&before, wall_s) {
                (Some(b), Some(wall)) if wall > 0.0 => {
                    stat.ticks.saturating_sub(b.ticks) as f64 / self.ticks_per_s / (wall * self.cores) * 100.0
                }
                _ => 0.0,
            };
            let name = match before {
                Some(b) => b.name,
                None => full_name(stat.comm, std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref()),
            };
            readings.push(ProcessReading {
                pid,
                name: name.clone(),
                cpu,
                memory: stat.rss_pages.saturating_mul(self.page_size),
            });
            known.insert(pid, Known { start: stat.start, name, ticks: stat.ticks });
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

/// The window's handle on the process list: asking for it keeps the table being read at each
/// sample for a few seconds, so the list is live while the window polls and costs nothing after.
#[derive(Clone, Default)]
pub struct ProcessView {
    inner: Arc<Mutex<ViewState>>,
}

#[derive(Default)]
struct ViewState {
    latest: Vec<TopProcess>,
    wanted_until: Option<Instant>,
}

impl ProcessView {
    /// The latest top processes (empty until the next sample has read the table); keeps the
    /// table being read for a few more seconds.
    pub fn top(&self) -> Vec<TopProcess> {
        let mut s = self.inner.lock().expect("not poisoned");
        s.wanted_until = Some(Instant::now() + VIEW_LEASE);
        s.latest.clone()
    }

    fn wanted(&self, now: Instant) -> bool {
        self.inner.lock().expect("not poisoned").wanted_until.is_some_and(|t| t > now)
    }

    fn show(&self, top: Vec<TopProcess>) {
        self.inner.lock().expect("not poisoned").latest = top;
    }
}

/// How many processes the window lists.
pub const VIEW_COUNT: usize = 8;

/// Reads the process table when needed and keeps what each need takes from it.
pub struct ProcessWatch {
    source: Option<Box<dyn ProcessSource>>,
    /// Processes the metric publishes (0: the metric is off).
    pub(crate) metric_count: usize,
    /// The CPU load at or above which a spell is tracked.
    pub(crate) spell_threshold: Option<f64>,
    spell: Option<Spell>,
    view: ProcessView,
    /// When the table was last read (`None`: never, or not at the previous sample).
    last_read: Option<i64>,
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
        let in_spell = self.spell_threshold.zip(load).is_some_and(|(t, v)| v >= t);
        if !in_spell {
            self.spell = None;
        }
        let viewed = self.view.wanted(Instant::now());
        let Some(source) = self.source.as_mut().filter(|_| in_spell || viewed || self.metric_count > 0) else {
            self.last_read = None;
            return Taken::default();
        };
        let readings = source.read();
        self.reads += 1;
        // CPU figures cover the time since the previous read: they count for a spell only when
        // that read was this spell's previous sample (the first read of a spell primes).
        let since = self.last_read.replace(at_ns).map(|t| at_ns.saturating_sub(t).max(0) as u64);
        if in_spell {
            let spell = self.spell.get_or_insert_with(Spell::default);
            if let Some(ns) = since {
                spell.add(&readings, ns);
            }
        }
        if viewed {
            self.view.show(processes::top(&readings, VIEW_COUNT));
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
        w.view.inner.lock().unwrap().wanted_until = Some(Instant::now());
        w.on_sample(2 * S, Some(5.0));
        assert_eq!(w.reads, 2, "the window stopped asking");
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
        let exe = std::path::Path::new("/usr/lib/webkit/WebKitWebProcess");
        assert_eq!(&*full_name("WebKitWebProces", Some(exe)), "WebKitWebProcess");
        assert_eq!(&*full_name("bash", Some(std::path::Path::new("/usr/bin/bash"))), "bash");
        assert_eq!(&*full_name("kworker/0:1-eve", None), "kworker/0:1-eve", "no executable: as the OS says");
        let other = std::path::Path::new("/usr/bin/python3.11");
        assert_eq!(&*full_name("my-long-service", Some(other)), "my-long-service", "renamed: the OS's name");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn page_size_and_clock_ticks_come_from_the_kernel() {
        let (page, ticks) = page_size_and_clock_ticks();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert_eq!(ticks, 100, "USER_HZ on this machine");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn both_tables_agree_on_this_process() {
        let mine = |table: &mut dyn ProcessSource| {
            let me = std::process::id();
            table.read().into_iter().find(|r| r.pid == me).expect("this process is listed")
        };
        let (mut ours, mut sysinfo) = (ProcTable::new().unwrap(), SystemProcesses::new().unwrap());
        let (a, b) = (mine(&mut ours), mine(&mut sysinfo));
        assert_eq!(a.name, b.name);
        let (ma, mb) = (a.memory as f64, b.memory as f64);
        assert!((ma - mb).abs() < 0.1 * mb, "resident memory: {ma} vs {mb}");
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
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        assert!(mine.cpu >= 80.0 / cores && mine.cpu <= 100.0, "one spinning thread: {mine:?}");
        assert!(mine.memory > 1 << 20, "{mine:?}");
        assert!(second.iter().all(|r| r.pid != 0 && r.cpu.is_finite()), "no threads as processes, no NaN");
        assert_eq!(second.iter().filter(|r| r.pid == me).count(), 1, "threads are not listed as processes");
    }
}
