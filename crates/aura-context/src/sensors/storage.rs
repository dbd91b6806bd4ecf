//! The storage sensor: usage and inodes per mounted filesystem (`/proc/self/mounts` + statvfs),
//! and per block device read/write bytes per second, IOPS and average latency (`/proc/diskstats`
//! deltas).

use std::collections::HashMap;
use std::time::Instant;

use toml::{Table, Value};

use super::procfs::{ProcFd, int, proc_root, round2};
use super::{Sample, Sensor, SensorError};
use crate::aav::Health;

/// Filesystem types that hold no user data.
const VIRTUAL_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "bpf",
    "binfmt_misc",
    "autofs",
    "rpc_pipefs",
    "nsfs",
    "squashfs",
    "ramfs",
    "efivarfs",
    "selinuxfs",
    "fuse.lxcfs",
    "tmpfs",
];

/// Reads filesystem usage and disk I/O.
#[derive(Debug)]
pub struct StorageSensor {
    mounts: ProcFd,
    diskstats: ProcFd,
    previous: HashMap<String, [u64; 6]>,
    /// Whether each block device seen is a whole disk (not a partition); asked of sysfs once.
    whole_disk: HashMap<String, bool>,
    last: Option<Instant>,
}

impl StorageSensor {
    /// A storage sensor.
    #[must_use]
    pub fn new() -> StorageSensor {
        let root = proc_root();
        StorageSensor {
            mounts: ProcFd::new(root.join("self/mounts")),
            diskstats: ProcFd::new(root.join("diskstats")),
            previous: HashMap::new(),
            whole_disk: HashMap::new(),
            last: None,
        }
    }
}

impl Default for StorageSensor {
    fn default() -> Self {
        StorageSensor::new()
    }
}

fn unescape(path: &str) -> String {
    // /proc/mounts escapes space, tab, newline and backslash as \040 etc.
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[async_trait::async_trait]
impl Sensor for StorageSensor {
    fn name(&self) -> &'static str {
        "storage"
    }

    async fn sample(&mut self) -> Result<Sample, SensorError> {
        let text = self.mounts.text()?;
        let mut mounts = Table::new();
        let mut max_used: f64 = 0.0;
        let mut seen_devices = Vec::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(device), Some(point), Some(fstype)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if VIRTUAL_FS.contains(&fstype) || seen_devices.contains(&device) {
                continue;
            }
            let point = unescape(point);
            let Ok(st) = nix::sys::statvfs::statvfs(point.as_str()) else {
                continue;
            };
            let frsize = st.fragment_size();
            let total = st.blocks() * frsize;
            if total == 0 {
                continue;
            }
            seen_devices.push(device);
            let free = st.blocks_available() * frsize;
            let used = total.saturating_sub(st.blocks_free() * frsize);
            let used_percent = round2(used as f64 * 100.0 / (used + free).max(1) as f64);
            max_used = max_used.max(used_percent);
            let inodes = st.files();
            let inodes_free = st.files_free();
            let mut m = Table::new();
            m.insert("device".into(), Value::String(device.to_owned()));
            m.insert("fstype".into(), Value::String(fstype.to_owned()));
            m.insert("total_bytes".into(), Value::Integer(int(total)));
            m.insert("used_bytes".into(), Value::Integer(int(used)));
            m.insert("free_bytes".into(), Value::Integer(int(free)));
            m.insert("used_percent".into(), Value::Float(used_percent));
            m.insert("inodes_total".into(), Value::Integer(int(inodes)));
            m.insert(
                "inodes_used_percent".into(),
                Value::Float(if inodes == 0 {
                    0.0
                } else {
                    round2(inodes.saturating_sub(inodes_free) as f64 * 100.0 / inodes as f64)
                }),
            );
            mounts.insert(point, Value::Table(m));
        }
        let now = Instant::now();
        let elapsed = self.last.map(|l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        let text = self.diskstats.text()?;
        let mut disks = Table::new();
        let mut current = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(name) = f.get(2) else { continue };
            if name.starts_with("loop") || name.starts_with("ram") || f.len() < 14 {
                continue;
            }
            // Whole disks only: partitions have a `partition` file in sysfs (a device name
            // keeps its kind while it exists; the cache is rebuilt from each sample's names).
            let whole = match self.whole_disk.get(*name) {
                Some(w) => *w,
                None => {
                    let w = !std::path::Path::new(&format!("/sys/class/block/{name}/partition"))
                        .exists();
                    self.whole_disk.insert((*name).to_owned(), w);
                    w
                }
            };
            if !whole {
                continue;
            }
            let n = |i: usize| f.get(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            // reads, sectors read, ms reading, writes, sectors written, ms writing
            let now_v = [n(3), n(5), n(6), n(7), n(9), n(10)];
            if let (Some(prev), Some(secs)) = (self.previous.get(*name), elapsed)
                && secs > 0.0
            {
                let d = |i: usize| now_v[i].saturating_sub(prev[i]) as f64;
                let ops = d(0) + d(3);
                let mut t = Table::new();
                t.insert(
                    "read_bytes_per_second".into(),
                    Value::Float(round2(d(1) * 512.0 / secs)),
                );
                t.insert(
                    "write_bytes_per_second".into(),
                    Value::Float(round2(d(4) * 512.0 / secs)),
                );
                t.insert("read_iops".into(), Value::Float(round2(d(0) / secs)));
                t.insert("write_iops".into(), Value::Float(round2(d(3) / secs)));
                t.insert(
                    "latency_ms".into(),
                    Value::Float(if ops == 0.0 {
                        0.0
                    } else {
                        round2((d(2) + d(5)) / ops)
                    }),
                );
                disks.insert((*name).to_owned(), Value::Table(t));
            }
            current.insert((*name).to_owned(), now_v);
        }
        self.previous = current;
        if self.whole_disk.len() > 256 {
            // Devices come and go (loop, dm, hot-plug): forget them rather than grow.
            self.whole_disk.clear();
        }
        let mut s = Table::new();
        s.insert("used_percent_max".into(), Value::Float(max_used));
        s.insert("mounts".into(), Value::Table(mounts));
        s.insert("disks".into(), Value::Table(disks));
        let health = if max_used >= 98.0 {
            Health::Unhealthy
        } else if max_used >= 90.0 {
            Health::Degraded
        } else {
            Health::Healthy
        };
        Ok(Sample { section: s, health })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_this_machine() {
        let mut st = StorageSensor::new();
        st.sample().await.unwrap();
        let s = st.sample().await.unwrap().section;
        let mounts = s["mounts"].as_table().unwrap();
        assert!(!mounts.is_empty(), "no real filesystem found");
        for (_, m) in mounts {
            let p = m["used_percent"].as_float().unwrap();
            assert!((0.0..=100.0).contains(&p));
        }
        assert!(s["used_percent_max"].as_float().unwrap() >= 0.0);
    }

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
    }
}
