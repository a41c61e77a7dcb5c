//! The metric catalog: which host metrics HostPulse can publish, their stable parameter ids,
//! their `ParameterDefinitions` entries, and the maths that turns OS counters into values.
//!
//! The ids are part of the published format: readers select by them, so they never change.
//! Per-instance ids (cores, interfaces, sensors) are built from the instance's name with every
//! character outside `A-Z a-z 0-9` replaced by `_`.

use std::fmt;

use crate::sample::CPU_LOAD;
use crate::wire::ParameterDefinition;

/// A group of parameters the user switches on or off as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// `CPU_Load`: total CPU busy percentage (always on).
    Cpu,
    /// `CPU_Core_<n>_Load`: busy percentage of each logical core.
    CpuCores,
    /// `CPU_User`, `CPU_System`, `CPU_IOWait`: where CPU time went (Linux).
    CpuTimes,
    /// `Memory_Used`, `Memory_Available`: bytes.
    Memory,
    /// `Swap_Used`: bytes.
    Swap,
    /// `Load_1`, `Load_5`, `Load_15`: load average (Unix).
    Load,
    /// `Net_<interface>_RxBytesPerSec`, `Net_<interface>_TxBytesPerSec`.
    Network,
    /// `Disk_ReadBytesPerSec`, `Disk_WriteBytesPerSec`: all disks together.
    Disk,
    /// `Temp_<sensor>`: °C of each sensor the OS reports.
    Temperature,
    /// `Battery_Charge` (%) and `Battery_State` (a code, see [`BatteryState::code`]).
    Battery,
    /// `Proc_<rank>_Name`, `Proc_<rank>_CPU`, `Proc_<rank>_Memory`: the top processes by CPU.
    /// Opt-in by name: `all` leaves it out, since it publishes process names.
    Processes,
}

impl Metric {
    /// Every metric, in catalog order.
    pub const ALL: [Metric; 11] = [
        Metric::Cpu,
        Metric::CpuCores,
        Metric::CpuTimes,
        Metric::Memory,
        Metric::Swap,
        Metric::Load,
        Metric::Network,
        Metric::Disk,
        Metric::Temperature,
        Metric::Battery,
        Metric::Processes,
    ];

    /// The id used in settings files, `--metrics` and the window.
    pub const fn id(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::CpuCores => "cpu_cores",
            Metric::CpuTimes => "cpu_times",
            Metric::Memory => "memory",
            Metric::Swap => "swap",
            Metric::Load => "load",
            Metric::Network => "network",
            Metric::Disk => "disk",
            Metric::Temperature => "temperature",
            Metric::Battery => "battery",
            Metric::Processes => "processes",
        }
    }

    /// A short label for people.
    pub const fn label(self) -> &'static str {
        match self {
            Metric::Cpu => "CPU load (always on)",
            Metric::CpuCores => "Load of each CPU core",
            Metric::CpuTimes => "CPU user / system / I/O wait",
            Metric::Memory => "Memory used and available",
            Metric::Swap => "Swap used",
            Metric::Load => "Load average (1, 5, 15 min)",
            Metric::Network => "Network received / sent per interface",
            Metric::Disk => "Disk read / write",
            Metric::Temperature => "Temperatures",
            Metric::Battery => "Battery charge and state",
            Metric::Processes => "Top processes by CPU (publishes their names)",
        }
    }

    /// The metric with settings id `id`.
    pub fn parse(id: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.id() == id)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The word in `--metrics` and settings that stands for every metric but
/// [`Metric::Processes`] (process names leave the machine only when asked for by name).
pub const ALL_WORD: &str = "all";

/// Reads a metric list (`cpu, memory`, or `all`): always includes [`Metric::Cpu`], catalog
/// order, no repeats. An unknown id is an error that lists the known ones.
pub fn parse_list<S: AsRef<str>>(ids: &[S]) -> Result<Vec<Metric>, String> {
    let mut on = vec![Metric::Cpu];
    for id in ids {
        let id = id.as_ref().trim();
        if id.is_empty() {
            continue;
        }
        if id == ALL_WORD {
            on.extend(Metric::ALL.into_iter().filter(|m| *m != Metric::Processes));
            continue;
        }
        match Metric::parse(id) {
            Some(m) => on.push(m),
            None => {
                let known: Vec<&str> = Metric::ALL.iter().map(|m| m.id()).collect();
                return Err(format!("unknown metric {id:?}; known: {}, or {ALL_WORD}", known.join(", ")));
            }
        }
    }
    on.sort();
    on.dedup();
    Ok(on)
}

