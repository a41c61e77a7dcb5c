//! Where rows come from: the real CPU sampler (sysinfo), and a scripted one for tests and
//! benchmarks. The agent calls [`Sampler::sample`] once per interval.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use hostpulse_core::metrics::{
    self, BATTERY_IDS, CPU_TIMES_IDS, Counter, CpuTimes, DISK_IDS, Inventory, LOAD_IDS, MEMORY_IDS, Metric, SWAP_ID,
};
use hostpulse_core::processes::TopProcess;
use hostpulse_core::sample::{CPU_LOAD, Row, cpu_percent};
use hostpulse_core::wire::ParameterDefinition;
use thiserror::Error;

use crate::power::{Batteries, PowerSource};
use crate::processes::{ProcessSource, ProcessView, ProcessWatch};

/// Why a sample could not be taken. Never fatal: the agent logs it and samples again next time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SampleError {
    /// The OS gave no usable reading.
    #[error("no CPU reading: {0}")]
    Unreadable(String),
    /// A scripted sampler ran out of rows.
    #[error("the scripted sampler has no more rows")]
    Exhausted,
}

/// A source of rows.
pub trait Sampler: Send + 'static {
    /// Measures now and returns the row, stamped with the time of measurement.
    fn sample(&mut self) -> Result<Row, SampleError>;

    /// Switches to publishing `metrics` (network: the interfaces in `include`, all but loopback
    /// when empty) and returns the definitions of what it will publish. A sampler with a fixed
    /// signal returns `None` and the configured definitions stand.
    fn select(&mut self, metrics: &[Metric], include: &[String]) -> Option<Vec<ParameterDefinition>> {
        let _ = (metrics, include);
        None
    }

    /// What to watch besides the metrics: how many processes the `processes` metric publishes,
    /// and the CPU load from which a spell's top processes are tracked (`None`: not tracked).
    /// Takes effect with the next [`select`](Sampler::select).
    fn watch(&mut self, process_count: usize, spell_threshold: Option<f64>) {
        let _ = (process_count, spell_threshold);
    }

    /// The top processes of the running high-CPU spell (empty when none runs).
    fn spell_top(&self) -> Vec<TopProcess> {
        Vec::new()
    }

    /// Whether the machine runs on its battery now (`None`: cannot tell, or not this sampler's
    /// business).
    fn on_battery(&mut self) -> Option<bool> {
        None
    }
}

