//! Where rows come from: the real CPU sampler (sysinfo), and a scripted one for tests and
//! benchmarks. The agent calls [`Sampler::sample`] once per interval.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use hostpulse_core::sample::{CPU_LOAD, Row, cpu_percent};
use thiserror::Error;

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
}

/// Wall-clock now, ns since the Unix epoch.
pub fn now_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Total CPU busy percentage across all cores since the previous call: the quantity of
/// `psutil.cpu_percent(interval=...)`, busy = everything but idle and iowait (sysinfo's
/// `global_cpu_usage`, computed from `/proc/stat` deltas on Linux).
pub struct CpuSampler {
    system: sysinfo::System,
}

impl CpuSampler {
    /// Takes the baseline reading; the first [`sample`](Sampler::sample) covers the time since.
    pub fn new() -> Result<Self, SampleError> {
        let mut system = sysinfo::System::new().map_err(|e| SampleError::Unreadable(e.to_string()))?;
        system.refresh_cpu_usage();
        Ok(CpuSampler { system })
    }
}

impl Sampler for CpuSampler {
    fn sample(&mut self) -> Result<Row, SampleError> {
        self.system.refresh_cpu_usage();
        let at = now_ns();
        let raw = self.system.global_cpu_usage();
        let v = cpu_percent(raw).ok_or_else(|| SampleError::Unreadable(format!("sysinfo reported {raw}")))?;
        Ok(Row::new(at).with_value(CPU_LOAD, v))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_interval_floor_is_sysinfos() {
        assert_eq!(
            u128::from(hostpulse_core::settings::MIN_INTERVAL_MS),
            sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.as_millis(),
            "settings must not allow sampling faster than sysinfo can measure"
        );
    }

    #[test]
    fn cpu_samples_are_stamped_now_and_in_range() {
        let mut s = CpuSampler::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let before = now_ns();
        let row = s.sample().unwrap();
        let after = now_ns();
        assert!((before..=after).contains(&row.timestamp_ns));
        let v = row.value(CPU_LOAD).unwrap();
        assert!((0.0..=100.0).contains(&v), "{v}");
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
