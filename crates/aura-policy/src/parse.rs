//! From YAML trees to the typed policy: every key and value is checked here, and every problem is
//! reported with its position and a hint; parsing goes on after an error so a file's problems are
//! all reported at once.

use std::sync::Arc;

use aura_core::{ActionKind, Verdict};

use crate::error::{Location, PolicyError};
use crate::spec::*;
use crate::yaml::{self, Node, Value, shorten};

/// Everything the files of a bundle declare, before cross-file checks.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub levels: Vec<Level>,
    pub agents: Vec<AgentSpec>,
    pub pools: Vec<Pool>,
    pub budgets: Vec<Budget>,
    pub rate_limits: Vec<RateLimit>,
    pub breakers: Vec<Breaker>,
    pub bulkheads: Vec<Bulkhead>,
    pub content: Option<(ContentSpec, Location)>,
    pub loops: Option<(LoopSpec, Location)>,
    pub approvals: Option<(ApprovalSpec, Location)>,
    pub rules: Vec<Rule>,
    /// Where each id of a rule, budget, … is first defined, for duplicate checks.
    pub ids: Vec<(String, Location)>,
}

const TOP: &[&str] = &[
    "levels",
    "agents",
    "pools",
    "budgets",
    "rate_limits",
    "breakers",
    "bulkheads",
    "content",
    "loops",
    "approvals",
    "rules",
];
const LEVEL_KEYS: &[&str] = &["read", "write", "network", "exec"];
const AGENT_KEYS: &[&str] = &["level", "pools", "depends_on", "on_halt"];
const POOL_KEYS: &[&str] = &["members", "daily", "monthly"];
const LIMIT_KEYS: &[&str] = &["cost_usd", "tokens", "effort", "risk"];
const BUDGET_KEYS: &[&str] = &["id", "scope", "period", "limit", "actions"];
const SCOPE_KEYS: &[&str] = &["agent", "pool", "kind", "target", "tool", "model"];
const STEP_KEYS: &[&str] = &["at", "do", "to", "agents", "max_tokens"];
const RATE_KEYS: &[&str] = &["id", "scope", "requests", "tokens"];
const BREAKER_KEYS: &[&str] = &["id", "kind", "target", "failures", "within", "cool_down"];
const BULKHEAD_KEYS: &[&str] = &["id", "scope", "max_concurrent"];
const CONTENT_KEYS: &[&str] = &["secrets", "shell_injection", "max_args_bytes"];
const LOOP_KEYS: &[&str] = &["repeat", "within", "then"];
const APPROVAL_KEYS: &[&str] = &["expire_after"];
const RULE_KEYS: &[&str] = &["id", "description", "when", "then"];
const WHEN_KEYS: &[&str] = &["agent", "kind", "target", "args", "labels", "time", "count"];
const THEN_KEYS: &[&str] = &["verdict", "reason"];
const TIME_KEYS: &[&str] = &["days", "between"];
const COUNT_KEYS: &[&str] = &["of", "kind", "at_least", "within"];
const TEST_KEYS: &[&str] = &["eq", "in", "gt", "gte", "lt", "lte", "matches", "exists"];
const VERDICTS: &[&str] = &["allow", "escalate", "deny", "halt"];
const KIND_NAMES: &[&str] = &[
    "llm_call",
    "tool_call",
    "http_request",
    "shell",
    "file_read",
    "file_write",
    "message",
    "custom",
];
const RESERVED_IDS: &[&str] = &["default_deny", "unknown_agent", "kernel_error"];

/// Parses one file into `out`, appending every problem to `errors`.
pub(crate) fn parse_file(
    file: &Arc<str>,
    text: &str,
    out: &mut Parsed,
    errors: &mut Vec<PolicyError>,
) {
    let mut ctx = Ctx { file, errors };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return,
        Err(e) => {
            ctx.errors.push(PolicyError::Invalid {
                at: Location {
                    file: file.clone(),
                    line: e.line.max(1),
                    column: e.column.max(1),
                },
                message: e.message,
                hint: e.hint,
            });
            return;
        }
    };
    if let Value::Null = root.value {
        return;
    }
    let Some(fields) = ctx.fields(&root, "", TOP) else {
        return;
    };
    for (key, key_node, value) in fields {
        match key {
            "levels" => ctx.levels(value, out),
            "agents" => ctx.agents(value, out),
            "pools" => ctx.pools(value, out),
            "budgets" => ctx.list(value, "budgets", out, Ctx::budget),
            "rate_limits" => ctx.list(value, "rate_limits", out, Ctx::rate_limit),
            "breakers" => ctx.list(value, "breakers", out, Ctx::breaker),
            "bulkheads" => ctx.list(value, "bulkheads", out, Ctx::bulkhead),
            "rules" => ctx.list(value, "rules", out, Ctx::rule),
            "content" => {
                if let Some(spec) = ctx.content(value) {
                    ctx.single(&mut out.content, spec, key_node, "content");
                }
            }
            "loops" => {
                if let Some(spec) = ctx.loops(value) {
                    ctx.single(&mut out.loops, spec, key_node, "loops");
                }
            }
            "approvals" => {
                if let Some(spec) = ctx.approvals(value) {
                    ctx.single(&mut out.approvals, spec, key_node, "approvals");
                }
            }
            _ => {}
        }
    }
}

struct Ctx<'a> {
    file: &'a Arc<str>,
    errors: &'a mut Vec<PolicyError>,
}

type Field<'n> = (&'n str, &'n Node, &'n Node);

