//! The network sensor: per-interface traffic and errors (`/proc/net/dev` deltas), TCP
//! connections by state and listening ports (`/proc/net/tcp`, `tcp6`), and failed connection
//! attempts, resets and retransmissions (`/proc/net/snmp` deltas).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use toml::{Table, Value};

use super::procfs::{ProcFd, ProcFile, int, proc_root, round2};
use super::sockdiag::{self, SockDiag};
use super::{Sample, Sensor, SensorError};
use crate::aav::Health;

const STATES: &[(&str, &str)] = &[
    ("01", "established"),
    ("02", "syn_sent"),
    ("03", "syn_recv"),
    ("04", "fin_wait1"),
    ("05", "fin_wait2"),
    ("06", "time_wait"),
    ("07", "close"),
    ("08", "close_wait"),
    ("09", "last_ack"),
    ("0A", "listen"),
    ("0B", "closing"),
];

/// The state name of a kernel TCP state number (`NEW_SYN_RECV`, 12, is a `syn_recv` request).
fn state_name(state: u8) -> Option<&'static str> {
    let i = match state {
        12 => 3,
        1..=11 => state,
        _ => return None,
    };
    STATES.get(usize::from(i) - 1).map(|(_, name)| *name)
}

/// Most listening ports listed.
const MAX_PORTS: usize = 64;

/// Reads interfaces, connections and TCP failure counters.
#[derive(Debug)]
pub struct NetworkSensor {
    file: ProcFile,
    dev: ProcFd,
    snmp: ProcFd,
    /// Netlink `sock_diag` for TCP states (`None`: not available, or `/proc` overridden → text files).
    diag: Option<SockDiag>,
    diag_tried: bool,
    root: PathBuf,
    previous_dev: HashMap<String, [u64; 6]>,
    previous_tcp: Option<[u64; 3]>,
    last: Option<Instant>,
}

impl NetworkSensor {
    /// A network sensor.
    #[must_use]
    pub fn new() -> NetworkSensor {
        let root = proc_root();
        NetworkSensor {
            file: ProcFile::default(),
            dev: ProcFd::new(root.join("net/dev")),
            snmp: ProcFd::new(root.join("net/snmp")),
            diag: None,
            // A test `/proc` (AURA_PROC_ROOT) is read from its files, not from the kernel.
            diag_tried: std::env::var_os("AURA_PROC_ROOT").is_some(),
            root,
            previous_dev: HashMap::new(),
            previous_tcp: None,
            last: None,
        }
    }
}

impl Default for NetworkSensor {
    fn default() -> Self {
        NetworkSensor::new()
    }
}