/// Makes an instance name (interface, sensor) safe for a parameter id: ASCII letters and digits
/// kept, everything else `_`; an empty name becomes `_`.
pub fn id_part(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if s.is_empty() { "_".into() } else { s }
}

/// What the definitions of a machine's metrics depend on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// Logical cores.
    pub cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Total swap, bytes.
    pub swap_bytes: u64,
    /// Network interfaces published (after the include list).
    pub interfaces: Vec<String>,
    /// Temperature sensor labels.
    pub sensors: Vec<String>,
    /// Processes the `processes` metric publishes.
    pub processes: usize,
}

/// The parameter id of core `n`'s load.
pub fn core_id(n: usize) -> String {
    format!("CPU_Core_{n}_Load")
}

/// The parameter ids of the process at `rank` (from 1): its name, CPU and memory.
pub fn process_ids(rank: usize) -> [String; 3] {
    ["Name", "CPU", "Memory"].map(|what| format!("Proc_{rank}_{what}"))
}

/// Whether parameter `id` holds text (a process name) rather than numbers.
pub fn is_text_id(id: &str) -> bool {
    id.starts_with("Proc_") && id.ends_with("_Name") && is_parameter_id(id)
}

/// The parameter ids of interface `name`: received and sent bytes per second.
pub fn interface_ids(name: &str) -> (String, String) {
    let p = id_part(name);
    (format!("Net_{p}_RxBytesPerSec"), format!("Net_{p}_TxBytesPerSec"))
}

/// The parameter id of temperature sensor `label`.
pub fn sensor_id(label: &str) -> String {
    format!("Temp_{}", id_part(label))
}

