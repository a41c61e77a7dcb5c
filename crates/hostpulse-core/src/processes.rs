//! Which processes use the CPU: one reading of the process table ranked ("top N now"), and a
//! high-CPU spell's ranking, where each process counts with its CPU over the whole spell (one
//! that started or ended inside it counts with the time it ran). Pure: the agent reads the table
//! (sysinfo) and feeds [`ProcessReading`]s in; tests feed their own.
//!
//! CPU shares are percent **of the whole machine** (all cores together, like `CPU_Load`), so that
//! "CPU at 96 %: firefox 71 %, cargo 18 %" adds up.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

/// The most processes the `processes` metric publishes.
pub const MAX_COUNT: usize = 10;
/// How many processes the notification and the tray name.
pub const SPELL_COUNT: usize = 3;
/// Longest process name shown or published, in characters.
const NAME_CHARS: usize = 40;

/// One process in one reading of the process table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessReading {
    /// Process id.
    pub pid: u32,
    /// Its name, as the OS gives it.
    pub name: Arc<str>,
    /// CPU since the previous reading, percent of the whole machine.
    pub cpu: f64,
    /// Resident memory, bytes.
    pub memory: u64,
}

/// A ranked process, as the window, the tray, the notification and the metric show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopProcess {
    /// Process id.
    pub pid: u32,
    /// Its name, made safe to show ([`display_name`]).
    pub name: String,
    /// CPU, percent of the whole machine, one decimal.
    pub cpu: f64,
    /// Resident memory, bytes (the latest reading).
    pub memory: u64,
}

/// A process name fit to show on one line: control characters (a newline, an escape sequence)
/// become `?`, surrounding blanks go, at most 40 characters, and an empty name is `?`.
pub fn display_name(name: &str) -> String {
    let clean: String = name.trim().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let mut short: String = clean.chars().take(NAME_CHARS).collect();
    if clean.chars().count() > NAME_CHARS {
        short.push('…');
    }
    if short.is_empty() { "?".into() } else { short }
}

fn one_decimal(v: f64) -> f64 {
    if v.is_finite() { (v.clamp(0.0, 100.0) * 10.0).round() / 10.0 } else { 0.0 }
}