impl Ctx<'_> {
    fn loc(&self, node: &Node) -> Location {
        Location {
            file: self.file.clone(),
            line: node.line.max(1),
            column: node.column.max(1),
        }
    }

    fn err(&mut self, node: &Node, message: impl Into<String>, hint: impl Into<String>) {
        let at = self.loc(node);
        self.errors.push(PolicyError::Invalid {
            at,
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// The entries of a mapping whose keys are all in `keys`. Unknown and duplicate keys are
    /// reported and skipped. `None` (reported) when the node is not a mapping.
    fn fields<'n>(&mut self, node: &'n Node, path: &str, keys: &[&str]) -> Option<Vec<Field<'n>>> {
        let entries = self.mapping(node, path, &format!("keys such as `{}:`", keys[0]))?;
        let mut out: Vec<Field<'n>> = Vec::with_capacity(entries.len());
        for (name, key, value) in entries {
            if !keys.contains(&name) {
                let place = place(path);
                let valid = format!("valid keys: {}", keys.join(", "));
                let hint = match suggest(name, keys) {
                    Some(best) => format!("did you mean `{best}`? {valid}"),
                    None => valid,
                };
                self.err(
                    key,
                    format!("unknown key `{}` {place}", shorten(name)),
                    hint,
                );
                continue;
            }
            out.push((name, key, value));
        }
        Some(out)
    }

    /// The entries of a mapping with any (scalar) keys; duplicates reported and skipped.
    fn mapping<'n>(&mut self, node: &'n Node, path: &str, example: &str) -> Option<Vec<Field<'n>>> {
        if let Value::Null = node.value {
            return Some(Vec::new());
        }
        let Value::Map(entries) = &node.value else {
            self.err(
                node,
                format!(
                    "{}: expected a mapping, found {}",
                    name(path),
                    node.describe()
                ),
                format!("write `key: value` lines indented under it, with {example}"),
            );
            return None;
        };
        let mut out: Vec<Field<'n>> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = key.as_scalar() else {
                self.err(
                    key,
                    format!(
                        "a key must be a plain name, found {} {}",
                        key.describe(),
                        place(path)
                    ),
                    "write each key as a plain word followed by a colon",
                );
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(n, _, _)| *n == name) {
                let line = first.line;
                self.err(
                    key,
                    format!("duplicate key `{}` {}", shorten(name), place(path)),
                    format!(
                        "`{}` is already set on line {line}; keep only one of them",
                        shorten(name)
                    ),
                );
                continue;
            }
            out.push((name, key, value));
        }
        Some(out)
    }

    fn require<'n>(
        &mut self,
        fields: &[Field<'n>],
        node: &Node,
        path: &str,
        key: &str,
        example: &str,
    ) -> Option<&'n Node> {
        let found = fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v);
        if found.is_none() {
            self.err(
                node,
                format!("{} is missing `{key}`", name(path)),
                format!("add `{key}:`, e.g. `{example}`"),
            );
        }
        found
    }

    fn single<T>(&mut self, slot: &mut Option<(T, Location)>, value: T, key: &Node, section: &str) {
        if let Some((_, first)) = slot {
            let first = first.to_string();
            self.err(
                key,
                format!("`{section}` is defined in more than one file"),
                format!(
                    "it is already defined at {first}; keep one `{section}:` section in the bundle"
                ),
            );
        } else {
            *slot = Some((value, self.loc(key)));
        }
    }

    fn list(
        &mut self,
        node: &Node,
        path: &str,
        out: &mut Parsed,
        item: fn(&mut Self, &Node, &str, &mut Parsed),
    ) {
        let Value::Seq(items) = &node.value else {
            if !matches!(node.value, Value::Null) {
                self.err(
                    node,
                    format!("`{path}`: expected a list, found {}", node.describe()),
                    "write one entry per line, each starting with `- `",
                );
            }
            return;
        };
        for (i, entry) in items.iter().enumerate() {
            item(self, entry, &format!("{path}[{i}]"), out);
        }
    }

    fn string(&mut self, node: &Node, path: &str, hint: &str) -> Option<String> {
        match &node.value {
            Value::Scalar { text, .. } if !text.is_empty() => Some(text.clone()),
            _ => {
                self.err(
                    node,
                    format!(
                        "{}: expected a text value, found {}",
                        name(path),
                        node.describe()
                    ),
                    hint,
                );
                None
            }
        }
    }

    /// A scalar or a list of scalars.
    fn strings<'n>(&mut self, node: &'n Node, path: &str, hint: &str) -> Vec<(String, &'n Node)> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| self.string(item, path, hint).map(|s| (s, item)))
                .collect(),
            _ => self
                .string(node, path, hint)
                .map(|s| vec![(s, node)])
                .unwrap_or_default(),
        }
    }

    fn patterns(&mut self, node: &Node, path: &str) -> Vec<Pattern> {
        self.strings(
            node,
            path,
            "write a glob such as `/srv/**` or a list of them",
        )
        .into_iter()
        .filter_map(|(text, at)| self.pattern(&text, at, path))
        .collect()
    }

    fn pattern(&mut self, text: &str, at: &Node, path: &str) -> Option<Pattern> {
        match Pattern::new(text) {
            Ok(p) => Some(p),
            Err(why) => {
                self.err(
                    at,
                    format!("{}: `{}` is not a valid glob: {why}", name(path), shorten(text)),
                    "`*` matches within a path segment, `**` across segments, `{a,b}` either; escape a literal `*`, `?`, `[` or `{` with `\\`",
                );
                None
            }
        }
    }

    fn agent_names(&mut self, node: &Node, path: &str) -> Vec<String> {
        self.strings(node, path, "write agent names such as `[planner, coder]`")
            .into_iter()
            .filter_map(|(text, at)| self.name_checked(&text, at, path, "agent"))
            .collect()
    }

    fn name_checked(&mut self, text: &str, at: &Node, path: &str, what: &str) -> Option<String> {
        match agent_name(text) {
            Ok(_) => Some(text.to_owned()),
            Err(why) => {
                self.err(
                    at,
                    format!("{}: `{}` is not a valid {what} name: {why}", name(path), shorten(text)),
                    "names are 1-64 characters of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit",
                );
                None
            }
        }
    }

    fn id(
        &mut self,
        fields: &[Field<'_>],
        node: &Node,
        path: &str,
        out: &mut Parsed,
    ) -> Option<RuleId> {
        let id_node = self.require(fields, node, path, "id", "id: no-prod-writes")?;
        let id = self.string(
            id_node,
            &format!("{path}.id"),
            "write a short name such as `no-prod-writes`",
        )?;
        let ok = id.len() <= 128
            && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.err(
                id_node,
                format!("`{path}.id`: `{}` is not a valid id", shorten(&id)),
                "ids are up to 128 letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            );
            return None;
        }
        if RESERVED_IDS.contains(&id.as_str()) {
            self.err(
                id_node,
                format!("`{path}.id`: `{id}` is reserved for a built-in check"),
                "choose another id; default_deny, unknown_agent and kernel_error are reserved",
            );
            return None;
        }
        if let Some((_, first)) = out.ids.iter().find(|(existing, _)| *existing == id) {
            let first = first.to_string();
            self.err(
                id_node,
                format!("`{path}.id`: duplicate id `{id}`"),
                format!(
                    "`{id}` is already used at {first}; ids must be unique across all policy files"
                ),
            );
            return None;
        }
        out.ids.push((id.clone(), self.loc(id_node)));
        Some(RuleId::new(&id))
    }

    fn number(&mut self, node: &Node, path: &str, lo: u64, hi: u64) -> Option<u64> {
        let parsed = match &node.value {
            Value::Scalar { text, .. } => text.replace('_', "").parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.err(
                    node,
                    format!(
                        "{}: expected a whole number from {lo} to {hi}, found {}",
                        name(path),
                        node.describe()
                    ),
                    format!("write a whole number such as `{}`", lo.max(1)),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<u64> {
        let parsed = node.as_scalar().and_then(parse_duration);
        if parsed.is_none() {
            self.err(
                node,
                format!("{}: `{}` is not a duration", name(path), node.as_scalar().map_or_else(|| node.describe(), shorten)),
                "write a number and a unit: `500ms`, `30s`, `10m`, `2h`, `1d` (or combined, `1h30m`); at most 366 days",
            );
        }
        parsed
    }

    fn money(&mut self, node: &Node, path: &str) -> Option<i64> {
        let result = match &node.value {
            Value::Scalar { text, .. } => parse_money(text),
            _ => Err("expected an amount in US dollars".to_owned()),
        };
        match result {
            Ok(m) => Some(m),
            Err(why) => {
                self.err(
                    node,
                    format!("{}: {} is not a valid amount: {why}", name(path), node.describe()),
                    "write dollars with at most 6 decimal places, e.g. `12.50`; money is kept in whole micro-dollars",
                );
                None
            }
        }
    }

    fn verdict(&mut self, node: &Node, path: &str) -> Option<Verdict> {
        let text = node.as_scalar().unwrap_or("");
        let v = match text {
            "allow" => Some(Verdict::Allow),
            "escalate" => Some(Verdict::Escalate),
            "deny" => Some(Verdict::Deny),
            "halt" => Some(Verdict::Halt),
            _ => None,
        };
        if v.is_none() {
            let valid = "valid verdicts: allow, escalate, deny, halt";
            let hint = match suggest(text, VERDICTS) {
                Some(best) => format!("did you mean `{best}`? {valid}"),
                None => valid.to_owned(),
            };
            self.err(
                node,
                format!("{}: unknown verdict {}", name(path), node.describe()),
                hint,
            );
        }
        v
    }

    fn kind(&mut self, node: &Node, path: &str, allow_groups: bool) -> Option<Vec<ActionKind>> {
        let text = node.as_scalar().unwrap_or("");
        if let Some(k) = ActionKind::parse(text) {
            return Some(vec![k]);
        }
        if allow_groups && text == "write" {
            return Some(
                ActionKind::ALL
                    .into_iter()
                    .filter(|k| k.is_write())
                    .collect(),
            );
        }
        if allow_groups && text == "any" {
            return Some(ActionKind::ALL.to_vec());
        }
        let mut valid = KIND_NAMES.to_vec();
        if allow_groups {
            valid.extend(["write", "any"]);
        }
        let list = format!("valid kinds: {}", valid.join(", "));
        let hint = match suggest(text, &valid) {
            Some(best) => format!("did you mean `{best}`? {list}"),
            None => list,
        };
        self.err(
            node,
            format!("{}: unknown action kind {}", name(path), node.describe()),
            hint,
        );
        None
    }

    fn enum_value<T: Copy>(&mut self, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
        let text = node.as_scalar().unwrap_or("");
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == text) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let valid = format!("valid values: {}", names.join(", "));
        let hint = match suggest(text, &names) {
            Some(best) => format!("did you mean `{best}`? {valid}"),
            None => valid,
        };
        self.err(
            node,
            format!("{}: unknown value {}", name(path), node.describe()),
            hint,
        );
        None
    }

    // ---- sections ----

    fn levels(&mut self, node: &Node, out: &mut Parsed) {
        let Some(entries) = self.mapping(node, "levels", "level names such as `standard:`") else {
            return;
        };
        for (level_name, key, value) in entries {
            let path = format!("levels.{level_name}");
            let Some(_) = self.name_checked(level_name, key, "levels", "level") else {
                continue;
            };
            if let Some(first) = out.levels.iter().find(|l| l.name == level_name) {
                let first = first
                    .at
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.err(
                    key,
                    format!("level `{level_name}` is defined twice"),
                    format!("it is already defined at {first}; keep one definition"),
                );
                continue;
            }
            let mut level = Level {
                name: level_name.to_owned(),
                read: Vec::new(),
                write: Vec::new(),
                network: Vec::new(),
                exec: Vec::new(),
                at: Some(self.loc(key)),
            };
            if !matches!(value.value, Value::Null) {
                let Some(fields) = self.fields(value, &path, LEVEL_KEYS) else {
                    continue;
                };
                for (k, _, v) in fields {
                    let p = format!("{path}.{k}");
                    match k {
                        "read" => level.read = self.patterns(v, &p),
                        "write" => level.write = self.patterns(v, &p),
                        "exec" => level.exec = self.patterns(v, &p),
                        "network" => {
                            level.network = self
                                .strings(v, &p, "write hosts such as `api.github.com` or `https://*.example.com:443`")
                                .into_iter()
                                .filter_map(|(text, at)| self.network_pattern(&text, at, &p))
                                .collect();
                        }
                        _ => {}
                    }
                }
            }
            out.levels.push(level);
        }
    }

    fn network_pattern(&mut self, text: &str, at: &Node, path: &str) -> Option<Pattern> {
        match network_glob(text) {
            Ok(glob) => match Pattern::with_glob(text, glob) {
                Ok(p) => Some(p),
                Err(why) => {
                    self.err(
                        at,
                        format!(
                            "{}: `{}` is not a valid host glob: {why}",
                            name(path),
                            shorten(text)
                        ),
                        NET_HINT,
                    );
                    None
                }
            },
            Err(why) => {
                self.err(
                    at,
                    format!(
                        "{}: `{}` is not a valid host pattern: {why}",
                        name(path),
                        shorten(text)
                    ),
                    NET_HINT,
                );
                None
            }
        }
    }

    fn agents(&mut self, node: &Node, out: &mut Parsed) {
        let Some(entries) = self.mapping(node, "agents", "agent names such as `planner:`") else {
            return;
        };
        for (agent, key, value) in entries {
            if agent != "*" && self.name_checked(agent, key, "agents", "agent").is_none() {
                continue;
            }
            if let Some(first) = out.agents.iter().find(|a| a.name == agent) {
                let first = first.at.to_string();
                self.err(
                    key,
                    format!("agent `{agent}` is declared twice"),
                    format!("it is already declared at {first}; keep one entry"),
                );
                continue;
            }
            let path = format!("agents.{agent}");
            let mut spec = AgentSpec {
                name: agent.to_owned(),
                level: "restricted".to_owned(),
                pools: Vec::new(),
                depends_on: Vec::new(),
                on_halt: OnHalt::None,
                at: self.loc(key),
            };
            if !matches!(value.value, Value::Null) {
                let Some(fields) = self.fields(value, &path, AGENT_KEYS) else {
                    continue;
                };
                for (k, _, v) in fields {
                    let p = format!("{path}.{k}");
                    match k {
                        "level" => {
                            if let Some(l) =
                                self.string(v, &p, "write a level name such as `standard`")
                            {
                                spec.level = l;
                            }
                        }
                        "pools" => {
                            spec.pools = self
                                .strings(v, &p, "write pool names such as `[research]`")
                                .into_iter()
                                .filter_map(|(t, at)| self.name_checked(&t, at, &p, "pool"))
                                .collect();
                        }
                        "depends_on" => spec.depends_on = self.agent_names(v, &p),
                        "on_halt" => {
                            if let Some(h) = self.enum_value(
                                v,
                                &p,
                                &[
                                    ("none", OnHalt::None),
                                    ("pause_dependents", OnHalt::PauseDependents),
                                    ("halt_dependents", OnHalt::HaltDependents),
                                ],
                            ) {
                                spec.on_halt = h;
                            }
                        }
                        _ => {}
                    }
                }
            }
            out.agents.push(spec);
        }
    }

    fn pools(&mut self, node: &Node, out: &mut Parsed) {
        let Some(entries) = self.mapping(node, "pools", "pool names such as `research:`") else {
            return;
        };
        for (pool, key, value) in entries {
            if self.name_checked(pool, key, "pools", "pool").is_none() {
                continue;
            }
            if let Some(first) = out.pools.iter().find(|p| p.name == pool) {
                let first = first.at.to_string();
                self.err(
                    key,
                    format!("pool `{pool}` is defined twice"),
                    format!("it is already defined at {first}; keep one definition"),
                );
                continue;
            }
            let path = format!("pools.{pool}");
            let mut spec = Pool {
                name: pool.to_owned(),
                members: Vec::new(),
                daily: Limit::default(),
                monthly: Limit::default(),
                at: self.loc(key),
            };
            if !matches!(value.value, Value::Null) {
                let Some(fields) = self.fields(value, &path, POOL_KEYS) else {
                    continue;
                };
                for (k, _, v) in fields {
                    let p = format!("{path}.{k}");
                    match k {
                        "members" => spec.members = self.agent_names(v, &p),
                        "daily" => spec.daily = self.limit(v, &p).unwrap_or_default(),
                        "monthly" => spec.monthly = self.limit(v, &p).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            out.pools.push(spec);
        }
    }

    fn limit(&mut self, node: &Node, path: &str) -> Option<Limit> {
        let fields = self.fields(node, path, LIMIT_KEYS)?;
        let before = self.errors.len();
        let mut limit = Limit::default();
        for (k, _, v) in fields {
            let p = format!("{path}.{k}");
            match k {
                "cost_usd" => limit.cost_micros = self.money(v, &p),
                "tokens" => limit.tokens = self.number(v, &p, 1, u64::MAX),
                "effort" => limit.effort = self.number(v, &p, 1, u64::MAX),
                "risk" => limit.risk = self.number(v, &p, 1, u64::MAX),
                _ => {}
            }
        }
        if limit.is_empty() && self.errors.len() == before {
            self.err(
                node,
                format!("{}: sets no limit", name(path)),
                "set at least one of cost_usd, tokens, effort, risk",
            );
            return None;
        }
        Some(limit)
    }

    fn scope(&mut self, node: &Node, path: &str) -> Option<Scope> {
        if node.as_scalar() == Some("global") {
            return Some(Scope {
                subject: Subject::Global,
                kind: None,
                target: None,
            });
        }
        let fields = self.fields(node, path, SCOPE_KEYS)?;
        let mut scope = Scope {
            subject: Subject::Global,
            kind: None,
            target: None,
        };
        let mut subject_set = false;
        for (k, key, v) in fields {
            let p = format!("{path}.{k}");
            match k {
                "agent" | "pool" => {
                    if subject_set {
                        self.err(
                            key,
                            format!("{}: has both `agent` and `pool`", name(path)),
                            "a scope names either agents or one pool, not both",
                        );
                        continue;
                    }
                    subject_set = true;
                    let Some(text) =
                        self.string(v, &p, "write an agent glob such as `\"*\"` or a pool name")
                    else {
                        continue;
                    };
                    if k == "agent" {
                        if let Some(pat) = self.pattern(&text, v, &p) {
                            scope.subject = Subject::Agent(pat);
                        }
                    } else if self.name_checked(&text, v, &p, "pool").is_some() {
                        scope.subject = Subject::Pool(text);
                    }
                }
                "kind" => scope.kind = self.kind(v, &p, false).and_then(|k| k.first().copied()),
                "target" | "tool" | "model" => {
                    let implied = match k {
                        "tool" => Some(ActionKind::ToolCall),
                        "model" => Some(ActionKind::LlmCall),
                        _ => None,
                    };
                    if scope.target.is_some() {
                        self.err(
                            key,
                            format!(
                                "{}: sets more than one of `target`, `tool`, `model`",
                                name(path)
                            ),
                            "keep one of them",
                        );
                        continue;
                    }
                    if let Some(kind) = implied {
                        scope.kind = Some(kind);
                    }
                    if let Some(text) = self.string(v, &p, "write a glob such as `gpt-*`") {
                        scope.target = self.pattern(&text, v, &p);
                    }
                }
                _ => {}
            }
        }
        Some(scope)
    }

    fn budget(&mut self, node: &Node, path: &str, out: &mut Parsed) {
        let Some(fields) = self.fields(node, path, BUDGET_KEYS) else {
            return;
        };
        let id = self.id(&fields, node, path, out);
        let period = self
            .require(&fields, node, path, "period", "period: day")
            .and_then(|v| {
                self.enum_value(
                    v,
                    &format!("{path}.period"),
                    &[
                        ("hour", Period::Hour),
                        ("day", Period::Day),
                        ("week", Period::Week),
                        ("month", Period::Month),
                    ],
                )
            });
        let limit = self
            .require(&fields, node, path, "limit", "limit: { cost_usd: 10 }")
            .and_then(|v| self.limit(v, &format!("{path}.limit")));
        let scope = match fields.iter().find(|(k, _, _)| *k == "scope") {
            Some((_, _, v)) => self.scope(v, &format!("{path}.scope")),
            None => Some(Scope {
                subject: Subject::Global,
                kind: None,
                target: None,
            }),
        };
        let mut actions = Vec::new();
        if let Some((_, _, v)) = fields.iter().find(|(k, _, _)| *k == "actions") {
            let p = format!("{path}.actions");
            match &v.value {
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(step) = self.step(item, &format!("{p}[{i}]")) {
                            actions.push(step);
                        }
                    }
                }
                _ => self.err(
                    v,
                    format!("`{p}`: expected a list, found {}", v.describe()),
                    "write steps such as `- { at: 80%, do: warn }`",
                ),
            }
        }
        actions.sort_by_key(|t: &Threshold| t.at_percent);
        if let (Some(id), Some(period), Some(limit), Some(scope)) = (id, period, limit, scope) {
            out.budgets.push(Budget {
                id,
                scope,
                period,
                limit,
                actions,
                at: self.loc(node),
            });
        }
    }

    fn step(&mut self, node: &Node, path: &str) -> Option<Threshold> {
        let fields = self.fields(node, path, STEP_KEYS)?;
        let at = self
            .require(&fields, node, path, "at", "at: 80%")
            .and_then(|v| {
                let parsed = v.as_scalar().and_then(parse_percent);
                if parsed.is_none() {
                    self.err(
                        v,
                        format!("`{path}.at`: {} is not a percentage", v.describe()),
                        "write a percentage of the limit such as `80%` (above `100%` is allowed)",
                    );
                }
                parsed
            });
        let what = self
            .require(&fields, node, path, "do", "do: warn")
            .and_then(|v| {
                self.enum_value(
                    v,
                    &format!("{path}.do"),
                    &[
                        ("warn", 0u8),
                        ("alert", 1),
                        ("downgrade_model", 2),
                        ("reduce_context", 3),
                        ("pause", 4),
                        ("hard_stop", 5),
                        ("require_override", 6),
                    ],
                )
            });
        let get = |k: &str| fields.iter().find(|(n, _, _)| *n == k).map(|(_, _, v)| *v);
        let action = match what? {
            0 => BudgetAction::Warn,
            1 => BudgetAction::Alert,
            2 => {
                let to = self.require(&fields, node, path, "to", "to: gpt-4o-mini")?;
                BudgetAction::DowngradeModel {
                    to: self.string(to, &format!("{path}.to"), "write a model name")?,
                }
            }
            3 => {
                let max = self.require(&fields, node, path, "max_tokens", "max_tokens: 8000")?;
                BudgetAction::ReduceContext {
                    max_tokens: self.number(max, &format!("{path}.max_tokens"), 1, u64::MAX)?,
                }
            }
            4 => BudgetAction::Pause {
                agents: get("agents")
                    .map(|v| self.agent_names(v, &format!("{path}.agents")))
                    .unwrap_or_default(),
            },
            5 => BudgetAction::HardStop,
            _ => BudgetAction::RequireOverride,
        };
        Some(Threshold {
            at_percent: at?,
            action,
        })
    }

    fn rate_limit(&mut self, node: &Node, path: &str, out: &mut Parsed) {
        let Some(fields) = self.fields(node, path, RATE_KEYS) else {
            return;
        };
        let id = self.id(&fields, node, path, out);
        let scope = match fields.iter().find(|(k, _, _)| *k == "scope") {
            Some((_, _, v)) => self.scope(v, &format!("{path}.scope")),
            None => Some(Scope {
                subject: Subject::Global,
                kind: None,
                target: None,
            }),
        };
        let mut requests = None;
        let mut tokens = None;
        for (k, _, v) in &fields {
            if matches!(*k, "requests" | "tokens") {
                let parsed = v.as_scalar().and_then(parse_rate);
                if parsed.is_none() {
                    self.err(v, format!("`{path}.{k}`: {} is not a rate", v.describe()), "write a count per unit: `60/minute`, `10/second`, `100000/hour`, `1000/day` or `5/30s`");
                }
                if *k == "requests" {
                    requests = parsed
                } else {
                    tokens = parsed
                }
            }
        }
        if !fields
            .iter()
            .any(|(k, _, _)| matches!(*k, "requests" | "tokens"))
        {
            self.err(
                node,
                format!("`{path}` limits nothing"),
                "add `requests: 60/minute` and/or `tokens: 100000/hour`",
            );
        }
        if let (Some(id), Some(scope)) = (id, scope)
            && (requests.is_some() || tokens.is_some())
        {
            out.rate_limits.push(RateLimit {
                id,
                scope,
                requests,
                tokens,
                at: self.loc(node),
            });
        }
    }

    fn breaker(&mut self, node: &Node, path: &str, out: &mut Parsed) {
        let Some(fields) = self.fields(node, path, BREAKER_KEYS) else {
            return;
        };
        let id = self.id(&fields, node, path, out);
        let target = self
            .require(&fields, node, path, "target", "target: \"gpt-*\"")
            .and_then(|v| {
                let p = format!("{path}.target");
                let text = self.string(v, &p, "write a target glob such as `gpt-*`")?;
                self.pattern(&text, v, &p)
            });
        let failures = self
            .require(&fields, node, path, "failures", "failures: 5")
            .and_then(|v| self.number(v, &format!("{path}.failures"), 1, 1_000_000));
        let within = self
            .require(&fields, node, path, "within", "within: 1m")
            .and_then(|v| self.duration(v, &format!("{path}.within")));
        let cool_down = self
            .require(&fields, node, path, "cool_down", "cool_down: 30s")
            .and_then(|v| self.duration(v, &format!("{path}.cool_down")));
        let kind = match fields.iter().find(|(k, _, _)| *k == "kind") {
            Some((_, _, v)) => self
                .kind(v, &format!("{path}.kind"), false)
                .and_then(|k| k.first().copied()),
            None => None,
        };
        if let (Some(id), Some(target), Some(failures), Some(within_ms), Some(cool_down_ms)) =
            (id, target, failures, within, cool_down)
        {
            out.breakers.push(Breaker {
                id,
                kind,
                target,
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                within_ms,
                cool_down_ms,
                at: self.loc(node),
            });
        }
    }

    fn bulkhead(&mut self, node: &Node, path: &str, out: &mut Parsed) {
        let Some(fields) = self.fields(node, path, BULKHEAD_KEYS) else {
            return;
        };
        let id = self.id(&fields, node, path, out);
        let scope = match fields.iter().find(|(k, _, _)| *k == "scope") {
            Some((_, _, v)) => self.scope(v, &format!("{path}.scope")),
            None => Some(Scope {
                subject: Subject::Global,
                kind: None,
                target: None,
            }),
        };
        let max = self
            .require(&fields, node, path, "max_concurrent", "max_concurrent: 4")
            .and_then(|v| self.number(v, &format!("{path}.max_concurrent"), 1, 1_000_000));
        if let (Some(id), Some(scope), Some(max)) = (id, scope, max) {
            out.bulkheads.push(Bulkhead {
                id,
                scope,
                max_concurrent: u32::try_from(max).unwrap_or(u32::MAX),
                at: self.loc(node),
            });
        }
    }

    fn content(&mut self, node: &Node) -> Option<ContentSpec> {
        let fields = self.fields(node, "content", CONTENT_KEYS)?;
        let mut spec = ContentSpec::DEFAULT;
        for (k, _, v) in fields {
            let p = format!("content.{k}");
            match k {
                "secrets" => {
                    spec.secrets = self
                        .enum_value(
                            v,
                            &p,
                            &[
                                ("redact", SecretsMode::Redact),
                                ("deny", SecretsMode::Deny),
                                ("allow", SecretsMode::Allow),
                            ],
                        )
                        .unwrap_or(spec.secrets);
                }
                "shell_injection" => {
                    spec.shell_injection = self
                        .enum_value(
                            v,
                            &p,
                            &[
                                ("deny", InjectionMode::Deny),
                                ("escalate", InjectionMode::Escalate),
                                ("allow", InjectionMode::Allow),
                            ],
                        )
                        .unwrap_or(spec.shell_injection);
                }
                "max_args_bytes" => {
                    spec.max_args_bytes = self
                        .number(v, &p, 1, 1 << 30)
                        .unwrap_or(spec.max_args_bytes)
                }
                _ => {}
            }
        }
        Some(spec)
    }

    fn loops(&mut self, node: &Node) -> Option<LoopSpec> {
        let fields = self.fields(node, "loops", LOOP_KEYS)?;
        let mut spec = LoopSpec::DEFAULT;
        for (k, _, v) in fields {
            let p = format!("loops.{k}");
            match k {
                "repeat" => {
                    spec.repeat = self
                        .number(v, &p, 2, 1_000_000)
                        .map_or(spec.repeat, |n| u32::try_from(n).unwrap_or(u32::MAX))
                }
                "within" => spec.within_ms = self.duration(v, &p).unwrap_or(spec.within_ms),
                "then" => spec.then = self.verdict(v, &p).unwrap_or(spec.then),
                _ => {}
            }
        }
        Some(spec)
    }

    fn approvals(&mut self, node: &Node) -> Option<ApprovalSpec> {
        let fields = self.fields(node, "approvals", APPROVAL_KEYS)?;
        let mut spec = ApprovalSpec::DEFAULT;
        for (k, _, v) in fields {
            if k == "expire_after" {
                spec.expire_after_ms = self
                    .duration(v, "approvals.expire_after")
                    .unwrap_or(spec.expire_after_ms);
            }
        }
        Some(spec)
    }

    fn rule(&mut self, node: &Node, path: &str, out: &mut Parsed) {
        let Some(fields) = self.fields(node, path, RULE_KEYS) else {
            return;
        };
        let id = self.id(&fields, node, path, out);
        let description = fields
            .iter()
            .find(|(k, _, _)| *k == "description")
            .and_then(|(_, _, v)| {
                self.string(v, &format!("{path}.description"), "write one sentence")
            });
        let when = match fields.iter().find(|(k, _, _)| *k == "when") {
            Some((_, _, v)) if !matches!(v.value, Value::Null) => {
                self.when(v, &format!("{path}.when"))
            }
            _ => Some(Conditions::default()),
        };
        let then = self
            .require(
                &fields,
                node,
                path,
                "then",
                "then: { verdict: deny, reason: \"why\" }",
            )
            .and_then(|v| self.then(v, &format!("{path}.then")));
        if let (Some(id), Some(when), Some((verdict, reason))) = (id, when, then) {
            let reason = reason
                .or_else(|| description.clone())
                .unwrap_or_else(|| format!("rule `{id}`"));
            out.rules.push(Rule {
                id,
                description,
                when,
                then: Then { verdict, reason },
                at: self.loc(node),
            });
        }
    }

    fn then(&mut self, node: &Node, path: &str) -> Option<(Verdict, Option<String>)> {
        if node.as_scalar().is_some() {
            return self.verdict(node, path).map(|v| (v, None));
        }
        let fields = self.fields(node, path, THEN_KEYS)?;
        let verdict = self
            .require(&fields, node, path, "verdict", "verdict: deny")
            .and_then(|v| self.verdict(v, &format!("{path}.verdict")));
        let reason = fields
            .iter()
            .find(|(k, _, _)| *k == "reason")
            .and_then(|(_, _, v)| {
                self.string(
                    v,
                    &format!("{path}.reason"),
                    "write the message shown with the decision",
                )
            });
        verdict.map(|v| (v, reason))
    }

    fn when(&mut self, node: &Node, path: &str) -> Option<Conditions> {
        let fields = self.fields(node, path, WHEN_KEYS)?;
        let before = self.errors.len();
        let mut c = Conditions::default();
        for (k, _, v) in fields {
            let p = format!("{path}.{k}");
            match k {
                "agent" => c.agent = Some(self.patterns(v, &p)),
                "target" => c.target = Some(self.patterns(v, &p)),
                "kind" => {
                    let mut kinds = Vec::new();
                    let items: Vec<&Node> = match &v.value {
                        Value::Seq(items) => items.iter().collect(),
                        _ => vec![v],
                    };
                    for item in items {
                        for kind in self.kind(item, &p, true).unwrap_or_default() {
                            if !kinds.contains(&kind) {
                                kinds.push(kind);
                            }
                        }
                    }
                    kinds.sort();
                    c.kind = Some(kinds);
                }
                "args" => c.args = self.args(v, &p),
                "labels" => {
                    if let Some(entries) = self.mapping(v, &p, "label names such as `env: prod`") {
                        for (key, _, value) in entries {
                            let values = self.patterns(value, &format!("{p}.{key}"));
                            c.labels.push(LabelCondition {
                                key: key.to_owned(),
                                values,
                            });
                        }
                    }
                }
                "time" => c.time = self.time(v, &p),
                "count" => c.count = self.count(v, &p),
                _ => {}
            }
        }
        (self.errors.len() == before).then_some(c)
    }

    fn args(&mut self, node: &Node, path: &str) -> Vec<FieldCondition> {
        let Some(entries) = self.mapping(node, path, "argument names such as `method: POST`")
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (field, key, value) in entries {
            let p = format!("{path}.{field}");
            let segments: Vec<String> = field.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                self.err(
                    key,
                    format!("`{path}`: `{}` is not a field path", shorten(field)),
                    "name a field, or a nested field with dots: `headers.x-env`",
                );
                continue;
            }
            let tests = match &value.value {
                Value::Map(_) => self.tests(value, &p),
                Value::Seq(_) => {
                    self.err(
                        value,
                        format!("`{p}`: a list is ambiguous here"),
                        "write `{ in: [a, b] }` to match any of several values",
                    );
                    continue;
                }
                _ => vec![FieldTest::Eq(literal(value))],
            };
            if tests.is_empty() {
                continue;
            }
            out.push(FieldCondition {
                path: segments,
                tests,
            });
        }
        out
    }

    fn tests(&mut self, node: &Node, path: &str) -> Vec<FieldTest> {
        let Some(fields) = self.fields(node, path, TEST_KEYS) else {
            return Vec::new();
        };
        let mut tests = Vec::new();
        for (k, _, v) in fields {
            let p = format!("{path}.{k}");
            let test = match k {
                "eq" => Some(FieldTest::Eq(literal(v))),
                "in" => match &v.value {
                    Value::Seq(items) => Some(FieldTest::In(items.iter().map(literal).collect())),
                    _ => {
                        self.err(
                            v,
                            format!("`{p}`: expected a list, found {}", v.describe()),
                            "write `in: [POST, DELETE]`",
                        );
                        None
                    }
                },
                "gt" | "gte" | "lt" | "lte" => match literal(v) {
                    Literal::Number(n) => Some(match k {
                        "gt" => FieldTest::Gt(n),
                        "gte" => FieldTest::Gte(n),
                        "lt" => FieldTest::Lt(n),
                        _ => FieldTest::Lte(n),
                    }),
                    _ => {
                        self.err(
                            v,
                            format!("`{p}`: expected a number, found {}", v.describe()),
                            "write an unquoted number such as `4000`",
                        );
                        None
                    }
                },
                "matches" => self
                    .string(v, &p, "write a glob such as `deploy-*`")
                    .and_then(|t| self.pattern(&t, v, &p))
                    .map(FieldTest::Matches),
                "exists" => match v.as_scalar() {
                    Some("true") => Some(FieldTest::Exists(true)),
                    Some("false") => Some(FieldTest::Exists(false)),
                    _ => {
                        self.err(
                            v,
                            format!("`{p}`: expected true or false, found {}", v.describe()),
                            "write `exists: true` or `exists: false`",
                        );
                        None
                    }
                },
                _ => None,
            };
            tests.extend(test);
        }
        tests
    }

    fn time(&mut self, node: &Node, path: &str) -> Option<TimeWindow> {
        let fields = self.fields(node, path, TIME_KEYS)?;
        let mut window = TimeWindow {
            days: None,
            between: None,
        };
        let mut ok = true;
        for (k, _, v) in fields {
            let p = format!("{path}.{k}");
            match k {
                "days" => {
                    let mut days = Vec::new();
                    for (text, at) in
                        self.strings(v, &p, "write days such as `[mon, tue, wed, thu, fri]`")
                    {
                        match Weekday::ALL.iter().find(|d| d.as_str() == text) {
                            Some(d) => {
                                if !days.contains(d) {
                                    days.push(*d);
                                }
                            }
                            None => {
                                ok = false;
                                let names: Vec<&str> =
                                    Weekday::ALL.iter().map(|d| d.as_str()).collect();
                                let hint = match suggest(&text, &names) {
                                    Some(best) => format!(
                                        "did you mean `{best}`? days are mon, tue, wed, thu, fri, sat, sun"
                                    ),
                                    None => "days are mon, tue, wed, thu, fri, sat, sun".to_owned(),
                                };
                                self.err(
                                    at,
                                    format!("`{p}`: `{}` is not a day", shorten(&text)),
                                    hint,
                                );
                            }
                        }
                    }
                    days.sort();
                    window.days = Some(days);
                }
                "between" => {
                    let times: Vec<(String, &Node)> = match &v.value {
                        Value::Seq(items) if items.len() == 2 => items
                            .iter()
                            .filter_map(|i| i.as_scalar().map(|s| (s.to_owned(), i)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let parsed: Vec<Option<u16>> =
                        times.iter().map(|(t, _)| parse_clock(t)).collect();
                    if let Some((bad, at)) = times.iter().find(|(t, _)| parse_clock(t).is_none()) {
                        ok = false;
                        self.err(
                            at,
                            format!("`{p}`: `{}` is not a time of day", shorten(bad)),
                            "write 24-hour UTC times as `HH:MM`, from `00:00` to `23:59`",
                        );
                        continue;
                    }
                    match parsed.as_slice() {
                        [Some(a), Some(b)] if a != b => window.between = Some((*a, *b)),
                        [Some(_), Some(_)] => {
                            ok = false;
                            self.err(
                                v,
                                format!("`{p}`: the window starts and ends at the same time"),
                                "omit `between` for the whole day",
                            );
                        }
                        _ => {
                            ok = false;
                            self.err(v, format!("`{p}`: expected two times of day, found {}", v.describe()), "write `between: [\"18:00\", \"08:00\"]` (UTC, 24-hour, end exclusive; may wrap midnight)");
                        }
                    }
                }
                _ => {}
            }
        }
        ok.then_some(window)
    }

    fn count(&mut self, node: &Node, path: &str) -> Option<CountCondition> {
        let fields = self.fields(node, path, COUNT_KEYS)?;
        let event = self
            .require(&fields, node, path, "of", "of: failure")
            .and_then(|v| {
                self.enum_value(
                    v,
                    &format!("{path}.of"),
                    &[
                        ("failure", CounterEvent::Failure),
                        ("denial", CounterEvent::Denial),
                        ("action", CounterEvent::Action),
                        ("write", CounterEvent::Write),
                    ],
                )
            });
        let at_least = self
            .require(&fields, node, path, "at_least", "at_least: 3")
            .and_then(|v| self.number(v, &format!("{path}.at_least"), 1, u64::MAX));
        let within = self
            .require(&fields, node, path, "within", "within: 10m")
            .and_then(|v| self.duration(v, &format!("{path}.within")));
        let mut kind = Some(None);
        if let Some((_, _, v)) = fields.iter().find(|(k, _, _)| *k == "kind") {
            kind = if v.as_scalar() == Some("any") {
                Some(None)
            } else {
                self.kind(v, &format!("{path}.kind"), false)
                    .map(|k| k.first().copied())
            };
        }
        Some(CountCondition {
            query: CounterQuery {
                event: event?,
                kind: kind?,
            },
            at_least: at_least?,
            within_ms: within?,
        })
    }
}

const NET_HINT: &str = "write `[scheme://]host[:port]` globs such as `api.github.com`, `*.example.com:443` or `https://*`";

/// `[scheme://]host[:port]` → the glob matched against `scheme://host:port`.
pub(crate) fn network_glob(text: &str) -> Result<String, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, rest)) => {
            if !matches!(s, "http" | "https" | "*") {
                return Err(format!("scheme `{s}` is not http or https"));
            }
            (s, rest)
        }
        None => ("*", text),
    };
    if rest.is_empty() || rest.contains('/') {
        return Err("expected a host, without a path".to_owned());
    }
    if rest.contains(['[', ']']) {
        return Err("IPv6 literals are not supported; use a host name or `*`".to_owned());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => {
            let valid = p == "*" || p.parse::<u16>().is_ok();
            if !valid {
                return Err(format!("port `{p}` is not a number"));
            }
            (h, p)
        }
        None => (rest, "*"),
    };
    if host.is_empty() {
        return Err("expected a host".to_owned());
    }
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

fn literal(node: &Node) -> Literal {
    match &node.value {
        Value::Null => Literal::Null,
        Value::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Literal::Bool(true),
            "false" | "False" | "FALSE" => Literal::Bool(false),
            _ => match text.parse::<f64>() {
                Ok(n)
                    if n.is_finite()
                        && text.chars().all(|c| {
                            c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')
                        }) =>
                {
                    Literal::Number(n)
                }
                _ => Literal::String(text.clone()),
            },
        },
        Value::Scalar { text, .. } => Literal::String(text.clone()),
        Value::Seq(_) | Value::Map(_) => Literal::String(String::new()),
    }
}

/// `30s`, `10m`, `1h30m`, `500ms`, `1d` → milliseconds (1 ms to 366 days).
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(factor)?)?;
    }
    (1..=366 * 86_400_000).contains(&total).then_some(total)
}

