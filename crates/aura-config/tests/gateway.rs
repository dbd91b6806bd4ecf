//! The `gateway` section: the documented example loads and validates; mistakes get a position.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;

use aura_config::{ProviderKind, parse_str};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

#[test]
fn documented_gateway_example_loads_and_validates() {
    let docs = fs::read_to_string(DOCS).unwrap();
    let example = docs
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .find(|block| block.starts_with("gateway:"))
        .expect("a gateway example in the docs");
    let config = parse_str(example, Path::new("aura.yaml")).unwrap();
    let gateway = config.gateway.expect("gateway section");
    gateway.validate().unwrap();
    assert_eq!(gateway.providers[1].kind, ProviderKind::Anthropic);
    assert_eq!(gateway.models[0].fallbacks, ["gpt-4o-mini"]);
    assert!(gateway.cache.responses);
    assert_eq!(
        gateway.timeout_seconds, 60,
        "defaults fill what is left out"
    );
}

#[test]
fn gateway_mistakes_are_reported() {
    let err = parse_str(
        "gateway:\n  providers:\n    - { name: x, kind: openia, base_url: http://h }\n",
        Path::new("aura.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("aura.yaml:3"), "{err}");
    let config = parse_str(
        "gateway:\n  providers: [{ name: p, kind: openai, base_url: http://h }]\n  models:\n    - { name: m, deployments: [{ provider: q, model: m }] }\n",
        Path::new("aura.yaml"),
    )
    .unwrap();
    let why = config.gateway.unwrap().validate().unwrap_err();
    assert!(why.contains("unknown provider `q`"), "{why}");
}
