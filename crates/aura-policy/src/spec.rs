//! The typed policy: what the YAML says, validated, as plain Rust values.
//!
//! Rules are evaluated by this crate; the state-dependent specs (budgets, pools, rate limits,
//! breakers, bulkheads, content, loops, approvals, the dependency graph) are only parsed and
//! validated here and enforced by the governance kernel. Money is integer micro-dollars, durations
//! are milliseconds.

use std::fmt;
use std::sync::Arc;

use aura_core::{Action, ActionKind, AgentName, Verdict};
use globset::{GlobBuilder, GlobMatcher};

use crate::error::Location;

/// The id of a rule (or of a budget, rate limit, breaker, bulkhead). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(Arc<str>);

impl RuleId {
    pub(crate) fn new(id: &str) -> RuleId {
        RuleId(Arc::from(id))
    }

    /// The id as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A glob as written in a policy, compiled. `*` and `?` stay within one `/`-separated segment, `**`
/// crosses segments, `{a,b}` is either, `[abc]` a class; `\` escapes.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    glob: String,
    matcher: GlobMatcher,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.glob == other.glob
    }
}

impl Pattern {
    /// Compiles `text` as a glob. The error is globset's explanation.
    pub fn new(text: &str) -> Result<Pattern, String> {
        Pattern::with_glob(text, text.to_owned())
    }

    /// A pattern displayed as `text` but matching with `glob` (for network patterns).
    pub(crate) fn with_glob(text: &str, glob: String) -> Result<Pattern, String> {
        let matcher = build_glob(&glob)?.compile_matcher();
        Ok(Pattern {
            text: text.to_owned(),
            glob,
            matcher,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The glob actually matched (differs from [`Pattern::as_str`] only for network patterns).
    pub fn glob(&self) -> &str {
        &self.glob
    }

    /// Whether the pattern has no glob syntax and so matches exactly one string.
    pub fn is_literal(&self) -> bool {
        !self.glob.contains(['*', '?', '[', ']', '{', '}', '\\'])
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

/// The glob options every policy glob uses.
pub(crate) fn build_glob(glob: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// A rule: when its conditions all hold, it contributes its verdict and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id.
    pub id: RuleId,
    /// Optional human description.
    pub description: Option<String>,
    /// The conditions; all must hold.
    pub when: Conditions,
    /// The verdict and reason contributed when the rule matches.
    pub then: Then,
    /// Where the rule starts.
    pub at: Location,
}

/// A rule's conditions. A missing condition places no restriction; lists are "any of".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conditions {
    /// Agent name globs.
    pub agent: Option<Vec<Pattern>>,
    /// Action kinds.
    pub kind: Option<Vec<ActionKind>>,
    /// Globs on the canonical target.
    pub target: Option<Vec<Pattern>>,
    /// Conditions on argument fields; all must hold.
    pub args: Vec<FieldCondition>,
    /// Conditions on labels; all must hold.
    pub labels: Vec<LabelCondition>,
    /// A UTC time window.
    pub time: Option<TimeWindow>,
    /// A stateful counter threshold, read through [`crate::Facts`].
    pub count: Option<CountCondition>,
}

/// A condition on one argument field (a dotted path into the args object).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    /// The path, e.g. `["headers", "x-env"]` for `headers.x-env`.
    pub path: Vec<String>,
    /// The tests; all must hold. On an array value, some element must pass them all.
    pub tests: Vec<FieldTest>,
}

/// One test on an argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldTest {
    /// Equal to the literal.
    Eq(Literal),
    /// Equal to one of the literals.
    In(Vec<Literal>),
    /// A number greater than.
    Gt(f64),
    /// A number greater than or equal to.
    Gte(f64),
    /// A number less than.
    Lt(f64),
    /// A number less than or equal to.
    Lte(f64),
    /// A string matching the glob.
    Matches(Pattern),
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
}

/// A literal value in a condition. Unquoted YAML scalars are typed (`5` is a number, `true` a
/// boolean); quoted ones are always strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null` or empty.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
}

impl Literal {
    /// Whether the JSON value equals this literal (numbers compare numerically).
    pub fn equals(&self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self, value) {
            (Literal::Null, J::Null) => true,
            (Literal::Bool(a), J::Bool(b)) => a == b,
            (Literal::Number(a), J::Number(b)) => b.as_f64() == Some(*a),
            (Literal::String(a), J::String(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A condition on one label: the label is present and matches one of the globs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelCondition {
    /// The label key.
    pub key: String,
    /// Value globs; any may match.
    pub values: Vec<Pattern>,
}

/// Days of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// The three-letter lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    /// The day (UTC) of a time in milliseconds since the Unix epoch (a Thursday).
    pub fn of_millis(millis: i64) -> Weekday {
        let days = millis.div_euclid(86_400_000);
        // INVARIANT: rem_euclid(7) is in 0..7, a valid index.
        Weekday::ALL[usize::try_from((days + 3).rem_euclid(7)).unwrap_or(0)]
    }
}

/// A UTC time window: on one of `days` (all days if `None`), between two times of day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// The days, if restricted.
    pub days: Option<Vec<Weekday>>,
    /// Minutes after midnight: start (inclusive) and end (exclusive). When start > end the window
    /// wraps midnight (`18:00`–`08:00`). `None` means the whole day.
    pub between: Option<(u16, u16)>,
}

impl TimeWindow {
    /// Whether the time (milliseconds since the Unix epoch) is inside the window.
    pub fn contains(&self, millis: i64) -> bool {
        if let Some(days) = &self.days
            && !days.contains(&Weekday::of_millis(millis))
        {
            return false;
        }
        match self.between {
            None => true,
            Some((start, end)) => {
                let minute = millis.rem_euclid(86_400_000) / 60_000;
                let (start, end) = (i64::from(start), i64::from(end));
                if start <= end {
                    minute >= start && minute < end
                } else {
                    minute >= start || minute < end
                }
            }
        }
    }
}

/// What a stateful counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterEvent {
    /// Actions that were allowed and then failed.
    Failure,
    /// Actions that were denied or halted.
    Denial,
    /// Actions decided (any verdict).
    Action,
    /// Write actions allowed (see [`ActionKind::is_write`]).
    Write,
}

impl CounterEvent {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CounterEvent::Failure => "failure",
            CounterEvent::Denial => "denial",
            CounterEvent::Action => "action",
            CounterEvent::Write => "write",
        }
    }
}