/// Whether `name` is, or could be on some machine, the id of a catalog parameter: `CPU_Load`,
/// the fixed ids, and the per-core, per-interface and per-sensor patterns. (A JSON row's tags sit
/// beside its parameters, so a tag must not take such a name.)
pub fn is_parameter_id(name: &str) -> bool {
    let fixed = [crate::sample::CPU_LOAD, SWAP_ID]
        .into_iter()
        .chain(CPU_TIMES_IDS)
        .chain(MEMORY_IDS)
        .chain(LOAD_IDS)
        .chain(DISK_IDS)
        .chain(BATTERY_IDS);
    let core = name
        .strip_prefix("CPU_Core_")
        .and_then(|r| r.strip_suffix("_Load"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let interface = name.starts_with("Net_") && (name.ends_with("_RxBytesPerSec") || name.ends_with("_TxBytesPerSec"));
    let process = name.strip_prefix("Proc_").and_then(|r| r.split_once('_')).is_some_and(|(n, what)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && ["Name", "CPU", "Memory"].contains(&what)
    });
    fixed.into_iter().any(|id| id == name) || core || interface || process || name.starts_with("Temp_")
}

/// `CPU_User`, `CPU_System`, `CPU_IOWait`.
pub const CPU_TIMES_IDS: [&str; 3] = ["CPU_User", "CPU_System", "CPU_IOWait"];
/// `Memory_Used`, `Memory_Available`.
pub const MEMORY_IDS: [&str; 2] = ["Memory_Used", "Memory_Available"];
/// `Swap_Used`.
pub const SWAP_ID: &str = "Swap_Used";
/// `Load_1`, `Load_5`, `Load_15`.
pub const LOAD_IDS: [&str; 3] = ["Load_1", "Load_5", "Load_15"];
/// `Disk_ReadBytesPerSec`, `Disk_WriteBytesPerSec`.
pub const DISK_IDS: [&str; 2] = ["Disk_ReadBytesPerSec", "Disk_WriteBytesPerSec"];
/// `Battery_Charge`, `Battery_State`.
pub const BATTERY_IDS: [&str; 2] = ["Battery_Charge", "Battery_State"];

fn def(id: impl Into<String>, name: impl Into<String>, description: &str, unit: Option<&str>) -> ParameterDefinition {
    ParameterDefinition {
        id: id.into(),
        name: Some(name.into()),
        description: Some(description.into()),
        minimum: Some(0.0),
        maximum: None,
        unit: unit.map(Into::into),
        location: "/".into(),
    }
}

fn at(mut d: ParameterDefinition, location: &str) -> ParameterDefinition {
    d.location = location.into();
    d
}

fn percent(mut d: ParameterDefinition) -> ParameterDefinition {
    d.maximum = Some(100.0);
    d
}

fn bounded(mut d: ParameterDefinition, max: u64) -> ParameterDefinition {
    d.maximum = (max > 0).then_some(max as f64);
    d
}

/// The `ParameterDefinitions` entries of `metric` on a machine described by `inv`.
pub fn definitions(metric: Metric, inv: &Inventory) -> Vec<ParameterDefinition> {
    const BPS: Option<&str> = Some("B/s");
    match metric {
        Metric::Cpu => vec![percent(def(
            CPU_LOAD,
            "CPU Load",
            "Total CPU busy time across all cores over the sampling interval",
            Some("%"),
        ))],
        Metric::CpuCores => (0..inv.cores)
            .map(|n| {
                let d = def(core_id(n), format!("Core {n} load"), "Busy time of this logical core", Some("%"));
                at(percent(d), "/cpu/cores")
            })
            .collect(),
        Metric::CpuTimes => [
            ("User", "Time in user space (niced processes included)"),
            ("System", "Time in the kernel, interrupts included"),
            ("I/O wait", "Time idle while waiting for disk or network I/O"),
        ]
        .into_iter()
        .zip(CPU_TIMES_IDS)
        .map(|((name, what), id)| at(percent(def(id, format!("CPU {name}"), what, Some("%"))), "/cpu/times"))
        .collect(),
        Metric::Memory => vec![
            at(bounded(def(MEMORY_IDS[0], "Memory used", "RAM in use", Some("B")), inv.memory_bytes), "/memory"),
            at(
                bounded(
                    def(MEMORY_IDS[1], "Memory available", "RAM available to new programs", Some("B")),
                    inv.memory_bytes,
                ),
                "/memory",
            ),
        ],
        Metric::Swap => {
            vec![at(bounded(def(SWAP_ID, "Swap used", "Swap space in use", Some("B")), inv.swap_bytes), "/memory/swap")]
        }
        Metric::Load => [("1", "1 minute"), ("5", "5 minutes"), ("15", "15 minutes")]
            .into_iter()
            .zip(LOAD_IDS)
            .map(|((n, over), id)| {
                let what = format!("Average number of runnable tasks over {over}");
                at(def(id, format!("Load average {n} min"), &what, None), "/cpu/load")
            })
            .collect(),
        Metric::Network => inv
            .interfaces
            .iter()
            .flat_map(|name| {
                let (rx, tx) = interface_ids(name);
                let location = format!("/network/{}", id_part(name));
                [
                    at(def(rx, format!("{name} received"), "Bytes received per second", BPS), &location),
                    at(def(tx, format!("{name} sent"), "Bytes sent per second", BPS), &location),
                ]
            })
            .collect(),
        Metric::Disk => vec![
            at(def(DISK_IDS[0], "Disk read", "Bytes read per second, all disks", BPS), "/disk"),
            at(def(DISK_IDS[1], "Disk write", "Bytes written per second, all disks", BPS), "/disk"),
        ],
        Metric::Temperature => inv
            .sensors
            .iter()
            .map(|label| {
                let mut d = def(sensor_id(label), label.clone(), "Temperature reported by this sensor", Some("°C"));
                d.minimum = None;
                at(d, "/sensors/temperature")
            })
            .collect(),
        Metric::Processes => (1..=inv.processes)
            .flat_map(|rank| {
                let [name, cpu, memory] = process_ids(rank);
                let location = format!("/processes/{rank}");
                let mut name =
                    def(name, format!("Process {rank} name"), "Name of the process ranked here by CPU", None);
                name.minimum = None;
                [
                    at(name, &location),
                    at(
                        percent(def(
                            cpu,
                            format!("Process {rank} CPU"),
                            "Its CPU, percent of the whole machine",
                            Some("%"),
                        )),
                        &location,
                    ),
                    at(
                        bounded(
                            def(memory, format!("Process {rank} memory"), "Its resident memory", Some("B")),
                            inv.memory_bytes,
                        ),
                        &location,
                    ),
                ]
            })
            .collect(),
        Metric::Battery => vec![
            at(percent(def(BATTERY_IDS[0], "Battery charge", "Charge of the battery", Some("%"))), "/power/battery"),
            at(
                ParameterDefinition {
                    maximum: Some(4.0),
                    ..def(
                        BATTERY_IDS[1],
                        "Battery state",
                        "0 unknown, 1 charging, 2 discharging, 3 not charging, 4 full",
                        None,
                    )
                },
                "/power/battery",
            ),
        ],
    }
}

/// What a battery is doing (`Battery_State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatteryState {
    /// The OS does not say.
    Unknown,
    /// Charging from mains.
    Charging,
    /// The machine runs on it.
    Discharging,
    /// On mains, not charging (a charge limit reached).
    NotCharging,
    /// Full, on mains.
    Full,
    /// Empty: the machine runs on what is left of it.
    Empty,
}