/// Wall-clock now, ns since the Unix epoch.
pub fn now_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Nanoseconds on the monotonic clock (since its first use in this process): what rates are
/// timed with, so that a wall clock set back or forward neither stops them nor makes them spike.
fn monotonic_ns() -> i64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    i64::try_from(ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// The host's metrics from the catalog ([`hostpulse_core::metrics`]), read with sysinfo (and
/// `/proc/stat` and `/proc/net/dev` on Linux), the battery with starship-battery. `CPU_Load` is total
/// CPU busy percentage across all cores since the previous call: the quantity of
/// `psutil.cpu_percent(interval=...)`, busy = everything but idle and iowait. On Linux one read
/// of `/proc/stat` per sample gives it, the per-core loads and the time split, at any interval
/// (sysinfo would repeat its last reading below 200 ms); elsewhere sysinfo measures. A metric
/// this machine cannot read is skipped with one log line when selected; a reading that fails
/// later is a `null` in that row.
pub struct HostSampler {
    system: sysinfo::System,
    metrics: Vec<Metric>,
    inventory: Inventory,
    /// Linux: the last `/proc/stat` reading, the machine first, then each core (`None` where
    /// sysinfo measures the CPU instead).
    proc_cpus: Option<Vec<CpuTimes>>,
    /// From the last sample's reading: each core's busy share and the user/system/iowait split.
    core_loads: Vec<Option<f64>>,
    cpu_split: Option<[f64; 3]>,
    networks: Option<sysinfo::Networks>,
    net_rates: Vec<(Counter, Counter)>,
    disks: Option<sysinfo::Disks>,
    disk_rates: (Counter, Counter),
    components: Option<sysinfo::Components>,
    /// The power source (`None`: this OS's cannot be read).
    power: Option<Box<dyn PowerSource>>,
    /// The process table, read only when something needs it.
    processes: ProcessWatch,
    /// Processes the `processes` metric publishes when selected.
    process_count: usize,
}

impl HostSampler {
    /// Takes the baseline CPU reading; the first [`sample`](Sampler::sample) covers the time
    /// since. Publishes `CPU_Load` only until [`select`](Sampler::select) says more.
    pub fn new() -> Result<Self, SampleError> {
        let processes = crate::processes::os_table();
        let power = match Batteries::new() {
            Ok(b) => Some(Box::new(b) as Box<dyn PowerSource>),
            Err(e) => {
                tracing::debug!("the power source cannot be read: {e}");
                None
            }
        };
        Self::with_sources(processes, power)
    }

    /// A sampler that reads processes and the power source from `processes` and `power` (tests
    /// inject their own).
    pub fn with_sources(
        processes: Option<Box<dyn ProcessSource>>,
        power: Option<Box<dyn PowerSource>>,
    ) -> Result<Self, SampleError> {
        let mut system = sysinfo::System::new().map_err(|e| SampleError::Unreadable(e.to_string()))?;
        let proc_cpus = read_proc_stat_cpus().ok();
        if proc_cpus.is_none() {
            system.refresh_cpu_usage();
        }
        Ok(HostSampler {
            system,
            metrics: vec![Metric::Cpu],
            inventory: Inventory::default(),
            proc_cpus,
            core_loads: Vec::new(),
            cpu_split: None,
            networks: None,
            net_rates: Vec::new(),
            disks: None,
            disk_rates: Default::default(),
            components: None,
            power,
            processes: ProcessWatch::new(processes),
            process_count: hostpulse_core::processes::SPELL_COUNT,
        })
    }

    /// The window's handle on the process list.
    pub fn process_view(&self) -> ProcessView {
        self.processes.view()
    }

    /// Reads of the process table so far.
    #[cfg(test)]
    fn process_reads(&self) -> u64 {
        self.processes.reads
    }

    /// Finds out whether `metric` can be read here: `Err` says why not.
    fn probe(&mut self, metric: Metric, include: &[String]) -> Result<(), String> {
        match metric {
            Metric::Cpu => Ok(()),
            Metric::CpuCores => {
                self.inventory.cores = match &self.proc_cpus {
                    Some(cpus) => cpus.len() - 1,
                    None => self.system.cpus().len(),
                };
                if self.inventory.cores == 0 { Err("the OS lists no CPU cores".into()) } else { Ok(()) }
            }
            Metric::CpuTimes => match self.proc_cpus {
                Some(_) => Ok(()),
                None if cfg!(target_os = "linux") => Err("/proc/stat is not readable".into()),
                None => Err("this OS does not report a user/system/iowait split here".into()),
            },
            Metric::Memory | Metric::Swap => {
                self.system.refresh_memory();
                self.inventory.memory_bytes = self.system.total_memory();
                self.inventory.swap_bytes = self.system.total_swap();
                if self.inventory.memory_bytes == 0 { Err("the OS reports no memory size".into()) } else { Ok(()) }
            }
            Metric::Load => {
                if cfg!(unix) {
                    sysinfo::System::load_average().map(|_| ()).map_err(|e| e.to_string())
                } else {
                    Err("load average is a Unix measure".into())
                }
            }
            Metric::Network => {
                // Linux: one read of /proc/net/dev (sysinfo reads several files per interface,
                // ~25x the cost); elsewhere sysinfo.
                self.networks = match read_proc_net_dev() {
                    Some(_) => None,
                    None => Some(sysinfo::Networks::new_with_refreshed_list().map_err(|e| e.to_string())?),
                };
                let mut names: Vec<String> = self
                    .net_counters()
                    .into_iter()
                    .map(|(name, _, _)| name)
                    .filter(|name| metrics::interface_included(name, include))
                    .collect();
                names.sort();
                for wanted in include.iter().filter(|w| !names.contains(w)) {
                    tracing::warn!(interface = %wanted, "`network_interfaces` names an interface this machine does not have");
                }
                if names.is_empty() {
                    return Err("no network interface matches `network_interfaces`".into());
                }
                self.net_rates = vec![Default::default(); names.len()];
                self.inventory.interfaces = names;
                Ok(())
            }
            Metric::Disk => {
                let disks = sysinfo::Disks::new_with_refreshed_list().map_err(|e| e.to_string())?;
                if disks.is_empty() {
                    return Err("the OS lists no disks".into());
                }
                self.disk_rates = Default::default();
                self.disks = Some(disks);
                Ok(())
            }
            Metric::Temperature => {
                let components = sysinfo::Components::new_with_refreshed_list().map_err(|e| e.to_string())?;
                let mut labels: Vec<String> = components
                    .iter()
                    .filter(|c| c.temperature().is_some_and(f32::is_finite))
                    .map(|c| c.label().to_owned())
                    .collect();
                labels.sort();
                labels.dedup_by(|a, b| metrics::sensor_id(a) == metrics::sensor_id(b));
                if labels.is_empty() {
                    return Err("the OS reports no temperature sensors".into());
                }
                self.inventory.sensors = labels;
                self.components = Some(components);
                Ok(())
            }
            Metric::Battery => match self.power.as_mut().and_then(|p| p.read()) {
                Some(r) if r.battery.is_some() => Ok(()),
                Some(_) => Err("this machine has no battery".into()),
                None => Err("the OS reports no power source".into()),
            },
            Metric::Processes => {
                if !self.processes.available() {
                    return Err("this OS has no process table HostPulse can read".into());
                }
                self.inventory.processes = self.process_count;
                if self.inventory.memory_bytes == 0 {
                    self.system.refresh_memory();
                    self.inventory.memory_bytes = self.system.total_memory();
                }
                Ok(())
            }
        }
    }

    /// Every interface's name and total bytes received and sent, now.
    fn net_counters(&mut self) -> Vec<(String, u64, u64)> {
        match self.networks.as_mut() {
            Some(networks) => {
                networks.refresh(true);
                networks
                    .iter()
                    .filter_map(|(name, d)| {
                        Some((name.to_str()?.to_owned(), d.total_received(), d.total_transmitted()))
                    })
                    .collect()
            }
            None => read_proc_net_dev().unwrap_or_default(),
        }
    }

    /// Reads every selected metric into `row` (a failed reading leaves the value out: `null`).
    fn read_into(&mut self, mut row: Row) -> Row {
        // Rates divide by the time between readings as the monotonic clock measures it; the
        // row keeps its wall-clock time.
        let at = monotonic_ns();
        for i in 0..self.metrics.len() {
            let metric = self.metrics[i];
            match metric {
                Metric::Cpu => {}
                Metric::CpuCores => {
                    let loads: Vec<Option<f64>> = match self.proc_cpus {
                        Some(_) => self.core_loads.clone(),
                        None => self.system.cpus().iter().map(|cpu| cpu_percent(cpu.usage())).collect(),
                    };
                    for (n, v) in loads.into_iter().enumerate().take(self.inventory.cores) {
                        if let Some(v) = v {
                            row = row.with_value(metrics::core_id(n), v);
                        }
                    }
                }
                Metric::CpuTimes => {
                    for (id, v) in CPU_TIMES_IDS.into_iter().zip(self.cpu_split.into_iter().flatten()) {
                        row = row.with_value(id, v);
                    }
                }
                Metric::Memory => {
                    self.system.refresh_memory();
                    row = row
                        .with_value(MEMORY_IDS[0], self.system.used_memory() as f64)
                        .with_value(MEMORY_IDS[1], self.system.available_memory() as f64);
                }
                Metric::Swap => {
                    if !self.metrics.contains(&Metric::Memory) {
                        self.system.refresh_memory();
                    }
                    row = row.with_value(SWAP_ID, self.system.used_swap() as f64);
                }
                Metric::Load => {
                    if let Ok(l) = sysinfo::System::load_average() {
                        for (id, v) in LOAD_IDS.into_iter().zip([l.one, l.five, l.fifteen]) {
                            row = row.with_value(id, v);
                        }
                    }
                }
                Metric::Network => {
                    let counters = self.net_counters();
                    for (name, (rx, tx)) in self.inventory.interfaces.iter().zip(self.net_rates.iter_mut()) {
                        let Some((_, received, sent)) = counters.iter().find(|(n, _, _)| n == name) else { continue };
                        let (rx_id, tx_id) = metrics::interface_ids(name);
                        if let Some(v) = rx.rate(*received, at) {
                            row = row.with_value(rx_id, v);
                        }
                        if let Some(v) = tx.rate(*sent, at) {
                            row = row.with_value(tx_id, v);
                        }
                    }
                }
                Metric::Disk => {
                    let Some(disks) = self.disks.as_mut() else { continue };
                    disks.refresh_specifics(false, sysinfo::DiskRefreshKind::nothing().with_io_usage());
                    // Partitions of one device and repeated mounts share counters: count each name once.
                    let mut seen = std::collections::HashSet::new();
                    let (mut read, mut written) = (0u64, 0u64);
                    for d in disks.iter().filter(|d| seen.insert(d.name().to_owned())) {
                        let u = d.usage();
                        read = read.saturating_add(u.total_read_bytes);
                        written = written.saturating_add(u.total_written_bytes);
                    }
                    if let Some(v) = self.disk_rates.0.rate(read, at) {
                        row = row.with_value(DISK_IDS[0], v);
                    }
                    if let Some(v) = self.disk_rates.1.rate(written, at) {
                        row = row.with_value(DISK_IDS[1], v);
                    }
                }
                Metric::Temperature => {
                    let Some(components) = self.components.as_mut() else { continue };
                    components.refresh(false);
                    for c in components.iter() {
                        if let Some(t) = c.temperature().filter(|t| t.is_finite())
                            && self.inventory.sensors.iter().any(|l| l == c.label())
                        {
                            row = row.with_value(metrics::sensor_id(c.label()), (f64::from(t) * 10.0).round() / 10.0);
                        }
                    }
                }
                Metric::Battery => {
                    if let Some((charge, state)) = self.power.as_mut().and_then(|p| p.read()).and_then(|r| r.battery) {
                        row = row.with_value(BATTERY_IDS[0], charge).with_value(BATTERY_IDS[1], state.code());
                    }
                }
                Metric::Processes => {}
            }
        }
        row
    }
}

/// Linux's CPU time counters: the machine, then each core.
fn read_proc_stat_cpus() -> Result<Vec<CpuTimes>, String> {
    if !cfg!(target_os = "linux") {
        return Err("no /proc/stat on this OS".into());
    }
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    CpuTimes::parse_proc_stat_cpus(&text).ok_or_else(|| "/proc/stat has no readable `cpu` line".into())
}

/// Linux's per-interface byte counters (`None` elsewhere or when unreadable).
fn read_proc_net_dev() -> Option<Vec<(String, u64, u64)>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    std::fs::read_to_string("/proc/net/dev").ok().map(|text| metrics::parse_proc_net_dev(&text))
}