/// The counter a `count` condition reads: events of one type, optionally of one action kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterQuery {
    /// What is counted.
    pub event: CounterEvent,
    /// Only actions of this kind (`None`: any kind).
    pub kind: Option<ActionKind>,
}

/// `count: {of: failure, kind: any, at_least: 3, within: 10m}`: holds when the acting agent had at
/// least `at_least` such events in the last `within_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountCondition {
    /// The counter.
    pub query: CounterQuery,
    /// The threshold.
    pub at_least: u64,
    /// The sliding window, in milliseconds.
    pub within_ms: u64,
}

/// What a matching rule contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Then {
    /// The verdict.
    pub verdict: Verdict,
    /// The message given as reason (defaults to the description, else `rule `id``).
    pub reason: String,
}

/// A permission level (seed 004): what file paths an agent may read and write, which hosts it may
/// reach and which programs it may run. Applies to `file_read`, `file_write`, `http_request` and
/// `shell` actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// The level's name.
    pub name: String,
    /// Path globs for `file_read`.
    pub read: Vec<Pattern>,
    /// Path globs for `file_write`.
    pub write: Vec<Pattern>,
    /// `[scheme://]host[:port]` globs for `http_request`.
    pub network: Vec<Pattern>,
    /// Program globs for `shell`: without a `/` they match the program's file name, with one the
    /// whole path.
    pub exec: Vec<Pattern>,
    /// Where the level is defined (`None` for a built-in level).
    pub at: Option<Location>,
}

/// What happens to an agent's dependents when it is halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHalt {
    /// Nothing.
    None,
    /// Its dependents are paused.
    PauseDependents,
    /// Its dependents are halted too.
    HaltDependents,
}

/// An agent entry. The entry named `*` applies to every agent not declared by name.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// The agent's name, or `*`.
    pub name: String,
    /// Its permission level (default `restricted`).
    pub level: String,
    /// The pools it draws from (besides pools that list it as a member).
    pub pools: Vec<String>,
    /// Agents it depends on.
    pub depends_on: Vec<String>,
    /// What its halt does to its dependents.
    pub on_halt: OnHalt,
    /// Where the entry is.
    pub at: Location,
}

/// Limits on cost, tokens, effort and risk; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// Cost in micro-dollars (`cost_usd: 12.50` is 12_500_000).
    pub cost_micros: Option<i64>,
    /// Tokens.
    pub tokens: Option<u64>,
    /// Effort (steps).
    pub effort: Option<u64>,
    /// Risk points.
    pub risk: Option<u64>,
}

impl Limit {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limit::default()
    }
}

/// A shared budget pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// Agents listed under `members` (agents may also join with their own `pools:`).
    pub members: Vec<String>,
    /// Per-day limits.
    pub daily: Limit,
    /// Per-month limits.
    pub monthly: Limit,
    /// Where the pool is defined.
    pub at: Location,
}

/// Budget periods (calendar, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// A clock hour.
    Hour,
    /// A day.
    Day,
    /// A week starting Monday.
    Week,
    /// A calendar month.
    Month,
}

/// Who a budget, rate limit or bulkhead applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// Everyone together.
    Global,
    /// Each agent whose name matches, separately.
    Agent(Pattern),
    /// The members of a pool together.
    Pool(String),
}

/// A scope: a subject, optionally narrowed to one kind of action and a target glob.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Who.
    pub subject: Subject,
    /// Only actions of this kind.
    pub kind: Option<ActionKind>,
    /// Only actions whose target matches.
    pub target: Option<Pattern>,
}

