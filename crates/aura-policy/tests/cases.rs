//! Data-driven policy cases: each `tests/cases/<name>.yaml` holds policy files and actions; the
//! decisions (or the load errors) must equal `tests/cases/<name>.expected`. Run with
//! `UPDATE_EXPECT=1` to rewrite the expectations after checking the diff.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use aura_core::{Action, AgentName, Estimate, RawAction, Timestamp};
use aura_policy::{CounterEvent, CounterQuery, Facts, PolicySet};
use serde_json::Value;

/// Monday 2026-01-05 00:00 UTC.
const MONDAY: i64 = 1_767_571_200_000;

/// Counter values by (event, kind); the window is ignored.
struct FakeFacts(BTreeMap<(CounterEvent, Option<String>), u64>);

impl Facts for FakeFacts {
    fn count(&self, _: &AgentName, query: &CounterQuery, _: u64) -> u64 {
        let kind = query.kind.map(|k| k.as_str().to_owned());
        self.0.get(&(query.event, kind)).copied().unwrap_or(0)
    }
}

#[test]
fn policy_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "cases missing");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for case in names {
        let actual = run_case(&case);
        let expected_path = case.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            if update {
                std::fs::write(&expected_path, &actual).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                    case.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run with UPDATE_EXPECT=1 to accept)",
        failures.join("\n\n")
    );
}

fn run_case(case: &Path) -> String {
    let text = std::fs::read_to_string(case).unwrap();
    let doc: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    let files: Vec<(String, String)> = doc["files"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no `files`", case.display()))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    let set = match PolicySet::from_sources(&files) {
        Ok(set) => set,
        Err(errors) => return format!("{errors}\n"),
    };
    let mut out = String::new();
    for spec in doc["actions"].as_array().cloned().unwrap_or_default() {
        let (title, action, at, facts) = action_of(&spec);
        out.push_str(&format!("== {title}\n"));
        match action {
            Ok(action) => {
                let e = set.evaluate(&action, Timestamp::from_millis(at), &facts);
                out.push_str(&e.to_text());
                if !e.obligations.is_empty() {
                    out.push_str(&format!("\n  obligations: {:?}", e.obligations));
                }
                out.push('\n');
            }
            Err(err) => out.push_str(&format!("invalid action: {err}\n")),
        }
    }
    out
}

/// `agent kind target` or `{agent, kind, target, args, labels, at: "mon 18:30", counts: {failure: 3, "denial:shell": 1}}`.
fn action_of(spec: &Value) -> (String, Result<Action, String>, i64, FakeFacts) {
    let (title, agent, kind, target, args, labels, at, counts) = match spec {
        Value::String(s) => {
            let parts: Vec<&str> = s.splitn(3, ' ').collect();
            assert_eq!(parts.len(), 3, "shorthand is `agent kind target`: {s}");
            (
                s.clone(),
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            )
        }
        Value::Object(m) => (
            serde_json::to_string(spec).unwrap(),
            m["agent"].as_str().unwrap().to_owned(),
            m["kind"].as_str().unwrap().to_owned(),
            m["target"].as_str().unwrap().to_owned(),
            m.get("args").cloned().unwrap_or(Value::Null),
            m.get("labels").cloned().unwrap_or(Value::Null),
            m.get("at").cloned().unwrap_or(Value::Null),
            m.get("counts").cloned().unwrap_or(Value::Null),
        ),
        other => panic!("bad action {other}"),
    };
    let labels: BTreeMap<String, String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let at = match at.as_str() {
        None => MONDAY,
        Some(s) => {
            let (day, time) = s.split_once(' ').unwrap();
            let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|d| *d == day)
                .unwrap() as i64;
            let (h, m) = time.split_once(':').unwrap();
            MONDAY
                + day * 86_400_000
                + h.parse::<i64>().unwrap() * 3_600_000
                + m.parse::<i64>().unwrap() * 60_000
        }
    };
    let mut facts = BTreeMap::new();
    for (k, v) in counts.as_object().cloned().unwrap_or_default() {
        let (event, kind) = match k.split_once(':') {
            Some((e, k)) => (e.to_owned(), Some(k.to_owned())),
            None => (k.clone(), None),
        };
        let event = match event.as_str() {
            "failure" => CounterEvent::Failure,
            "denial" => CounterEvent::Denial,
            "action" => CounterEvent::Action,
            "write" => CounterEvent::Write,
            other => panic!("bad counter {other}"),
        };
        facts.insert((event, kind), v.as_u64().unwrap());
    }
    let action = AgentName::new(agent.clone())
        .map_err(|e| e.to_string())
        .and_then(|agent| {
            Action::extract(RawAction {
                agent,
                task: None,
                kind,
                target,
                args,
                estimate: Estimate::default(),
                labels,
            })
            .map_err(|e| e.to_string())
        });
    (title, action, at, FakeFacts(facts))
}