impl Sampler for HostSampler {
    fn sample(&mut self) -> Result<Row, SampleError> {
        let load = match self.proc_cpus.take() {
            Some(before) => {
                // A failed read keeps the old baseline: the next sample covers both intervals.
                let now = read_proc_stat_cpus().map_err(|e| {
                    self.proc_cpus = Some(before.clone());
                    SampleError::Unreadable(e)
                })?;
                let load = now[0].busy_since(&before[0]);
                // A core offline in either reading (zeros in its place) has no load this time.
                let offline = CpuTimes::default();
                self.core_loads = now[1..]
                    .iter()
                    .zip(&before[1..])
                    .map(|(n, b)| if *n == offline || *b == offline { None } else { n.busy_since(b) })
                    .collect();
                self.cpu_split = now[0].split_since(&before[0]);
                // No clock tick since the last reading (10 ms, only in a tight loop): no CPU
                // figure in this row (`null`), and the next one measures from the old baseline.
                let no_time = load.is_none() && now[0].total() == before[0].total();
                self.proc_cpus = Some(if no_time { before } else { now });
                load
            }
            None => {
                self.system.refresh_cpu_usage();
                let raw = self.system.global_cpu_usage();
                Some(cpu_percent(raw).ok_or_else(|| SampleError::Unreadable(format!("sysinfo reported {raw}")))?)
            }
        };
        let row = Row::new(now_ns());
        let taken = self.processes.on_sample(row.timestamp_ns, load);
        let mut row = self.read_into(match load {
            Some(v) => row.with_value(CPU_LOAD, v),
            None => row,
        });
        if self.metrics.contains(&Metric::Processes) {
            for (rank, p) in (1..).zip(taken.metric) {
                let [name, cpu, memory] = metrics::process_ids(rank);
                row = row.with_text(name, p.name).with_value(cpu, p.cpu).with_value(memory, p.memory as f64);
            }
        }
        Ok(row)
    }

