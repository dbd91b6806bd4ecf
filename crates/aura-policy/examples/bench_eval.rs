//! Measures evaluation latency on synthetic policies: `cargo run --release -p aura-policy --example bench_eval`.

use std::time::Instant;

use aura_core::{AgentName, Timestamp};
use aura_policy::{CounterQuery, Facts, synth};

/// A counter store answering from memory, like the kernel's sliding windows would.
struct FixedFacts;

impl Facts for FixedFacts {
    fn count(&self, agent: &AgentName, _: &CounterQuery, _: u64) -> u64 {
        agent.as_str().len() as u64 % 4
    }
}

fn main() {
    for rules in [100, 1_000] {
        let (set, _) = synth::realistic(rules, 42);
        let started = Instant::now();
        let findings = aura_policy::check(&set);
        println!(
            "rules={rules:>6} check: {} findings in {:.1}ms",
            findings.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    for rules in [100, 1_000, 10_000] {
        let started = Instant::now();
        let (set, actions) = synth::realistic(rules, 42);
        let load = started.elapsed();
        let now = Timestamp::from_millis(1_767_636_000_000); // a Monday, 18:00 UTC
        for a in &actions {
            std::hint::black_box(set.evaluate(a, now, &FixedFacts));
        }
        let mut samples = Vec::with_capacity(actions.len() * 50);
        for _ in 0..50 {
            for a in &actions {
                let t = Instant::now();
                std::hint::black_box(set.evaluate(std::hint::black_box(a), now, &FixedFacts));
                samples.push(t.elapsed().as_nanos());
            }
        }
        samples.sort_unstable();
        let pct = |p: f64| {
            samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
        };
        println!(
            "rules={rules:>6} load={:>7.1}ms  p50={:.2}µs p90={:.2}µs p99={:.2}µs max={:.1}µs  ({} evaluations)",
            load.as_secs_f64() * 1000.0,
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0),
            samples.len()
        );
    }
}