impl BatteryState {
    /// The number published: 0 unknown, 1 charging, 2 discharging (also empty), 3 not
    /// charging, 4 full.
    pub fn code(self) -> f64 {
        match self {
            BatteryState::Unknown => 0.0,
            BatteryState::Charging => 1.0,
            BatteryState::Discharging | BatteryState::Empty => 2.0,
            BatteryState::NotCharging => 3.0,
            BatteryState::Full => 4.0,
        }
    }

    /// Whether the machine runs on this battery (and not on mains).
    pub fn on_battery(self) -> bool {
        matches!(self, BatteryState::Discharging | BatteryState::Empty)
    }
}

/// Turns a monotonically growing OS counter (bytes received, bytes read) into a per-second rate.
///
/// The first reading only sets the baseline. A reading at the same or an earlier time than the
/// previous one gives no value and keeps the baseline (a zero interval has no rate). A counter
/// that went down was reset (interface re-created, driver reloaded, 32-bit wrap): that reading
/// gives no value and becomes the new baseline, so no negative or huge value is ever published.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counter {
    last: Option<(u64, i64)>,
}

impl Counter {
    /// The rate since the previous reading, units per second; `at_ns` is when `value` was read.
    pub fn rate(&mut self, value: u64, at_ns: i64) -> Option<f64> {
        let Some((last, last_at)) = self.last else {
            self.last = Some((value, at_ns));
            return None;
        };
        if at_ns <= last_at {
            return None;
        }
        self.last = Some((value, at_ns));
        if value < last {
            return None;
        }
        Some((value - last) as f64 * 1e9 / (at_ns - last_at) as f64)
    }
}