impl Scope {
    /// Whether the action falls in the scope, given the pools its agent belongs to.
    pub fn applies_to(&self, action: &Action, agent_pools: &[String]) -> bool {
        let who = match &self.subject {
            Subject::Global => true,
            Subject::Agent(p) => p.is_match(action.agent().as_str()),
            Subject::Pool(pool) => agent_pools.iter().any(|p| p == pool),
        };
        who && self.kind.is_none_or(|k| k == action.kind())
            && self
                .target
                .as_ref()
                .is_none_or(|t| t.is_match(action.target()))
    }
}

/// What to do when a budget reaches a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetAction {
    /// Log a warning.
    Warn,
    /// Alert an operator.
    Alert,
    /// Switch LLM calls to a smaller model.
    DowngradeModel {
        /// The model to use.
        to: String,
    },
    /// Cap LLM context.
    ReduceContext {
        /// The token cap.
        max_tokens: u64,
    },
    /// Pause agents (the budget's own agents when the list is empty).
    Pause {
        /// The agents to pause.
        agents: Vec<String>,
    },
    /// Deny every further action in scope.
    HardStop,
    /// Further actions need an operator override (escalate).
    RequireOverride,
}

/// A graduated step of a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// Percent of the limit (may exceed 100).
    pub at_percent: u32,
    /// What to do.
    pub action: BudgetAction,
}

/// A budget (seed 004 budgets.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Unique id.
    pub id: RuleId,
    /// Who it applies to.
    pub scope: Scope,
    /// The accounting period.
    pub period: Period,
    /// The limits.
    pub limit: Limit,
    /// Graduated actions, sorted by `at_percent`.
    pub actions: Vec<Threshold>,
    /// Where it is defined.
    pub at: Location,
}

/// A rate: `count` per `per_ms` milliseconds (`60/minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: u64,
    /// Per how many milliseconds.
    pub per_ms: u64,
}

/// A rate limit on requests and/or tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Unique id.
    pub id: RuleId,
    /// Who and what it applies to.
    pub scope: Scope,
    /// Requests per period.
    pub requests: Option<Rate>,
    /// Tokens per period.
    pub tokens: Option<Rate>,
    /// Where it is defined.
    pub at: Location,
}

/// A circuit breaker on failing targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    /// Unique id.
    pub id: RuleId,
    /// Only actions of this kind.
    pub kind: Option<ActionKind>,
    /// Target glob.
    pub target: Pattern,
    /// Failures that open the breaker…
    pub failures: u32,
    /// …within this window.
    pub within_ms: u64,
    /// How long it stays open before a trial call.
    pub cool_down_ms: u64,
    /// Where it is defined.
    pub at: Location,
}

/// A cap on concurrent actions in a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulkhead {
    /// Unique id.
    pub id: RuleId,
    /// Who and what it applies to.
    pub scope: Scope,
    /// Maximum actions in flight.
    pub max_concurrent: u32,
    /// Where it is defined.
    pub at: Location,
}

/// What to do with secrets found in arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsMode {
    /// Redact them and go on.
    Redact,
    /// Deny the action.
    Deny,
    /// Do nothing.
    Allow,
}

/// What to do with shell injection patterns in arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionMode {
    /// Deny the action.
    Deny,
    /// Ask a human.
    Escalate,
    /// Do nothing.
    Allow,
}

/// Content checks the kernel runs on arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentSpec {
    /// Secrets in arguments (default redact).
    pub secrets: SecretsMode,
    /// Shell injection (default deny).
    pub shell_injection: InjectionMode,
    /// Largest canonical args in bytes (default 65536).
    pub max_args_bytes: u64,
}

impl ContentSpec {
    /// The documented defaults when a bundle has no `content:` section.
    pub const DEFAULT: ContentSpec = ContentSpec {
        secrets: SecretsMode::Redact,
        shell_injection: InjectionMode::Deny,
        max_args_bytes: 65_536,
    };
}

/// Loop detection: the same action (same args hash) repeated `repeat` times within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopSpec {
    /// Repetitions that count as a loop.
    pub repeat: u32,
    /// The window.
    pub within_ms: u64,
    /// The verdict for the looping action.
    pub then: Verdict,
}

impl LoopSpec {
    /// The documented defaults when a bundle has no `loops:` section.
    pub const DEFAULT: LoopSpec = LoopSpec {
        repeat: 5,
        within_ms: 120_000,
        then: Verdict::Deny,
    };
}

/// Approval settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// How long an approval stays valid.
    pub expire_after_ms: u64,
}

impl ApprovalSpec {
    /// The documented defaults when a bundle has no `approvals:` section.
    pub const DEFAULT: ApprovalSpec = ApprovalSpec {
        expire_after_ms: 3_600_000,
    };
}

/// Checks an agent name against the naming rule, returning it as an [`AgentName`].
pub(crate) fn agent_name(name: &str) -> Result<AgentName, String> {
    AgentName::new(name).map_err(|e| e.reason.to_owned())
}
