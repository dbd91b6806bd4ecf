//! The fuzz entry point: arbitrary bytes through the loader, the validator and the evaluator.

use aura_core::{Action, AgentName, Estimate, RawAction, Timestamp};

use crate::check::check;
use crate::eval::NoFacts;
use crate::set::PolicySet;

/// Parses `bytes` as one policy file and, if it loads, runs the validator and evaluates a few
/// actions. Must never panic, whatever the input (the cargo-fuzz target and a CI smoke test call
/// it).
pub fn fuzz_parse(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let Ok(set) = PolicySet::from_sources(&[("fuzz.yaml", text.as_ref())]) else {
        return;
    };
    if set.rules().len() <= 16 {
        let _ = check(&set);
    }
    let Ok(agent) = AgentName::new("fuzz") else {
        return;
    };
    for (kind, target) in [
        ("file_write", "/workspace/a"),
        ("http_request", "https://example.com/x"),
        ("shell", "ls"),
        ("llm_call", "gpt-4o"),
    ] {
        let raw = RawAction {
            agent: agent.clone(),
            task: None,
            kind: kind.to_owned(),
            target: target.to_owned(),
            args: serde_json::json!({"method": "POST", "max_tokens": 10, "argv": ["-x"]}),
            estimate: Estimate::default(),
            labels: [("env".to_owned(), "prod".to_owned())]
                .into_iter()
                .collect(),
        };
        if let Ok(action) = Action::extract(raw) {
            let _ = set.evaluate(&action, Timestamp::from_millis(0), &NoFacts);
        }
    }
}