/// `12.50` → 12_500_000 micro-dollars.
pub(crate) fn parse_money(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err("it is negative".to_owned());
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
        return Err("expected a number of dollars such as `12.50`".to_owned());
    }
    if frac.len() > 6 {
        return Err(format!("it has {} decimal places, more than 6", frac.len()));
    }
    let whole: i64 = whole.parse().map_err(|_| "it is too large".to_owned())?;
    let mut frac_micros: i64 = 0;
    for (i, c) in frac.chars().enumerate() {
        let d = i64::from(c.to_digit(10).unwrap_or(0));
        frac_micros += d * 10i64.pow(5 - u32::try_from(i).unwrap_or(5));
    }
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(|| "it is too large".to_owned())
}

fn parse_percent(text: &str) -> Option<u32> {
    let n: u32 = text.strip_suffix('%')?.trim().parse().ok()?;
    (1..=10_000).contains(&n).then_some(n)
}

fn parse_rate(text: &str) -> Option<Rate> {
    let (count, per) = text.split_once('/')?;
    let count: u64 = count.trim().replace('_', "").parse().ok()?;
    let per_ms = match per.trim() {
        "second" | "sec" | "s" => 1_000,
        "minute" | "min" | "m" => 60_000,
        "hour" | "h" => 3_600_000,
        "day" | "d" => 86_400_000,
        other => parse_duration(other)?,
    };
    (count > 0).then_some(Rate { count, per_ms })
}

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn place(path: &str) -> String {
    if path.is_empty() {
        "at top level".to_owned()
    } else {
        format!("in `{path}`")
    }
}