    fn watch(&mut self, process_count: usize, spell_threshold: Option<f64>) {
        self.process_count = process_count.clamp(1, hostpulse_core::processes::MAX_COUNT);
        self.processes.spell_threshold = spell_threshold;
    }

    fn spell_top(&self) -> Vec<TopProcess> {
        self.processes.spell_top()
    }

    fn on_battery(&mut self) -> Option<bool> {
        self.power.as_mut()?.read().map(|r| r.on_battery)
    }

    fn select(&mut self, wanted: &[Metric], include: &[String]) -> Option<Vec<ParameterDefinition>> {
        self.inventory = Inventory::default();
        self.metrics.clear();
        for &metric in wanted.iter().chain([&Metric::Cpu]) {
            if self.metrics.contains(&metric) {
                continue;
            }
            match self.probe(metric, include) {
                Ok(()) => self.metrics.push(metric),
                Err(why) => tracing::info!(metric = metric.id(), "metric skipped: {why}"),
            }
        }
        self.metrics.sort();
        self.processes.metric_count =
            if self.metrics.contains(&Metric::Processes) { self.inventory.processes } else { 0 };
        Some(self.metrics.iter().flat_map(|m| metrics::definitions(*m, &self.inventory)).collect())
    }
}

/// The id of the counter a [`SyntheticSampler`] publishes next to `CPU_Load`.
pub const SEQUENCE: &str = "Sequence";

