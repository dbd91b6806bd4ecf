//! In-process query latency over a synthetic fleet, without the rest of `aura` (the same shapes as
//! `aura bench catalog`): `cargo run --release -p aura-catalog --example bench_queries -- 10000`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use aura_catalog::{Catalog, CatalogSettings, synth};

const SHAPES: &[&str] = &[
    "kind = container and cpu.percent > 80",
    "health = unhealthy",
    "labels.app = web and cpu > 50 sort by cpu desc limit 10 fields name, cpu",
    "id = host-0007",
    "count() by host",
    "count() by kind, health",
    "kind = host | avg(cpu), max(mem)",
    "mem > 95 or disk > 98 limit 20",
];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let reps: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let catalog = Catalog::new(CatalogSettings::default());
    let t = Instant::now();
    for a in synth::fleet(n, 42) {
        catalog.upsert(a);
    }
    println!("assets {n}, load {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let mut all = Vec::new();
    for shape in SHAPES {
        let matched = catalog.query(shape).unwrap().matched;
        let mut lat: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(catalog.query(shape).unwrap());
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        all.extend_from_slice(&lat);
        lat.sort_by(f64::total_cmp);
        println!(
            "{shape:<75} p50 {:>8.1} µs  p99 {:>8.1} µs  ({matched} matched)",
            lat[lat.len() / 2],
            lat[(lat.len() - 1) * 99 / 100]
        );
    }
    all.sort_by(f64::total_cmp);
    println!(
        "all shapes: p50 {:.1} µs, p99 {:.1} µs",
        all[all.len() / 2],
        all[(all.len() - 1) * 99 / 100]
    );
}