fn name(path: &str) -> String {
    if path.is_empty() {
        "top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// The closest candidate to a misspelt word, if any is close.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|candidate| (*candidate, strsim::jaro_winkler(&word, candidate)))
        .filter(|(candidate, score)| {
            let distance = strsim::damerau_levenshtein(&word, candidate);
            *score >= 0.85
                || distance <= candidate.len().div_ceil(3)
                || (word.len() >= 4
                    && (candidate.starts_with(&word) || word.starts_with(candidate)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(candidate, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_money("12.50"), Ok(12_500_000));
        assert_eq!(parse_money("10"), Ok(10_000_000));
        assert_eq!(parse_money("0.000001"), Ok(1));
        assert!(parse_money("0.0000001").is_err());
        assert!(parse_money("-1").is_err());
        assert!(parse_money("1e3").is_err());
        assert!(parse_money("99999999999999999").is_err());
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(
            parse_rate("60/minute"),
            Some(Rate {
                count: 60,
                per_ms: 60_000
            })
        );
        assert_eq!(
            parse_rate("5/30s"),
            Some(Rate {
                count: 5,
                per_ms: 30_000
            })
        );
        assert_eq!(parse_clock("18:00"), Some(1080));
        assert_eq!(parse_clock("24:00"), None);
    }

    #[test]
    fn network_patterns() {
        assert_eq!(
            network_glob("api.github.com").as_deref(),
            Ok("*://api.github.com:*")
        );
        assert_eq!(
            network_glob("https://*.example.com:443").as_deref(),
            Ok("https://*.example.com:443")
        );
        assert!(network_glob("ftp://x").is_err());
        assert!(network_glob("x.com/path").is_err());
        assert!(network_glob("x.com:http").is_err());
    }
}