/// A generated signal for tests, soak runs and benchmarks, at rates the CPU sampler cannot
/// reach: `Sequence` counts 0, 1, 2, … from the start of the run (a gap or a repeat is visible at
/// once) and `CPU_Load` is `Sequence mod 1000 / 10`; stamped with the time of the call.
#[derive(Debug, Default)]
pub struct SyntheticSampler {
    next: u64,
}

impl Sampler for SyntheticSampler {
    fn sample(&mut self) -> Result<Row, SampleError> {
        let n = self.next;
        self.next += 1;
        Ok(Row::new(now_ns()).with_value(CPU_LOAD, (n % 1000) as f64 / 10.0).with_value(SEQUENCE, n as f64))
    }
}

/// Hands out prepared rows in order (known values and timestamps), then [`SampleError::Exhausted`].
pub struct ScriptedSampler {
    rows: VecDeque<Row>,
}

impl ScriptedSampler {
    /// A sampler that yields `rows`.
    pub fn new(rows: impl IntoIterator<Item = Row>) -> Self {
        ScriptedSampler { rows: rows.into_iter().collect() }
    }
}

impl Sampler for ScriptedSampler {
    fn sample(&mut self) -> Result<Row, SampleError> {
        self.rows.pop_front().ok_or(SampleError::Exhausted)
    }
}

/// Rows of many values each, for throughput benchmarks of the whole agent (the `throughput`
/// example, `cargo bench -p hostpulse-tests --bench produce`): the agent takes one row per tick,
/// so publishing N values at full speed needs wide rows. Row `k` of `n` values carries `V0` …
/// `V{n-1}`, value `i` being `((k·n + i) mod 1000) / 10` (the same signal as
/// [`SyntheticSampler`]'s `CPU_Load`); it is stamped with the time of the call, made strictly
/// increasing because the buffer merges rows that share a timestamp. With a row limit
/// ([`WideSampler::with_rows`]) it is [`SampleError::Exhausted`] after that many rows.
#[derive(Debug)]
pub struct WideSampler {
    ids: Vec<std::sync::Arc<str>>,
    next: u64,
    rows: Option<u64>,
    last_ns: i64,
}

impl WideSampler {
    /// Rows of `values_per_row` values (at least one), without end.
    pub fn new(values_per_row: usize) -> Self {
        let ids = (0..values_per_row.max(1)).map(|i| std::sync::Arc::from(format!("V{i}"))).collect();
        WideSampler { ids, next: 0, rows: None, last_ns: 0 }
    }

