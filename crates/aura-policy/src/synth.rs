//! Synthetic policies and workloads for benchmarks (`aura bench kernel --rules N`).
//!
//! The policy looks like a real fleet's: teams of agents with their own levels and paths, rules
//! per agent (most of them), per team (globs), for everyone on labels, business hours and failure
//! counters; the workload is actions by those agents on those targets, so rules actually match.

use std::collections::BTreeMap;

use aura_core::{Action, ActionKind, AgentName, Estimate, RawAction};
use serde_json::{Value, json};

use crate::set::PolicySet;

/// A policy of about `rules` rules and a workload of 1,000 actions, both determined by `seed`.
pub fn realistic(rules: usize, seed: u64) -> (PolicySet, Vec<Action>) {
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let teams = (rules / 50).clamp(2, 40);
    let agents_per_team = 5;
    let mut yaml = String::from("levels:\n");
    for t in 0..teams {
        yaml.push_str(&format!(
            "  team-{t}:\n    read: [\"/srv/t{t}/**\", \"/workspace/**\"]\n    write: [\"/srv/t{t}/data/**\", \"/tmp/**\"]\n    network: [\"api-{t}.example.com\", \"*.internal:443\"]\n    exec: [git, ls, kubectl, \"/opt/t{t}/bin/*\"]\n"
        ));
    }
    yaml.push_str("agents:\n");
    let mut agents = Vec::new();
    for t in 0..teams {
        for i in 0..agents_per_team {
            let name = format!("t{t}-agent-{i}");
            let level = if i == 0 {
                "elevated".to_owned()
            } else {
                format!("team-{t}")
            };
            yaml.push_str(&format!("  {name}: {{ level: {level} }}\n"));
            agents.push((t, name));
        }
    }
    yaml.push_str("rules:\n");
    for r in 0..rules {
        let (t, agent) = &agents[rng.below(agents.len())];
        let k = rng.below(20);
        let body = match rng.below(10) {
            // Per agent, literal name: most rules.
            0..=4 => match rng.below(4) {
                0 => format!(
                    "when: {{ agent: {agent}, kind: llm_call, target: [\"gpt-4o*\", \"claude-*\"], args: {{ max_tokens: {{ lte: {} }} }} }}\n    then: allow",
                    1000 * (1 + rng.below(16))
                ),
                1 => format!(
                    "when: {{ agent: {agent}, kind: tool_call, target: tool-{k} }}\n    then: allow"
                ),
                2 => format!(
                    "when: {{ agent: {agent}, kind: [file_write, file_read], target: \"/srv/t{t}/data/app-{k}/**\" }}\n    then: allow"
                ),
                _ => format!(
                    "when: {{ agent: {agent}, kind: http_request, target: \"https://api-{t}.example.com/v{k}/**\", args: {{ method: {{ in: [GET, POST] }} }} }}\n    then: allow"
                ),
            },
            // Per team, agent glob.
            5 | 6 => match rng.below(3) {
                0 => format!(
                    "when: {{ agent: \"t{t}-*\", kind: http_request, args: {{ method: {{ in: [DELETE, PUT] }} }} }}\n    then: {{ verdict: escalate, reason: mutating requests need approval }}"
                ),
                1 => format!(
                    "when: {{ agent: \"t{t}-*\", kind: llm_call, args: {{ max_tokens: {{ gt: {} }} }} }}\n    then: {{ verdict: escalate, reason: large completions need approval }}",
                    4000 + 1000 * rng.below(8)
                ),
                _ => format!(
                    "when: {{ agent: \"t{t}-*\", kind: file_write, target: \"/srv/t{t}/data/app-{k}/secrets/**\" }}\n    then: {{ verdict: deny, reason: secrets are read-only }}"
                ),
            },
            // Everyone: labels.
            7 => format!(
                "when: {{ kind: [shell, file_write], labels: {{ env: [prod, \"prod-*\"] }}, target: \"/srv/t{t}/**\" }}\n    then: {{ verdict: escalate, reason: production changes need approval }}"
            ),
            // Business hours.
            8 => format!(
                "when: {{ agent: \"t{t}-*\", kind: tool_call, target: \"deploy-*\", time: {{ days: [mon, tue, wed, thu, fri], between: [\"18:00\", \"08:00\"] }} }}\n    then: {{ verdict: deny, reason: no deploys after hours }}"
            ),
            // Failure counters.
            _ => format!(
                "when: {{ agent: \"t{t}-*\", kind: write, count: {{ of: failure, at_least: {}, within: 10m }} }}\n    then: {{ verdict: deny, reason: too many failures }}",
                3 + rng.below(5)
            ),
        };
        yaml.push_str(&format!("  - id: rule-{r}\n    {body}\n"));
    }
    let set = PolicySet::from_sources(&[("synth.yaml", yaml.as_str())])
        .unwrap_or_else(|_| PolicySet::empty());
    let mut actions = Vec::with_capacity(1000);
    while actions.len() < 1000 {
        let (t, agent) = &agents[rng.below(agents.len())];
        let k = rng.below(20);
        let (kind, target, args) = match rng.below(6) {
            0 => (
                ActionKind::LlmCall,
                "gpt-4o-mini".to_owned(),
                json!({ "max_tokens": 500 * (1 + rng.below(20)) }),
            ),
            1 => (
                ActionKind::ToolCall,
                if rng.below(4) == 0 {
                    format!("deploy-{k}")
                } else {
                    format!("tool-{k}")
                },
                json!({ "q": "status" }),
            ),
            2 => (
                ActionKind::FileWrite,
                format!("/srv/t{t}/data/app-{k}/file-{}.json", rng.below(100)),
                Value::Null,
            ),
            3 => (
                ActionKind::FileRead,
                format!("/srv/t{t}/data/app-{k}/config.yaml"),
                Value::Null,
            ),
            4 => (
                ActionKind::HttpRequest,
                format!("https://api-{t}.example.com/v{k}/items/{}", rng.below(1000)),
                json!({ "method": METHODS[rng.below(3)] }),
            ),
            _ => (
                ActionKind::Shell,
                ["git", "kubectl", "rm"][rng.below(3)].to_owned(),
                json!({ "argv": ["status"] }),
            ),
        };
        let labels: BTreeMap<String, String> = if rng.below(3) == 0 {
            [("env".to_owned(), "prod".to_owned())]
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
        let Ok(agent) = AgentName::new(agent.as_str()) else {
            continue;
        };
        let raw = RawAction {
            agent,
            task: None,
            kind: kind.as_str().to_owned(),
            target,
            args,
            estimate: Estimate::default(),
            labels,
        };
        if let Ok(action) = Action::extract(raw) {
            actions.push(action);
        }
    }
    (set, actions)
}

const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // INVARIANT: the result is < n, which fits in usize.
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::NoFacts;
    use aura_core::{Timestamp, Verdict};

    #[test]
    fn synthetic_policies_load_and_decide_variously() {
        let (set, actions) = realistic(200, 7);
        assert_eq!(set.rules().len(), 200);
        assert_eq!(actions.len(), 1000);
        let mut verdicts = std::collections::BTreeMap::new();
        for a in &actions {
            let e = set.evaluate(a, Timestamp::from_millis(1_767_571_200_000), &NoFacts);
            *verdicts.entry(e.verdict).or_insert(0) += 1;
        }
        for v in [Verdict::Allow, Verdict::Escalate, Verdict::Deny] {
            assert!(verdicts.get(&v).copied().unwrap_or(0) > 10, "{verdicts:?}");
        }
        let (again, _) = realistic(200, 7);
        assert_eq!(set.bundle_hash(), again.bundle_hash());
    }
}
