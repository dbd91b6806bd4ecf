//! Measures evaluation latency on synthetic policies: `cargo run --release -p aura-policy --example bench_eval`.
//!
//! Two counter stores: `NoFacts` (every counter zero, free) and `counting`, which costs about 60 ns
//! per call like the kernel's sliding windows (`SlidingCounters::count`) and returns a non-zero
//! count, so counter rules can match. `calls/eval` is the mean number of counter reads.

use std::cell::Cell;
use std::time::{Duration, Instant};

use aura_core::{Action, AgentName, Timestamp};
use aura_policy::{CounterQuery, Facts, NoFacts, PolicySet, synth};

/// A counter store that spins for a calibrated ~60 ns per read, like the kernel's.
struct CountingFacts {
    spins: u64,
    calls: Cell<u64>,
}

impl CountingFacts {
    /// Calibrates the spin loop so one call costs about `cost`.
    fn calibrated(cost: Duration) -> CountingFacts {
        let probe = CountingFacts {
            spins: 1_000,
            calls: Cell::new(0),
        };
        let agent = AgentName::new("calibration").ok();
        let query = CounterQuery {
            event: aura_policy::CounterEvent::Failure,
            kind: None,
        };
        let reps = 20_000u32;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                if let Some(a) = &agent {
                    std::hint::black_box(probe.count(a, &query, 600_000));
                }
            }
            best = best.min(t.elapsed().as_secs_f64() / f64::from(reps));
        }
        let per_spin = best / 1_000.0;
        CountingFacts {
            spins: ((cost.as_secs_f64() / per_spin) as u64).max(1),
            calls: Cell::new(0),
        }
    }
}

impl Facts for CountingFacts {
    fn count(&self, agent: &AgentName, _: &CounterQuery, window_ms: u64) -> u64 {
        self.calls.set(self.calls.get() + 1);
        let mut x = agent.as_str().len() as u64 ^ window_ms;
        for _ in 0..self.spins {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        // Keep the answer data-independent of the spin: 0..=7 failures, so some rules match.
        (agent.as_str().len() as u64 + (x & 1)) % 8
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
    let counting = CountingFacts::calibrated(Duration::from_nanos(60));
    for rules in [100, 1_000, 10_000] {
        let started = Instant::now();
        let (set, actions) = synth::realistic(rules, 42);
        let load = started.elapsed();
        println!(
            "rules={rules:>6} load={:>7.1}ms",
            load.as_secs_f64() * 1000.0
        );
        measure("nofacts ", &set, &actions, &NoFacts, None);
        measure("counting", &set, &actions, &counting, Some(&counting.calls));
    }
}

fn measure(
    label: &str,
    set: &PolicySet,
    actions: &[Action],
    facts: &dyn Facts,
    calls: Option<&Cell<u64>>,
) {
    let now = Timestamp::from_millis(1_767_636_000_000); // a Monday, 18:00 UTC
    for a in actions {
        std::hint::black_box(set.evaluate(a, now, facts));
    }
    let rounds = 50;
    let before = calls.map_or(0, Cell::get);
    let mut samples = Vec::with_capacity(actions.len() * rounds);
    for _ in 0..rounds {
        for a in actions {
            let t = Instant::now();
            std::hint::black_box(set.evaluate(std::hint::black_box(a), now, facts));
            samples.push(t.elapsed().as_nanos());
        }
    }
    let per_eval = calls.map_or(0, Cell::get).saturating_sub(before) as f64 / samples.len() as f64;
    samples.sort_unstable();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    println!(
        "         {label} p50={:.2}µs p90={:.2}µs p99={:.2}µs max={:.1}µs  calls/eval={per_eval:.2}  ({} evaluations)",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        samples.len()
    );
}