    /// Stops after `rows` rows.
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// Values in each row.
    pub fn values_per_row(&self) -> usize {
        self.ids.len()
    }

    /// The definitions of `V0` … `V{n-1}` (0–100, top level), for the agent's configuration.
    pub fn definitions(&self) -> Vec<ParameterDefinition> {
        self.ids
            .iter()
            .map(|id| ParameterDefinition {
                id: id.to_string(),
                name: Some(id.to_string()),
                description: Some("Synthetic benchmark signal".into()),
                minimum: Some(0.0),
                maximum: Some(100.0),
                unit: None,
                location: "/".into(),
            })
            .collect()
    }
}

impl Sampler for WideSampler {
    fn sample(&mut self) -> Result<Row, SampleError> {
        if self.rows.is_some_and(|rows| self.next >= rows) {
            return Err(SampleError::Exhausted);
        }
        let first = self.next * self.ids.len() as u64;
        self.next += 1;
        let timestamp_ns = now_ns().max(self.last_ns.saturating_add(1));
        self.last_ns = timestamp_ns;
        let values = self.ids.iter().zip(first..).map(|(id, v)| (id.clone(), (v % 1000) as f64 / 10.0)).collect();
        Ok(Row { timestamp_ns, values, texts: Vec::new(), tags: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    #[cfg(target_os = "linux")]
    fn rates_are_timed_on_the_monotonic_clock_so_a_wall_clock_set_back_changes_nothing() {
        let mut s = HostSampler::new().unwrap();
        s.select(&[Metric::Network], &["lo".to_owned()]);
        let (rx, _) = metrics::interface_ids("lo");
        let later = 2_000_000_000_000_000_000;
        let _ = s.read_into(Row::new(later)); // the first reading only primes the counters
        std::thread::sleep(Duration::from_millis(20));
        // The wall clock was set back an hour between the two samples.
        let row = s.read_into(Row::new(later - 3_600_000_000_000));
        let rate = row.value(&rx);
        assert!(rate.is_some_and(|r| (0.0..1e9).contains(&r)), "a sane rate despite the clock: {rate:?}");
    }

    #[test]
    fn the_interval_floor_is_what_the_cpu_reading_can_measure() {
        let floor = u128::from(hostpulse_core::settings::MIN_INTERVAL_MS);
        if cfg!(target_os = "linux") {
            assert_eq!(floor, 100, "/proc/stat is read directly");
            assert!(HostSampler::new().unwrap().proc_cpus.is_some(), "and is readable here");
        } else {
            assert_eq!(floor, sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.as_millis(), "no faster than sysinfo measures");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn at_100_ms_a_busy_core_shows_in_every_reading() {
        let mut s = HostSampler::new().unwrap();
        s.select(&[Metric::CpuCores, Metric::CpuTimes], &[]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        let mut loads = Vec::new();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            let row = s.sample().unwrap();
            let busiest = (0..cores as usize).filter_map(|n| row.value(&metrics::core_id(n))).fold(0.0, f64::max);
            let split = row.value("CPU_User").unwrap() + row.value("CPU_System").unwrap();
            loads.push((row.value(CPU_LOAD).unwrap(), busiest, split));
        }
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        // One thread spinning keeps at least one core's worth busy in each 100 ms: a repeated or
        // stale reading (sysinfo's below 200 ms) would show as 0 or as a copy of the last value.
        for (load, busiest, split) in &loads {
            assert!(*load >= 80.0 / cores, "{loads:?}");
            assert!(*busiest >= *load, "{loads:?}");
            assert!(*split > 0.0 && *split <= load + 0.2, "user + system are part of the load: {loads:?}");
        }
    }

    #[test]
    fn cpu_samples_are_stamped_now_and_in_range() {
        let mut s = HostSampler::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let before = now_ns();
        let row = s.sample().unwrap();
        let after = now_ns();
        assert!((before..=after).contains(&row.timestamp_ns));
        let v = row.value(CPU_LOAD).unwrap();
        assert!((0.0..=100.0).contains(&v), "{v}");
    }

    #[test]
    fn every_metric_on_gives_a_value_for_each_defined_parameter_from_the_second_sample() {
        let mut s = HostSampler::new().unwrap();
        let defs = s.select(&Metric::ALL, &[]).expect("the host sampler defines its parameters");
        let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids[0], CPU_LOAD);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert!(ids.contains(&metrics::core_id(cores - 1).as_str()), "{ids:?}");
        #[cfg(target_os = "linux")]
        for id in ["CPU_User", "CPU_System", "CPU_IOWait", "Memory_Used", "Memory_Available", "Swap_Used", "Load_1"] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        assert!(!ids.iter().any(|i| i.starts_with("Net_lo_")), "loopback is left out by default");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let first = s.sample().unwrap();
        assert!(first.values.iter().all(|(id, _)| ids.contains(&&**id)), "only defined ids: {first:?}");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let second = s.sample().unwrap();
        for id in &ids {
            if id.ends_with("_Name") {
                assert!(second.text(id).is_some_and(|n| !n.is_empty()), "{id} has a name in {second:?}");
                continue;
            }
            let v = second.value(id).unwrap_or_else(|| panic!("{id} has a value in {second:?}"));
            assert!(v.is_finite() && (id.starts_with("Temp_") || v >= 0.0), "{id} = {v}");
        }
        let mem = second.value("Memory_Used").unwrap();
        let max = defs.iter().find(|d| d.id == "Memory_Used").unwrap().maximum.unwrap();
        assert!(mem > 0.0 && mem <= max, "{mem} <= {max}");
    }

    #[test]
    fn the_processes_metric_ranks_an_injected_table_into_names_cpu_and_memory() {
        use crate::processes::testing::{Scripted, reading};
        let table = vec![reading(10, "idle", 0.0), reading(11, "web\nserver", 30.0), reading(12, "db", 55.5)];
        let (source, _) = Scripted::new(table);
        let mut s = HostSampler::with_sources(Some(Box::new(source)), None).unwrap();
        s.watch(2, None);
        let defs = s.select(&[Metric::Processes], &[]).unwrap();
        let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [CPU_LOAD, "Proc_1_Name", "Proc_1_CPU", "Proc_1_Memory", "Proc_2_Name", "Proc_2_CPU", "Proc_2_Memory"]
        );
        let first = s.sample().unwrap();
        assert_eq!(first.value("Proc_1_CPU"), Some(0.0), "the first read has no CPU figures yet");
        let row = s.sample().unwrap();
        assert_eq!((row.text("Proc_1_Name"), row.value("Proc_1_CPU")), (Some("db"), Some(55.5)));
        assert_eq!((row.text("Proc_2_Name"), row.value("Proc_2_CPU")), (Some("web?server"), Some(30.0)));
        assert_eq!(row.value("Proc_2_Memory"), Some((11u64 << 20) as f64));
        assert_eq!(row.text("Proc_3_Name"), None, "two asked for");
        // Switched off: the table is not read any more.
        s.select(&[], &[]);
        let reads = s.process_reads();
        let row = s.sample().unwrap();
        assert!(row.texts.is_empty() && s.process_reads() == reads, "{row:?}");
    }

    /// A power source that reads as given.
    struct Power(Option<crate::power::PowerReading>);

    impl PowerSource for Power {
        fn read(&mut self) -> Option<crate::power::PowerReading> {
            self.0
        }
    }

    #[test]
    fn the_battery_metric_and_the_power_state_come_from_the_power_source() {
        use crate::power::PowerReading;
        use hostpulse_core::metrics::BatteryState;
        let with = |reading: Option<PowerReading>| {
            let mut s = HostSampler::with_sources(None, Some(Box::new(Power(reading)))).unwrap();
            let ids: Vec<String> = s.select(&[Metric::Battery], &[]).unwrap().into_iter().map(|d| d.id).collect();
            (ids, s.on_battery(), s.sample().unwrap())
        };
        let (ids, on_battery, row) =
            with(Some(PowerReading { on_battery: true, battery: Some((41.5, BatteryState::Discharging)) }));
        assert_eq!(ids, [CPU_LOAD, "Battery_Charge", "Battery_State"]);
        assert_eq!(
            (on_battery, row.value("Battery_Charge"), row.value("Battery_State")),
            (Some(true), Some(41.5), Some(2.0))
        );
        let (ids, on_battery, _) = with(Some(PowerReading { on_battery: false, battery: None }));
        assert_eq!((ids.len(), on_battery), (1, Some(false)), "no battery: the metric is skipped, on mains");
        let (ids, on_battery, _) = with(None);
        assert_eq!((ids.len(), on_battery), (1, None), "an unreadable power source: skipped, and no low-power mode");
        let mut none = HostSampler::with_sources(None, None).unwrap();
        assert_eq!(none.on_battery(), None);
    }

    #[test]
    fn an_include_list_picks_interfaces_and_only_cpu_stays_when_nothing_matches() {
        let mut s = HostSampler::new().unwrap();
        let defs = s.select(&[Metric::Network], &["lo".into()]).unwrap();
        let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, [CPU_LOAD, "Net_lo_RxBytesPerSec", "Net_lo_TxBytesPerSec"]);
        let defs = s.select(&[Metric::Network], &["no-such-nic0".into()]).unwrap();
        assert_eq!(defs.len(), 1, "skipped, not fatal: {defs:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn network_rates_count_the_bytes_that_crossed_the_interface() {
        use std::io::{Read as _, Write as _};
        let mut s = HostSampler::new().unwrap();
        s.select(&[Metric::Network], &["lo".into()]).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // CPU time to measure
        let before = s.sample().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            listener.accept().unwrap().0.read_to_end(&mut buf).unwrap();
            buf.len()
        });
        const SENT: usize = 4 << 20;
        std::net::TcpStream::connect(addr).unwrap().write_all(&vec![7u8; SENT]).unwrap();
        assert_eq!(reader.join().unwrap(), SENT);
        let after = s.sample().unwrap();
        let secs = (after.timestamp_ns - before.timestamp_ns) as f64 / 1e9;
        let rx = after.value("Net_lo_RxBytesPerSec").expect("a rate from the second sample");
        let tx = after.value("Net_lo_TxBytesPerSec").unwrap();
        // Loopback: every byte is both sent and received; headers and other traffic add a little.
        for (what, v) in [("rx", rx), ("tx", tx)] {
            let bytes = v * secs;
            assert!((SENT as f64..SENT as f64 * 1.5).contains(&bytes), "{what}: {bytes} bytes in {secs} s");
        }
    }

    #[test]
    fn the_synthetic_signal_counts_and_stays_in_range() {
        let mut s = SyntheticSampler::default();
        let rows: Vec<Row> = (0..1005).map(|_| s.sample().unwrap()).collect();
        assert_eq!(rows[1004].value(SEQUENCE), Some(1004.0));
        assert_eq!(rows[1004].value(CPU_LOAD), Some(0.4));
        assert!(rows.windows(2).all(|w| w[0].timestamp_ns <= w[1].timestamp_ns));
    }

    #[test]
    fn scripted_rows_come_back_in_order_then_run_out() {
        let mut s =
            ScriptedSampler::new([Row::new(1).with_value(CPU_LOAD, 1.0), Row::new(2).with_value(CPU_LOAD, 2.0)]);
        assert_eq!(s.sample().unwrap().timestamp_ns, 1);
        assert_eq!(s.sample().unwrap().timestamp_ns, 2);
        assert_eq!(s.sample(), Err(SampleError::Exhausted));
    }
}

#[cfg(test)]
mod wide_sampler_tests {
    use super::*;

    #[test]
    fn wide_rows_carry_every_value_with_increasing_timestamps_up_to_the_limit() {
        let mut s = WideSampler::new(3).with_rows(400);
        assert_eq!(s.definitions().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["V0", "V1", "V2"]);
        let rows: Vec<Row> = (0..400).map(|_| s.sample().unwrap()).collect();
        assert_eq!(s.sample(), Err(SampleError::Exhausted));
        assert!(rows.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns), "strictly increasing");
        assert_eq!(rows[0].values.len(), 3);
        assert_eq!(rows[1].value("V2"), Some(0.5));
        assert_eq!(rows[334].value("V0"), Some(0.2), "(334 * 3 + 0) mod 1000 / 10");
    }
}
