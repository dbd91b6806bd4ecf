//! The local machine: host name, OS, kernel, CPU (count, utilisation over a short sample, load), memory,
//! root file system usage, network totals and uptime, read from `/proc` and `statvfs`.

use std::time::Duration;

use aura_catalog::{Asset, AssetKind, Health};
use serde_json::{Map, Value, json};

use crate::{ScanContext, ScanError, ScanOutput, Scanner};

/// Scans the machine Aura runs on.
#[derive(Debug, Default)]
pub struct LocalScanner;

/// This machine's host name (`localhost` when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[async_trait::async_trait]
impl Scanner for LocalScanner {
    fn name(&self) -> &'static str {
        "local"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Host]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["local", "host"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        ctx.progress.begin(self.name(), 1);
        let stat1 = cpu_times().ok_or_else(|| ScanError::Unavailable("no /proc/stat".into()))?;
        // A short sample gives current utilisation rather than the average since boot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stat2 = cpu_times().unwrap_or(stat1);
        let name = ctx.local_host.clone();
        let id = aura_catalog::asset::sanitize_id(&name);
        let mut a = Asset::new(&id, AssetKind::Host, &name, &ctx.now);
        a.set_host(&name);

        let mut compute = Map::new();
        let busy = (stat2.0 - stat1.0) as f64;
        let total = (stat2.1 - stat1.1) as f64;
        if total > 0.0 {
            compute.insert("cpu_percent".into(), json!(round1(busy / total * 100.0)));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        compute.insert("cpu_count".into(), json!(cpus));
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            let parts: Vec<f64> = load
                .split_whitespace()
                .take(3)
                .filter_map(|p| p.parse().ok())
                .collect();
            for (k, v) in ["load_1", "load_5", "load_15"].iter().zip(parts) {
                compute.insert((*k).into(), json!(v));
            }
        }
        a.set_section("compute", compute);

        let mem = meminfo();
        let mut memory = Map::new();
        if let (Some(total), Some(avail)) = (mem.get("MemTotal"), mem.get("MemAvailable")) {
            memory.insert("total_bytes".into(), json!(total));
            memory.insert("available_bytes".into(), json!(avail));
            if *total > 0 {
                memory.insert(
                    "used_percent".into(),
                    json!(round1((total - avail) as f64 / *total as f64 * 100.0)),
                );
            }
        }
        if let (Some(st), Some(sf)) = (mem.get("SwapTotal"), mem.get("SwapFree")) {
            memory.insert("swap_used_bytes".into(), json!(st.saturating_sub(*sf)));
        }
        a.set_section("memory", memory);

        let mut storage = Map::new();
        if let Ok(vfs) = nix::sys::statvfs::statvfs("/") {
            let frsize = vfs.fragment_size();
            let total = vfs.blocks() * frsize;
            let avail = vfs.blocks_available() * frsize;
            let free = vfs.blocks_free() * frsize;
            storage.insert("mount".into(), json!("/"));
            storage.insert("total_bytes".into(), json!(total));
            storage.insert("available_bytes".into(), json!(avail));
            if total > 0 {
                storage.insert(
                    "used_percent".into(),
                    json!(round1((total - free) as f64 / total as f64 * 100.0)),
                );
            }
        }
        a.set_section("storage", storage);

        let (ifaces, rx, tx) = net_totals();
        let mut network = Map::new();
        network.insert("interfaces".into(), json!(ifaces));
        network.insert("rx_bytes".into(), json!(rx));
        network.insert("tx_bytes".into(), json!(tx));
        a.set_section("network", network);

        let mut system = Map::new();
        if let Some(os) = os_release() {
            system.insert("os".into(), Value::from(os));
        }
        if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            system.insert("kernel".into(), Value::from(k.trim()));
        }
        system.insert("arch".into(), Value::from(std::env::consts::ARCH));
        if let Ok(up) = std::fs::read_to_string("/proc/uptime")
            && let Some(secs) = up
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
        {
            system.insert("uptime_seconds".into(), json!(secs as u64));
        }
        a.set_section("system", system);

        let worst = [
            "compute.cpu_percent",
            "memory.used_percent",
            "storage.used_percent",
        ]
        .iter()
        .filter_map(|p| {
            let (s, k) = p.split_once('.')?;
            a.doc[s][k].as_f64()
        })
        .fold(0.0f64, f64::max);
        a.set_health(if worst >= 95.0 {
            Health::Degraded
        } else {
            Health::Healthy
        });
        ctx.progress.step(self.name(), &name);
        Ok(ScanOutput {
            assets: vec![a],
            errors: vec![],
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// (busy, total) jiffies of all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = nums.iter().sum();
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn meminfo() -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_owned(), kb * 1024))
        })
        .collect()
}

fn net_totals() -> (Vec<String>, u64, u64) {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let mut names = Vec::new();
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if name != "lo" {
            rx += f.first().copied().unwrap_or(0);
            tx += f.get(8).copied().unwrap_or(0);
        }
        names.push(name.to_owned());
    }
    (names, rx, tx)
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}
