//! Facts about this machine that defaults derive from: the stable stream id and the host name.
//!
//! The default stream id is a UUID (version 5, name-based) of the OS machine id
//! (`/etc/machine-id` on Linux, `IOPlatformUUID` on macOS, `MachineGuid` on Windows) under a
//! HostPulse namespace. It is the same after every restart, so a restarted agent continues the
//! same Quix stream, and it does not reveal the machine id itself (systemd asks applications not
//! to publish it). Without a machine id, the host name takes its place.

use hostpulse_core::settings::MachineFacts;
use uuid::Uuid;

/// HostPulse's UUID namespace for derived stream ids (a fixed, random v4 UUID).
const STREAM_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_0b6e_8a4e_4d2f_9b7c_3e51_a0d9_4f27);

/// Reads the machine id and host name.
pub fn facts() -> MachineFacts {
    let hostname = gethostname::gethostname().to_string_lossy().trim().to_owned();
    let hostname = if hostname.is_empty() { "localhost".to_owned() } else { hostname };
    let seed = match machine_uid::get() {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => {
            tracing::warn!("no machine id readable; the default stream id derives from the host name");
            format!("hostname:{hostname}")
        }
    };
    MachineFacts { default_stream_id: stream_id_from(&seed), hostname }
}

/// The stream's `Metadata`: host facts a reader wants next to the numbers. `host`, `os` (the
/// OS family: `linux`, `macos`, `windows`), `os_version` (name and version), `kernel`,
/// `cpu_model`, `cpu_cores` (logical), `cpu_physical_cores`, `agent` (`hostpulse <version>`).
/// A fact the OS does not give is left out.
pub fn metadata(hostname: &str) -> Vec<(String, String)> {
    static FACTS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let host = FACTS.get_or_init(|| {
        let mut m = vec![("os".to_owned(), std::env::consts::OS.to_owned())];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                m.push((k.to_owned(), v));
            }
        };
        add("os_version", sysinfo::System::long_os_version().ok());
        add("kernel", sysinfo::System::kernel_version().ok());
        let mut system = sysinfo::System::new().ok();
        if let Some(s) = system.as_mut() {
            s.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        }
        let cpus = system.as_ref().map(|s| s.cpus()).unwrap_or_default();
        add("cpu_model", cpus.first().map(|c| c.brand().to_owned()));
        add("cpu_cores", (!cpus.is_empty()).then(|| cpus.len().to_string()));
        add("cpu_physical_cores", sysinfo::System::physical_core_count().ok().map(|n| n.to_string()));
        m
    });
    let mut m = vec![("host".to_owned(), hostname.to_owned())];
    m.extend(host.iter().cloned());
    m.push(("agent".into(), concat!("hostpulse ", env!("CARGO_PKG_VERSION")).into()));
    m
}

/// The default stream id for a machine id: lowercase `8-4-4-4-12`, like .NET GUID text.
pub fn stream_id_from(machine_id: &str) -> String {
    Uuid::new_v5(&STREAM_ID_NAMESPACE, format!("cpu-load/{machine_id}").as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_id_is_stable_distinct_and_guid_shaped() {
        let a = stream_id_from("4b4e5d1c2f3a4e5f8a9b0c1d2e3f4a5b");
        assert_eq!(a, stream_id_from("4b4e5d1c2f3a4e5f8a9b0c1d2e3f4a5b"));
        assert_ne!(a, stream_id_from("4b4e5d1c2f3a4e5f8a9b0c1d2e3f4a5c"));
        assert_eq!(a.len(), 36);
        assert!(!a.contains("4b4e5d1c"), "the machine id itself is not published");
        assert!(hostpulse_core::stream::StreamId::parse(&a).is_ok());
    }

    #[test]
    fn metadata_names_the_host_os_kernel_cpu_and_agent() {
        let m = metadata("web-1");
        let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("host"), Some("web-1"));
        assert_eq!(get("os"), Some(std::env::consts::OS));
        assert_eq!(get("agent"), Some(concat!("hostpulse ", env!("CARGO_PKG_VERSION"))));
        #[cfg(target_os = "linux")]
        {
            let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
            assert_eq!(get("kernel"), Some(uname.trim()));
            let cores = std::thread::available_parallelism().unwrap().get();
            assert!(get("cpu_cores").unwrap().parse::<usize>().unwrap() >= cores);
            assert!(get("cpu_model").is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn this_machine_has_facts() {
        let f = facts();
        assert!(!f.hostname.is_empty());
        assert_eq!(f.default_stream_id, facts().default_stream_id, "stable across calls");
    }
}