/// Cumulative CPU time counters of the whole machine (the `cpu` line of Linux `/proc/stat`,
/// in clock ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice.
    pub user: u64,
    /// system + irq + softirq.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Waiting for I/O.
    pub iowait: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    /// Reads the aggregate `cpu ` line of `/proc/stat` text.
    pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
        Self::parse_line(text.lines().find(|l| l.starts_with("cpu "))?)
    }

    /// Reads every `cpu` line of `/proc/stat` text: the whole machine first, then core N at
    /// position N + 1, by the number in its `cpuN` label. Linux lists only online cores: an
    /// offline one's place holds zeros ([`CpuTimes::default`]), so that the cores after it keep
    /// their places. `None` without a readable aggregate line; an unreadable core line ends the
    /// list there.
    pub fn parse_proc_stat_cpus(text: &str) -> Option<Vec<CpuTimes>> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with("cpu "));
        let mut cpus = vec![Self::parse_line(lines.next()?)?];
        for line in lines.take_while(|l| l.starts_with("cpu")) {
            // Linux numbers at most 8192 CPUs (NR_CPUS): a larger number is not a core line.
            let Some(n) = line
                .split_whitespace()
                .next()
                .and_then(|l| l["cpu".len()..].parse::<usize>().ok())
                .filter(|n| *n < 8192)
            else {
                break;
            };
            let Some(times) = Self::parse_line(line) else { break };
            if n + 1 >= cpus.len() {
                cpus.resize(n + 2, CpuTimes::default());
            }
            cpus[n + 1] = times;
        }
        Some(cpus)
    }

    /// One `cpu…` line: user nice system idle iowait irq softirq steal (guest time is already
    /// counted in user and nice).
    fn parse_line(line: &str) -> Option<CpuTimes> {
        let n: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
        let f = |i: usize| n.get(i).copied().unwrap_or(0);
        if n.len() < 4 {
            return None;
        }
        Some(CpuTimes { user: f(0) + f(1), system: f(2) + f(5) + f(6), idle: f(3), iowait: f(4), steal: f(7) })
    }

    /// The busy share of the CPU time between `earlier` and `self`, in percent rounded to one
    /// decimal: psutil's `cpu_percent` (busy = all but idle and I/O wait; a busy time that went
    /// down, as Linux's I/O wait counter can, counts as 0). `None` when no time passed or the
    /// total went down (a reset).
    pub fn busy_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total().checked_sub(earlier.total()).filter(|t| *t > 0)?;
        let busy = |t: &CpuTimes| t.total().saturating_sub(t.idle + t.iowait);
        let delta = busy(self).saturating_sub(busy(earlier));
        Some(((delta as f64 * 1000.0 / total as f64).round() / 10.0).clamp(0.0, 100.0))
    }

    /// All CPU time counted, in ticks.
    pub fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.iowait + self.steal
    }

    /// User, system and I/O wait as percentages of all CPU time between `earlier` and `self`.
    /// `None` when no time passed or a counter went down (a reset).
    pub fn split_since(&self, earlier: &CpuTimes) -> Option<[f64; 3]> {
        let d = |a: u64, b: u64| a.checked_sub(b);
        let (user, system, iowait) =
            (d(self.user, earlier.user)?, d(self.system, earlier.system)?, d(self.iowait, earlier.iowait)?);
        let total = d(self.total(), earlier.total())?;
        if total == 0 {
            return None;
        }
        let pct = |v: u64| ((v as f64 * 1000.0 / total as f64).round() / 10.0).clamp(0.0, 100.0);
        Some([pct(user), pct(system), pct(iowait)])
    }
}

/// Reads Linux `/proc/net/dev`: each interface's name with its total bytes received and sent.
/// Lines that do not parse are left out.
pub fn parse_proc_net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let f: Vec<u64> = fields.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
            Some((name.trim().to_owned(), *f.first()?, *f.get(8)?))
        })
        .collect()
}