#[async_trait::async_trait]
impl Sensor for NetworkSensor {
    fn name(&self) -> &'static str {
        "network"
    }

    async fn sample(&mut self) -> Result<Sample, SensorError> {
        let now = Instant::now();
        let elapsed = self
            .last
            .map(|l| now.duration_since(l).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.last = Some(now);
        let text = self.dev.text()?;
        let mut interfaces = Table::new();
        let mut current = HashMap::new();
        for line in text.lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|t| t.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                continue;
            }
            // rx bytes, rx errs, rx drop, tx bytes, tx errs, tx drop
            let now_v = [v[0], v[2], v[3], v[8], v[10], v[11]];
            let mut t = Table::new();
            let rate = |i: usize| match (self.previous_dev.get(name), elapsed) {
                (Some(p), Some(secs)) => round2(now_v[i].saturating_sub(p[i]) as f64 / secs),
                _ => 0.0,
            };
            t.insert("rx_bytes_per_second".into(), Value::Float(rate(0)));
            t.insert("tx_bytes_per_second".into(), Value::Float(rate(3)));
            t.insert("rx_errors".into(), Value::Integer(int(now_v[1])));
            t.insert("tx_errors".into(), Value::Integer(int(now_v[4])));
            t.insert("rx_dropped".into(), Value::Integer(int(now_v[2])));
            t.insert("tx_dropped".into(), Value::Integer(int(now_v[5])));
            interfaces.insert(name.to_owned(), Value::Table(t));
            current.insert(name.to_owned(), now_v);
        }
        self.previous_dev = current;
        let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut listening = BTreeSet::new();
        if !self.diag_tried {
            self.diag_tried = true;
            self.diag = SockDiag::open().ok();
        }
        let mut from_kernel = false;
        if let Some(diag) = self.diag.as_mut() {
            let mut count = |s: sockdiag::TcpSocket| {
                if let Some(name) = state_name(s.state) {
                    *by_state.entry(name).or_default() += 1;
                    if s.state == sockdiag::TCP_LISTEN {
                        listening.insert(s.local_port);
                    }
                }
            };
            from_kernel = diag
                .tcp_sockets(sockdiag::AF_INET, u32::MAX, &mut count)
                .and_then(|()| diag.tcp_sockets(sockdiag::AF_INET6, u32::MAX, &mut count))
                .is_ok();
            if !from_kernel {
                // Half-read replies must not confuse the next dump: a new socket next time.
                self.diag = None;
                self.diag_tried = false;
                by_state.clear();
                listening.clear();
            }
        }
        if !from_kernel {
            tcp_from_text(&mut self.file, &self.root, &mut by_state, &mut listening);
        }
        let text = self.snmp.text()?;
        let tcp: Vec<&str> = text.lines().filter(|l| l.starts_with("Tcp:")).collect();
        let counters = match (tcp.first(), tcp.get(1)) {
            (Some(names), Some(values)) => {
                let pairs: HashMap<&str, u64> = names
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
                    .collect();
                let g = |k: &str| pairs.get(k).copied().unwrap_or(0);
                [g("AttemptFails"), g("EstabResets"), g("RetransSegs")]
            }
            _ => [0; 3],
        };
        let delta = |i: usize| match self.previous_tcp {
            Some(p) => int(counters[i].saturating_sub(p[i])),
            None => 0,
        };
        let (failed, resets, retrans) = (delta(0), delta(1), delta(2));
        self.previous_tcp = Some(counters);
        let connections: i64 = by_state
            .iter()
            .filter(|(k, _)| **k != "listen")
            .map(|(_, v)| *v)
            .sum();
        let mut s = Table::new();
        s.insert("connections".into(), Value::Integer(connections));
        let mut states = Table::new();
        for (k, v) in &by_state {
            states.insert((*k).to_owned(), Value::Integer(*v));
        }
        s.insert("connections_by_state".into(), Value::Table(states));
        s.insert(
            "listening_ports".into(),
            Value::Array(
                listening
                    .iter()
                    .take(MAX_PORTS)
                    .map(|p| Value::Integer(i64::from(*p)))
                    .collect(),
            ),
        );
        s.insert("failed_connections".into(), Value::Integer(failed));
        s.insert("connection_resets".into(), Value::Integer(resets));
        s.insert("retransmitted_segments".into(), Value::Integer(retrans));
        s.insert("interfaces".into(), Value::Table(interfaces));
        let health = if failed > 100 {
            Health::Degraded
        } else {
            Health::Healthy
        };
        Ok(Sample { section: s, health })
    }
}

/// TCP states and listening ports from `/proc/net/tcp` and `tcp6` (where netlink is not available).
fn tcp_from_text(
    file: &mut ProcFile,
    root: &std::path::Path,
    by_state: &mut BTreeMap<&'static str, i64>,
    listening: &mut BTreeSet<u16>,
) {
    for name in ["net/tcp", "net/tcp6"] {
        let path = root.join(name);
        let Ok(text) = file.read(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(st)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let Some((_, name)) = STATES.iter().find(|(code, _)| *code == st) else {
                continue;
            };
            *by_state.entry(name).or_default() += 1;
            if *name == "listen"
                && let Some(port) = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                listening.insert(port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sees_a_listening_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = i64::from(listener.local_addr().unwrap().port());
        let mut n = NetworkSensor::new();
        let s = n.sample().await.unwrap().section;
        let ports: Vec<i64> = s["listening_ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_integer())
            .collect();
        assert!(
            ports.contains(&port) || ports.len() == MAX_PORTS,
            "{port} not in {ports:?}"
        );
        assert!(s["interfaces"].as_table().unwrap().contains_key("lo"));
    }

    #[test]
    fn netlink_and_proc_text_agree_on_listening_ports() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut text_states, mut text_ports) = (BTreeMap::new(), BTreeSet::new());
        tcp_from_text(
            &mut ProcFile::default(),
            std::path::Path::new("/proc"),
            &mut text_states,
            &mut text_ports,
        );
        let mut diag = SockDiag::open().unwrap();
        let mut ports = BTreeSet::new();
        for family in [sockdiag::AF_INET, sockdiag::AF_INET6] {
            diag.tcp_sockets(family, 1 << sockdiag::TCP_LISTEN, |s| {
                ports.insert(s.local_port);
            })
            .unwrap();
        }
        assert!(ports.contains(&port) && text_ports.contains(&port));
        assert_eq!(state_name(10), Some("listen"));
        assert_eq!(state_name(12), Some("syn_recv"));
        assert_eq!(state_name(1), Some("established"));
        assert_eq!(state_name(13), None);
    }
}
