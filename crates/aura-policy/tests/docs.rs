//! Every YAML example in `docs/policies.md` loads, so the reference cannot drift from the parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn every_yaml_example_in_the_docs_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policies.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = 0;
    for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap();
        if let Err(e) =
            aura_policy::PolicySet::from_sources(&[(format!("docs-example-{i}.yaml"), body)])
        {
            panic!("docs example {i} does not load:\n{e}\n---\n{body}");
        }
        blocks += 1;
    }
    assert!(blocks >= 8, "only {blocks} YAML examples found");
}