/// Higher CPU first; then more memory; then by name and pid, so that equal readings always
/// come out in the same order.
fn order(a: &(f64, u64, &str, u32), b: &(f64, u64, &str, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then_with(|| a.2.cmp(b.2)).then(a.3.cmp(&b.3))
}

/// The first `n` of `list` (CPU, memory, name, pid) in [`order`], made into [`TopProcess`]es:
/// only those `n` are sorted and have their names made safe.
fn ranked(mut list: Vec<(f64, u64, &str, u32)>, n: usize) -> Vec<TopProcess> {
    if n == 0 {
        return Vec::new();
    }
    if list.len() > n {
        list.select_nth_unstable_by(n - 1, order);
        list.truncate(n);
    }
    list.sort_by(order);
    list.into_iter()
        .map(|(cpu, memory, name, pid)| TopProcess { pid, name: display_name(name), cpu: one_decimal(cpu), memory })
        .collect()
}

/// The `n` processes with the most CPU in one reading.
pub fn top(readings: &[ProcessReading], n: usize) -> Vec<TopProcess> {
    if n == 0 {
        return Vec::new();
    }
    ranked(readings.iter().map(|r| (cpu_value(r.cpu), r.memory, &*r.name, r.pid)).collect(), n)
}

/// A CPU figure to rank and show: a reading that is no number counts as 0.
fn cpu_value(v: f64) -> f64 {
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

/// A high-CPU spell: what each process used over it.
#[derive(Debug, Clone, Default)]
pub struct Spell {
    /// How long the spell has lasted, ns.
    length_ns: f64,
    /// By pid and name (a pid reused inside the spell is another process): CPU percent × ns,
    /// and the latest memory.
    used: HashMap<(u32, Arc<str>), (f64, u64)>,
}

impl Spell {
    /// Counts one reading that covered `interval_ns` of the spell. Only processes that used CPU
    /// in it are kept (a long spell of many short idle processes does not grow).
    pub fn add(&mut self, readings: &[ProcessReading], interval_ns: u64) {
        let dt = interval_ns as f64;
        self.length_ns += dt;
        for r in readings {
            let used = cpu_value(r.cpu) * dt;
            if used > 0.0 {
                let entry = self.used.entry((r.pid, r.name.clone())).or_default();
                entry.0 += used;
                entry.1 = r.memory;
            } else if let Some(entry) = self.used.get_mut(&(r.pid, r.name.clone())) {
                entry.1 = r.memory;
            }
        }
    }

    /// Whether no reading was counted yet.
    pub fn is_empty(&self) -> bool {
        self.length_ns == 0.0
    }

    /// The `n` processes with the most CPU over the spell: each one's CPU time divided by the
    /// spell's length.
    pub fn top(&self, n: usize) -> Vec<TopProcess> {
        if self.is_empty() {
            return Vec::new();
        }
        let list =
            self.used.iter().map(|((pid, name), (cpu_ns, memory))| (cpu_ns / self.length_ns, *memory, &**name, *pid));
        ranked(list.collect(), n)
    }
}

/// What HostPulse takes from Linux's `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat<'a> {
    /// The name (`comm`: at most 15 bytes of the executable's name).
    pub comm: &'a str,
    /// CPU time in user and kernel mode, clock ticks.
    pub ticks: u64,
    /// When the process started, clock ticks after boot (with the pid, it tells a reused pid).
    pub start: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses one `/proc/<pid>/stat` line. The name is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_pid_stat(line: &str) -> Option<PidStat<'_>> {
    let (open, close) = (line.find('(')?, line.rfind(')')?);
    let comm = line.get(open + 1..close)?;
    // After the name: state (field 3), …, utime (14), stime (15), …, starttime (22), vsize, rss (24).
    let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
    let mut field = |n: usize| -> Option<u64> { rest.nth(n)?.parse().ok() };
    let utime = field(11)?;
    let stime = field(0)?;
    let start = field(6)?;
    let rss_pages = field(1)?;
    Some(PidStat { comm, ticks: utime.saturating_add(stime), start, rss_pages })
}

/// "firefox 71 %, cargo 18 %, Xorg 4 %": the processes that took some CPU (0.0 % ones are left out).
pub fn summary(top: &[TopProcess]) -> String {
    top.iter()
        .filter(|p| p.cpu > 0.0)
        .map(|p| format!("{} {} %", p.name, fmt_percent(p.cpu)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `71` for 71.0 and `4.5` for 4.5: whole percents without a decimal.
fn fmt_percent(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn p(pid: u32, name: &str, cpu: f64, memory: u64) -> ProcessReading {
        ProcessReading { pid, name: name.into(), cpu, memory }
    }

    fn names(top: &[TopProcess]) -> Vec<&str> {
        top.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn one_reading_ranks_by_cpu_then_memory_then_name_then_pid() {
        let readings = [
            p(1, "idle", 0.0, 10),
            p(7, "b", 20.0, 5),
            p(3, "a", 20.0, 5),
            p(9, "big", 20.0, 50),
            p(4, "hot", 61.23, 1),
        ];
        let t = top(&readings, 4);
        assert_eq!(names(&t), ["hot", "big", "a", "b"]);
        assert_eq!(t[0].cpu, 61.2, "one decimal");
        assert_eq!(top(&[p(2, "x", 5.0, 1), p(1, "x", 5.0, 1)], 2).iter().map(|t| t.pid).collect::<Vec<_>>(), [1, 2]);
        assert!(top(&readings, 0).is_empty());
        assert_eq!(top(&readings, 10).len(), 5, "no more than there are");
    }

    #[test]
    fn a_spell_averages_each_process_over_its_whole_length() {
        let mut spell = Spell::default();
        assert!(spell.top(3).is_empty());
        // 4 s of spell: `steady` at 50 % throughout; `late` starts in the last second at 80 %;
        // `early` ran at 90 % in the first second only and then ended.
        spell.add(&[p(1, "steady", 50.0, 100), p(2, "early", 90.0, 200)], S);
        for _ in 0..2 {
            spell.add(&[p(1, "steady", 50.0, 100)], S);
        }
        spell.add(&[p(1, "steady", 50.0, 150), p(3, "late", 80.0, 300)], S);
        let t = spell.top(3);
        assert_eq!(names(&t), ["steady", "early", "late"]);
        assert_eq!(t.iter().map(|t| t.cpu).collect::<Vec<_>>(), [50.0, 22.5, 20.0]);
        assert_eq!(t[0].memory, 150, "the latest memory");
        assert_eq!(summary(&t), "steady 50 %, early 22.5 %, late 20 %");
    }

    #[test]
    fn a_pid_reused_by_another_program_inside_the_spell_is_another_process() {
        let mut spell = Spell::default();
        spell.add(&[p(5, "make", 40.0, 1)], S);
        spell.add(&[p(5, "cc1", 60.0, 1)], S);
        assert_eq!(names(&spell.top(3)), ["cc1", "make"]);
    }

    #[test]
    fn proc_pid_stat_lines_give_name_cpu_start_and_memory_whatever_the_name_holds() {
        let line = "4242 (Web Content) S 1 4242 4242 0 -1 4194560 1234 0 5 0 1500 250 0 0 20 0 31 0 987654 2147483648 51200 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0";
        let s = parse_pid_stat(line).unwrap();
        assert_eq!(s, PidStat { comm: "Web Content", ticks: 1750, start: 987_654, rss_pages: 51_200 });
        let odd = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 55 100 9 0";
        let s = parse_pid_stat(odd).unwrap();
        assert_eq!((s.comm, s.ticks, s.start, s.rss_pages), ("a) b (c", 7, 55, 9));
        assert_eq!(parse_pid_stat("8 (cut) R 1 2"), None, "a short line is no reading");
        assert_eq!(parse_pid_stat(""), None);
    }

    #[test]
    fn odd_names_are_shown_on_one_line_and_shortened() {
        assert_eq!(display_name("evil\nname\u{1b}[31m"), "evil?name?[31m");
        assert_eq!(display_name("  "), "?");
        assert_eq!(display_name("Web Content"), "Web Content");
        assert_eq!(display_name("日本語のプロセス"), "日本語のプロセス");
        let long = "x".repeat(60);
        assert_eq!(display_name(&long).chars().count(), NAME_CHARS + 1);
        assert!(display_name(&long).ends_with('…'));
        let t = top(&[p(1, "a,b\tc", f64::NAN, 1), p(2, "z", -3.0, 1)], 2);
        assert_eq!(t.iter().map(|t| t.cpu).collect::<Vec<_>>(), [0.0, 0.0], "no reading is 0, never NaN");
        assert_eq!(t[0].name, "a,b?c");
        assert_eq!(summary(&t), "", "processes without CPU are not named");
    }
}
