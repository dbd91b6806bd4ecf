//! Data-driven change-detector cases from `tests/cases/detect.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aura_context::detect::{ChangeDetector, DetectorOptions};
use toml::{Table, Value};

fn detector(opts: &str) -> ChangeDetector {
    let mut o = DetectorOptions::default();
    for kv in opts.split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "min_write_ms" => o.min_write_interval_ms = v.parse().unwrap(),
            "heartbeat_ms" => o.heartbeat_ms = v.parse().unwrap(),
            "adaptive" => o.adaptive = v.parse().unwrap(),
            "cpu" => o.thresholds.cpu_percent = v.parse().unwrap(),
            "memory" => o.thresholds.memory_percent = v.parse().unwrap(),
            "storage" => o.thresholds.storage_percent = v.parse().unwrap(),
            "connections" => o.thresholds.connections = v.parse().unwrap(),
            "spike" => o.spike_factor = v.parse().unwrap(),
            other => panic!("unknown option {other}"),
        }
    }
    ChangeDetector::new(o)
}

fn section(name: &str, kvs: &[&str]) -> Table {
    let mut t = Table::new();
    if name == "services" {
        let mut checks = Table::new();
        for kv in kvs {
            let (k, v) = kv.split_once('=').unwrap();
            let mut c = Table::new();
            c.insert("status".into(), Value::String(v.into()));
            checks.insert(k.into(), Value::Table(c));
        }
        t.insert("checks".into(), Value::Table(checks));
    } else {
        for kv in kvs {
            let (k, v) = kv.split_once('=').unwrap();
            t.insert(k.into(), Value::Float(v.parse().unwrap()));
        }
    }
    t
}

#[test]
fn detector_cases() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/detect.txt"
    ))
    .unwrap();
    let mut d = detector("");
    let mut case = String::new();
    let mut failures = Vec::new();
    let mut lines = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("case ") {
            let (name, opts) = rest.split_once(' ').unwrap_or((rest, ""));
            case = name.to_owned();
            d = detector(opts);
            continue;
        }
        lines += 1;
        let (input, expected) = line.split_once("=>").unwrap();
        let mut words = input.split_whitespace();
        let t: i64 = words
            .next()
            .unwrap()
            .strip_prefix("t=")
            .unwrap()
            .parse()
            .unwrap();
        let name = words.next().unwrap();
        let kvs: Vec<&str> = words.collect();
        let mut table = section(name, &kvs);
        let mut expected = expected.split_whitespace();
        let verdict = expected.next().unwrap();
        let obs = d.observe(name, &table);
        let got = if obs.changed && d.may_write(t, obs.critical) {
            d.annotate(name, &mut table);
            d.committed(name, &table, t);
            if obs.critical { "write!" } else { "write" }
        } else if obs.changed {
            "held"
        } else if d.heartbeat_due(t) {
            d.touched(t);
            "heartbeat"
        } else {
            "skip"
        };
        if got != verdict {
            failures.push(format!(
                "line {} [{case}] `{line}`: got {got} ({:?})",
                n + 1,
                obs.reasons
            ));
        }
        for check in expected {
            let (k, v) = check.split_once('=').unwrap();
            let found = table.get(k).and_then(Value::as_float);
            if found != Some(v.parse().unwrap()) {
                failures.push(format!(
                    "line {} [{case}]: {k} = {found:?}, expected {v}",
                    n + 1
                ));
            }
        }
    }
    assert!(lines > 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
