//! Synthetic fleets for benchmarks and tests: hosts with containers, pods and services, deterministic per seed.

use serde_json::{Map, Value, json};

use crate::asset::{Asset, AssetKind, Health};

/// A small deterministic generator (SplitMix64), so fleets are reproducible without a RNG dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` assets: one host per 20 assets, the rest containers, pods and services spread over the hosts.
pub fn fleet(n: usize, seed: u64) -> Vec<Asset> {
    let mut rng = Rng::new(seed);
    let hosts = n.div_ceil(20).max(1);
    (0..n).map(|i| asset(i, hosts, &mut rng)).collect()
}

/// Asset number `i` of a fleet with `hosts` hosts.
pub fn asset(i: usize, hosts: usize, rng: &mut Rng) -> Asset {
    let host_name = format!("host-{:04}", i % hosts);
    let (kind, id) = if i < hosts {
        (AssetKind::Host, host_name.clone())
    } else {
        let kind = match i % 3 {
            0 => AssetKind::Container,
            1 => AssetKind::Pod,
            _ => AssetKind::Service,
        };
        (kind, format!("{}-{i:05}", kind.as_str()))
    };
    let mut a = Asset::new(&id, kind, &id, "2026-11-21T10:00:00Z");
    a.set_host(&host_name);
    let health = match rng.below(100) {
        0..=84 => Health::Healthy,
        85..=94 => Health::Degraded,
        95..=97 => Health::Unhealthy,
        _ => Health::Unknown,
    };
    a.set_health(health);
    update_metrics(&mut a, rng);
    let apps = ["web", "api", "db", "cache", "worker", "queue"];
    let app = apps[rng.below(apps.len() as u64) as usize];
    let envs = ["prod", "staging", "dev"];
    let env = envs[rng.below(3) as usize];
    let mut labels = Map::new();
    labels.insert("app".into(), Value::from(app));
    labels.insert("env".into(), Value::from(env));
    a.set_section("labels", labels);
    if kind == AssetKind::Container {
        let mut c = Map::new();
        c.insert(
            "image".into(),
            Value::from(format!("registry.local/{app}:1.{}", rng.below(5))),
        );
        c.insert("state".into(), Value::from("running"));
        c.insert("ports".into(), json!([80 + rng.below(3) * 1000]));
        a.set_section("container", c);
    }
    a
}

/// Fresh sensor readings (`compute`, `memory`, `storage`, `network`) for an asset.
pub fn update_metrics(a: &mut Asset, rng: &mut Rng) {
    let cpu = (rng.unit() * 1000.0).round() / 10.0;
    let mem = (rng.unit() * 1000.0).round() / 10.0;
    let load = (rng.unit() * 800.0).round() / 100.0;
    let mut compute = Map::new();
    compute.insert("cpu_percent".into(), json!(cpu));
    compute.insert("cpu_count".into(), json!(2 + rng.below(4) * 2));
    compute.insert("load_1".into(), json!(load));
    compute.insert("load_5".into(), json!((load * 90.0).round() / 100.0));
    compute.insert("load_15".into(), json!((load * 80.0).round() / 100.0));
    a.set_section("compute", compute);
    let total: u64 = (4 + rng.below(60)) << 30;
    let mut memory = Map::new();
    memory.insert("used_percent".into(), json!(mem));
    memory.insert("total_bytes".into(), json!(total));
    memory.insert(
        "available_bytes".into(),
        json!((total as f64 * (1.0 - mem / 100.0)) as u64),
    );
    a.set_section("memory", memory);
    let mut storage = Map::new();
    storage.insert(
        "used_percent".into(),
        json!((rng.unit() * 1000.0).round() / 10.0),
    );
    a.set_section("storage", storage);
    let mut network = Map::new();
    network.insert("rx_bytes_per_sec".into(), json!(rng.below(10_000_000)));
    network.insert("tx_bytes_per_sec".into(), json!(rng.below(10_000_000)));
    a.set_section("network", network);
}