/// Whether interface `name` is published under include list `include` (empty: every interface
/// except loopback).
pub fn interface_included(name: &str, include: &[String]) -> bool {
    if include.is_empty() { name != "lo" && !name.starts_with("lo0") } else { include.iter().any(|i| i == name) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameter_ids_and_their_patterns_are_known() {
        for id in ["CPU_Load", "Memory_Used", "Load_15", "CPU_Core_12_Load", "Net_eth0_TxBytesPerSec", "Temp_k10temp"] {
            assert!(super::is_parameter_id(id), "{id}");
        }
        for other in ["site", "CPU_Core_x_Load", "Net_eth0", "memory_used", "host", "CPU_Core__Load"] {
            assert!(!super::is_parameter_id(other), "{other}");
        }
    }

    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_counter_gives_a_rate_per_second_from_the_second_reading() {
        let mut c = Counter::default();
        assert_eq!(c.rate(1_000, 10 * S), None, "the first reading is the baseline");
        assert_eq!(c.rate(3_000, 12 * S), Some(1_000.0));
        assert_eq!(c.rate(3_000, 13 * S), Some(0.0));
        assert_eq!(c.rate(3_500, 13 * S + S / 2), Some(1_000.0), "half a second");
    }

    #[test]
    fn a_reset_counter_gives_no_value_once_and_then_counts_from_the_new_baseline() {
        let mut c = Counter::default();
        c.rate(u64::from(u32::MAX) - 10, 0);
        assert_eq!(c.rate(5, S), None, "a wrap or reset is not a huge or negative rate");
        assert_eq!(c.rate(105, 2 * S), Some(100.0));
    }

    #[test]
    fn a_zero_or_backwards_interval_gives_no_value_and_keeps_the_baseline() {
        let mut c = Counter::default();
        c.rate(100, 5 * S);
        assert_eq!(c.rate(200, 5 * S), None, "zero interval");
        assert_eq!(c.rate(300, 4 * S), None, "clock went back");
        assert_eq!(c.rate(400, 6 * S), Some(300.0), "measured from the last good reading");
    }

    #[test]
    fn cpu_times_split_user_system_and_iowait() {
        let a = CpuTimes::parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = CpuTimes::parse_proc_stat("cpu  130 10 60 880 60 5 5 0 0 0\n").unwrap();
        // deltas: user 40, system 10+5+5 = 20, idle 80, iowait 10 → total 150.
        assert_eq!(b.split_since(&a), Some([26.7, 13.3, 6.7]));
        assert_eq!(a.split_since(&a), None, "no time passed");
        assert_eq!(a.split_since(&b), None, "counters went down");
        assert_eq!(CpuTimes::parse_proc_stat("intr 1 2\n"), None);
        assert_eq!(CpuTimes::parse_proc_stat("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn busy_shares_of_the_machine_and_each_core_follow_psutil() {
        let a = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 60 0 20 300 30 0 0 0\ncpu1 40 0 30 500 20 0 0 0\nintr 5 1\n";
        let b = "cpu  130 10 60 880 60 5 5 0 0 0\ncpu0 90 10 30 330 25 5 5 0\ncpu1 40 0 30 550 35 0 0 0\nintr 9 1\n";
        let (a, b) = (CpuTimes::parse_proc_stat_cpus(a).unwrap(), CpuTimes::parse_proc_stat_cpus(b).unwrap());
        assert_eq!((a.len(), b.len()), (3, 3), "the machine, then cpu0 and cpu1; intr is not a CPU");
        // Machine: total 1000 → 1150, idle + iowait 850 → 940: 60 busy of 150 = 40 %.
        // cpu0: total 410 → 495, idle + iowait 330 → 355 (I/O wait went down: allowed): 60 of 85.
        // cpu1: only idle and I/O wait grew: 0 %.
        let busy: Vec<_> = b.iter().zip(&a).map(|(now, then)| now.busy_since(then)).collect();
        assert_eq!(busy, [Some(40.0), Some(70.6), Some(0.0)]);
        assert_eq!(a[0].busy_since(&a[0]), None, "no time passed");
        assert_eq!(a[0].busy_since(&b[0]), None, "counters went down");
        let all_busy = CpuTimes { user: 200, ..a[0] };
        assert_eq!(all_busy.busy_since(&a[0]), Some(100.0));
        assert_eq!(CpuTimes::parse_proc_stat_cpus("intr 1\n"), None);
        assert_eq!(CpuTimes::parse_proc_stat_cpus("cpu  1 2 3 4\ncpu0 1 x 3 4\ncpu1 1 2 3 4\n").unwrap().len(), 1);
        // cpu1 offline: cpu2 keeps its place, and cpu1's holds zeros.
        let gap = CpuTimes::parse_proc_stat_cpus("cpu  9 9 9 9\ncpu0 1 2 3 4\ncpu2 5 6 7 8\n").unwrap();
        assert_eq!(gap.len(), 4);
        assert_eq!((gap[2], gap[3].idle), (CpuTimes::default(), 8));
        let absurd = CpuTimes::parse_proc_stat_cpus("cpu  9 9 9 9\ncpu0 1 2 3 4\ncpu99999999999 5 6 7 8\n").unwrap();
        assert_eq!(absurd.len(), 2, "no room made for a core number no kernel gives");
    }

    #[test]
    fn metric_lists_always_hold_cpu_and_know_all() {
        assert_eq!(parse_list::<&str>(&[]).unwrap(), [Metric::Cpu]);
        assert_eq!(parse_list(&["memory", "cpu", "memory"]).unwrap(), [Metric::Cpu, Metric::Memory]);
        assert_eq!(parse_list(&["all"]).unwrap(), Metric::ALL[..Metric::ALL.len() - 1]);
        let e = parse_list(&["memory", "gpu"]).unwrap_err();
        assert!(e.contains("\"gpu\"") && e.contains("temperature") && e.contains("all"), "{e}");
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.id()), Some(m));
        }
    }

    #[test]
    fn the_catalog_defines_every_parameter_with_unit_range_and_group() {
        let inv = Inventory {
            cores: 2,
            memory_bytes: 8 << 30,
            swap_bytes: 0,
            interfaces: vec!["eth0".into(), "wlp0s20f3".into()],
            sensors: vec!["coretemp Package id 0".into()],
            processes: 2,
        };
        let all: Vec<ParameterDefinition> = Metric::ALL.iter().flat_map(|m| definitions(*m, &inv)).collect();
        let get = |id: &str| all.iter().find(|d| d.id == id).unwrap_or_else(|| panic!("{id} missing"));
        let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), 1 + 2 + 3 + 2 + 1 + 3 + 4 + 2 + 1 + 2 + 2 * 3, "{ids:?}");
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "ids are unique");

        let cpu = get("CPU_Load");
        assert_eq!((cpu.location.as_str(), cpu.unit.as_deref(), cpu.maximum), ("/", Some("%"), Some(100.0)));
        let core = get("CPU_Core_1_Load");
        assert_eq!((core.location.as_str(), core.minimum, core.maximum), ("/cpu/cores", Some(0.0), Some(100.0)));
        assert_eq!(get("CPU_IOWait").location, "/cpu/times");
        assert_eq!(get("Memory_Used").maximum, Some((8u64 << 30) as f64));
        assert_eq!(get("Swap_Used").maximum, None, "no swap: no upper bound");
        assert_eq!(get("Load_15").unit, None);
        let rx = get("Net_wlp0s20f3_RxBytesPerSec");
        assert_eq!((rx.location.as_str(), rx.unit.as_deref()), ("/network/wlp0s20f3", Some("B/s")));
        let t = get("Temp_coretemp_Package_id_0");
        assert_eq!((t.unit.as_deref(), t.minimum, t.location.as_str()), (Some("°C"), None, "/sensors/temperature"));
        assert_eq!(get("Battery_State").maximum, Some(4.0));
        let name = get("Proc_2_Name");
        assert_eq!((name.location.as_str(), name.minimum, name.unit.as_deref()), ("/processes/2", None, None));
        assert_eq!(get("Proc_1_CPU").maximum, Some(100.0));
        assert_eq!(get("Proc_2_Memory").maximum, Some((8u64 << 30) as f64));
        for d in &all {
            assert!(d.name.is_some() && d.description.is_some(), "{} is described", d.id);
            assert!(d.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{} is a plain id", d.id);
        }
    }

    #[test]
    fn instance_names_become_plain_ids() {
        assert_eq!(id_part("enp0s31f6"), "enp0s31f6");
        assert_eq!(id_part("br-1a2b.100"), "br_1a2b_100");
        assert_eq!(id_part(""), "_");
        assert_eq!(sensor_id("acpitz temp1"), "Temp_acpitz_temp1");
        assert!(interface_included("eth0", &[]) && !interface_included("lo", &[]));
        assert!(!interface_included("eth0", &["wlan0".into()]) && interface_included("lo", &["lo".into()]));
    }

    #[test]
    fn proc_net_dev_gives_bytes_received_and_sent_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo: 1296   16    0    0    0     0          0         0     1296      16    0    0    0     0       0          0\n\
  eth0: 98765432 70000 0 0 0 0 0 0 1234567 9000 0 0 0 0 0 0\n\
 bad: x y\n";
        assert_eq!(
            parse_proc_net_dev(text),
            [("lo".to_owned(), 1296, 1296), ("eth0".to_owned(), 98_765_432, 1_234_567)]
        );
    }

    #[test]
    fn battery_states_have_codes_and_only_discharging_is_on_battery() {
        use BatteryState as B;
        let all = [B::Unknown, B::Charging, B::Discharging, B::NotCharging, B::Full, B::Empty];
        assert_eq!(all.map(B::code), [0.0, 1.0, 2.0, 3.0, 4.0, 2.0]);
        assert_eq!(all.map(B::on_battery), [false, false, true, false, false, true]);
    }

    #[test]
    fn process_ids_are_parameter_ids_and_all_leaves_processes_out() {
        assert_eq!(process_ids(2), ["Proc_2_Name", "Proc_2_CPU", "Proc_2_Memory"]);
        assert!(is_text_id("Proc_2_Name") && !is_text_id("Proc_2_CPU") && !is_text_id("Proc_x_Name"));
        for id in process_ids(10) {
            assert!(is_parameter_id(&id), "{id}");
        }
        for not in ["Proc_x_Name", "Proc__CPU", "Proc_1_Owner", "Process"] {
            assert!(!is_parameter_id(not), "{not}");
        }
        assert!(!parse_list(&["all"]).unwrap().contains(&Metric::Processes));
        assert!(parse_list(&["all", "processes"]).unwrap().contains(&Metric::Processes));
    }
}
