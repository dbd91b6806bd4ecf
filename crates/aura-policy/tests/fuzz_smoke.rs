//! CI smoke for the fuzz entry point: random bytes and YAML-ish mutations of real policies must
//! never make the loader, validator or evaluator panic.

use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("fixtures/seed004/agents.yaml"),
    include_str!("fixtures/seed004/budgets.yaml"),
    "rules:\n  - id: a\n    when: { kind: [shell, write], target: \"/srv/**\", args: { n: { gt: 1, lt: 9 }, m: { in: [1, x] } }, labels: { env: prod }, time: { days: [mon], between: [\"18:00\", \"08:00\"] }, count: { of: failure, at_least: 3, within: 10m } }\n    then: { verdict: deny, reason: x }\n",
    "agents:\n  a: &x { level: standard }\n  b: *x\nlevels:\n  standard: { read: [\"/**\"], network: [\"*.x.com:443\"], exec: [\"/bin/*\"] }\n",
];

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "\n",
    "  ",
    "\t",
    "&a ",
    "*a",
    "<<: ",
    "---\n",
    "#",
    "!!str ",
    "~",
    "**",
    "\\",
    "gt: ",
    "at: 200%",
    "cost_usd: 1.0000001",
    "within: 0s",
    "kind: write",
    "agent: \"*\"",
    "then: halt",
    "é",
    "\u{feff}",
];

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(SEEDS),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                proptest::sample::select(TOKENS),
                any::<bool>(),
            ),
            1..8,
        ),
    )
        .prop_map(|(seed, edits)| {
            let mut text = seed.as_bytes().to_vec();
            for (at, token, delete) in edits {
                let i = at.index(text.len() + 1);
                if delete && i < text.len() {
                    let end = (i + token.len()).min(text.len());
                    text.drain(i..end);
                } else {
                    text.splice(i..i, token.bytes());
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        aura_policy::fuzz_parse(&bytes);
    }

    #[test]
    fn yaml_mutations_never_panic(bytes in mutated()) {
        aura_policy::fuzz_parse(&bytes);
    }
}
