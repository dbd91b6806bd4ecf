//! Aura's policy language: a directory of YAML files a non-developer can read, compiled into a
//! typed, loop-free [`PolicySet`] and evaluated against validated [`aura_core::Action`]s.
//!
//! ```
//! use aura_core::{Action, AgentName, Estimate, RawAction, Timestamp, Verdict};
//! use aura_policy::{NoFacts, PolicySet};
//!
//! let set = PolicySet::from_sources(&[(
//!     "base.yaml",
//!     "agents:\n  coder: { level: standard }\nrules:\n  - id: models\n    when: { kind: llm_call, target: \"gpt-*\" }\n    then: allow\n",
//! )])
//! .map_err(|e| e.to_string())?;
//! let action = Action::extract(RawAction {
//!     agent: AgentName::new("coder")?,
//!     task: None,
//!     kind: "llm_call".into(),
//!     target: "gpt-4o".into(),
//!     args: serde_json::Value::Null,
//!     estimate: Estimate::default(),
//!     labels: Default::default(),
//! })?;
//! let decision = set.evaluate(&action, Timestamp::from_millis(0), &NoFacts);
//! assert_eq!(decision.verdict, Verdict::Allow);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Semantics (see `docs/policies.md`): every matching rule and the level check contribute a
//! reason; verdicts combine HALT > DENY > ESCALATE > ALLOW; when nothing allows, `default_deny`.
//!
//! Architecture invariant: evaluation does no I/O and reads no clock; time is passed in and
//! counters are read through [`Facts`]. Budgets, pools, rate limits, breakers, bulkheads, content
//! checks, loops, approvals and the dependency graph are only parsed and validated here; the
//! governance kernel enforces them.

mod check;
mod error;
mod eval;
mod fuzz;
mod parse;
mod set;
mod spec;
pub mod synth;
mod yaml;

pub use check::{Finding, FindingClass, Widening, Witness, check, widening};
pub use error::{Location, PolicyError, PolicyErrors};
pub use eval::{Evaluation, Facts, NoFacts, Obligation};
pub use fuzz::fuzz_parse;
pub use set::{DependencyGraph, PolicySet};
pub use spec::{
    AgentSpec, ApprovalSpec, Breaker, Budget, BudgetAction, Bulkhead, Conditions, ContentSpec,
    CountCondition, CounterEvent, CounterQuery, FieldCondition, FieldTest, InjectionMode,
    LabelCondition, Level, Limit, Literal, LoopSpec, OnHalt, Pattern, Period, Pool, Rate,
    RateLimit, Rule, RuleId, Scope, SecretsMode, Subject, Then, Threshold, TimeWindow, Weekday,
};
