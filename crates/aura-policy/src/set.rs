//! `PolicySet`: a bundle of policy files loaded, validated and compiled, with accessors for every
//! typed spec the governance kernel consumes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use aura_core::{Action, Timestamp};
use sha2::{Digest, Sha256};

use crate::error::{Location, PolicyError, PolicyErrors};
use crate::eval::{Compiled, Evaluation, Facts};
use crate::parse::{self, Parsed};
use crate::spec::*;

/// Files larger than this are refused.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A loaded, validated and compiled policy bundle. Cheap to share behind an `Arc`; immutable.
#[derive(Debug, Clone)]
pub struct PolicySet {
    files: Vec<String>,
    hash: String,
    levels: Vec<Level>,
    agents: Vec<AgentSpec>,
    pools: Vec<Pool>,
    budgets: Vec<Budget>,
    rate_limits: Vec<RateLimit>,
    breakers: Vec<Breaker>,
    bulkheads: Vec<Bulkhead>,
    content: ContentSpec,
    loops: LoopSpec,
    approvals: ApprovalSpec,
    rules: Vec<Rule>,
    graph: DependencyGraph,
    compiled: Compiled,
}

/// Who depends on whom (`agents.<name>.depends_on`), for cascade prevention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependencyGraph {
    depends_on: BTreeMap<String, Vec<String>>,
    dependents: BTreeMap<String, Vec<String>>,
}

impl DependencyGraph {
    /// The agents `agent` depends on directly.
    pub fn depends_on(&self, agent: &str) -> &[String] {
        self.depends_on.get(agent).map_or(&[], Vec::as_slice)
    }

    /// The agents that depend on `agent` directly.
    pub fn dependents(&self, agent: &str) -> &[String] {
        self.dependents.get(agent).map_or(&[], Vec::as_slice)
    }

    /// Every agent that depends on `agent`, directly or through others, nearest first; each once,
    /// `agent` itself excluded (cycles are safe).
    pub fn transitive_dependents(&self, agent: &str) -> Vec<String> {
        let mut seen: BTreeSet<&str> = BTreeSet::from([agent]);
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([agent]);
        while let Some(next) = queue.pop_front() {
            for d in self.dependents(next) {
                if seen.insert(d) {
                    out.push(d.clone());
                    queue.push_back(d);
                }
            }
        }
        out
    }

    /// A dependency cycle, if there is one, as the agents along it (first repeated at the end).
    pub fn cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            g: &'a DependencyGraph,
            node: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(pos) = path.iter().position(|p| *p == node) {
                let mut cycle: Vec<String> = path[pos..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            if !done.insert(node) {
                return None;
            }
            path.push(node);
            for next in g.depends_on(node) {
                if let Some(c) = visit(g, next, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for start in self.depends_on.keys() {
            if let Some(c) = visit(self, start, &mut Vec::new(), &mut done) {
                return Some(c);
            }
        }
        None
    }
}

impl PolicySet {
    /// The empty bundle: no agents and no rules, so every action is denied.
    pub fn empty() -> PolicySet {
        PolicySet::build(Parsed::default(), Vec::new(), &[])
    }

    /// Loads every `*.yaml` and `*.yml` file directly inside `dir` (sorted by name; hidden files
    /// skipped). Reports the problems of all files at once.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<PolicySet, PolicyErrors> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PolicyErrors(vec![PolicyError::Read {
                path: dir.display().to_string(),
                reason: io_reason(&e),
                hint: "create the directory, or name the one holding your *.yaml policy files"
                    .to_owned(),
            }])
        })?;
        let mut names: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
                    let is_file = entry
                        .file_type()
                        .is_ok_and(|t| t.is_file() || t.is_symlink());
                    if is_yaml && is_file && !name.starts_with('.') {
                        names.push(name);
                    }
                }
                Err(e) => errors.push(PolicyError::Read {
                    path: dir.display().to_string(),
                    reason: io_reason(&e),
                    hint: "make the directory readable by the user running aura".to_owned(),
                }),
            }
        }
        names.sort();
        let mut sources = Vec::new();
        for name in names {
            let path = dir.join(&name);
            match read_file(&path) {
                Ok(text) => {
                    sources.push((Arc::<str>::from(path.display().to_string()), name, text))
                }
                Err(e) => errors.push(e),
            }
        }
        PolicySet::from_named(sources, errors)
    }

    /// Builds a set from in-memory files `(name, text)`. Names appear in errors and in the bundle
    /// hash; they are sorted, so the order given does not matter.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<PolicySet, PolicyErrors> {
        let mut named: Vec<(Arc<str>, String, String)> = sources
            .iter()
            .map(|(n, t)| {
                (
                    Arc::from(n.as_ref()),
                    n.as_ref().to_owned(),
                    t.as_ref().to_owned(),
                )
            })
            .collect();
        named.sort_by(|a, b| a.1.cmp(&b.1));
        PolicySet::from_named(named, Vec::new())
    }

    fn from_named(
        sources: Vec<(Arc<str>, String, String)>,
        mut errors: Vec<PolicyError>,
    ) -> Result<PolicySet, PolicyErrors> {
        let mut parsed = Parsed::default();
        for (display, _, text) in &sources {
            parse::parse_file(display, text, &mut parsed, &mut errors);
        }
        if let Some(pos) = sources.windows(2).position(|w| w[0].1 == w[1].1) {
            errors.push(PolicyError::Read {
                path: sources[pos].1.clone(),
                reason: "two files have the same name".to_owned(),
                hint: "give every policy file a different name".to_owned(),
            });
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| match (a, b) {
                (PolicyError::Invalid { at: x, .. }, PolicyError::Invalid { at: y, .. }) => {
                    x.cmp(y)
                }
                _ => std::cmp::Ordering::Equal,
            });
            return Err(PolicyErrors(errors));
        }
        let hashed: Vec<(String, String)> = sources.into_iter().map(|(_, n, t)| (n, t)).collect();
        let files: Vec<String> = hashed.iter().map(|(n, _)| n.clone()).collect();
        let mut set = PolicySet::build(parsed, files, &hashed);
        set.files.sort();
        Ok(set)
    }

    fn build(parsed: Parsed, files: Vec<String>, sources: &[(String, String)]) -> PolicySet {
        let Parsed {
            mut levels,
            agents,
            pools,
            budgets,
            rate_limits,
            breakers,
            bulkheads,
            content,
            loops,
            approvals,
            rules,
            ids: _,
        } = parsed;
        for builtin in builtin_levels() {
            if !levels.iter().any(|l| l.name == builtin.name) {
                levels.push(builtin);
            }
        }
        let mut graph = DependencyGraph::default();
        for a in &agents {
            if a.name != "*" && !a.depends_on.is_empty() {
                graph
                    .depends_on
                    .insert(a.name.clone(), a.depends_on.clone());
                for d in &a.depends_on {
                    graph
                        .dependents
                        .entry(d.clone())
                        .or_default()
                        .push(a.name.clone());
                }
            }
        }
        let compiled = Compiled::new(&rules, &levels, &agents);
        PolicySet {
            hash: bundle_hash(sources),
            files,
            levels,
            agents,
            pools,
            budgets,
            rate_limits,
            breakers,
            bulkheads,
            content: content.map_or(ContentSpec::DEFAULT, |(c, _)| c),
            loops: loops.map_or(LoopSpec::DEFAULT, |(l, _)| l),
            approvals: approvals.map_or(ApprovalSpec::DEFAULT, |(a, _)| a),
            rules,
            graph,
            compiled,
        }
    }

    /// Decides `action` at time `now` (UTC; for `time` conditions), reading counters from `facts`.
    /// Pure: no I/O, no clock.
    pub fn evaluate(&self, action: &Action, now: Timestamp, facts: &dyn Facts) -> Evaluation {
        self.compiled.evaluate(action, now, facts)
    }

    /// SHA-256 (lowercase hex) over the files sorted by name: for each, the name's length (u64
    /// little-endian), the name, the content's length and the content. The empty set hashes no files.
    pub fn bundle_hash(&self) -> &str {
        &self.hash
    }

    /// The file names of the bundle, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The rules, in file order (files sorted by name).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.as_str() == id)
    }

    /// Every level: those defined in the files, then the built-in ones not overridden.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The level with this name.
    pub fn level(&self, name: &str) -> Option<&Level> {
        self.levels.iter().find(|l| l.name == name)
    }

    /// The agent entries (including a `*` entry if any).
    pub fn agents(&self) -> &[AgentSpec] {
        &self.agents
    }

    /// The entry that governs `agent`: its own, else the `*` entry; `None` for an unknown agent.
    pub fn agent(&self, agent: &str) -> Option<&AgentSpec> {
        self.agents
            .iter()
            .find(|a| a.name == agent)
            .or_else(|| self.agents.iter().find(|a| a.name == "*"))
    }

    /// The pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pools `agent` draws from: those it lists and those listing it as a member, sorted.
    pub fn pools_of(&self, agent: &str) -> Vec<String> {
        let mut out: BTreeSet<String> = self
            .agents
            .iter()
            .filter(|a| a.name == agent)
            .flat_map(|a| a.pools.iter().cloned())
            .collect();
        out.extend(
            self.pools
                .iter()
                .filter(|p| p.members.iter().any(|m| m == agent))
                .map(|p| p.name.clone()),
        );
        out.into_iter().collect()
    }

    /// The budgets.
    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    /// The rate limits.
    pub fn rate_limits(&self) -> &[RateLimit] {
        &self.rate_limits
    }

    /// The circuit breakers.
    pub fn breakers(&self) -> &[Breaker] {
        &self.breakers
    }

    /// The bulkheads.
    pub fn bulkheads(&self) -> &[Bulkhead] {
        &self.bulkheads
    }

    /// The content checks ([`ContentSpec::DEFAULT`] when no file sets them).
    pub fn content(&self) -> ContentSpec {
        self.content
    }

    /// Loop detection ([`LoopSpec::DEFAULT`] when no file sets it).
    pub fn loops(&self) -> LoopSpec {
        self.loops
    }

    /// Approval settings ([`ApprovalSpec::DEFAULT`] when no file sets them).
    pub fn approvals(&self) -> ApprovalSpec {
        self.approvals
    }

    /// The agents' dependency graph.
    pub fn dependencies(&self) -> &DependencyGraph {
        &self.graph
    }
}

fn bundle_hash(sources: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = sources.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (name, text) in sorted {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// name, read, write, network, exec.
type BuiltinLevel = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// Seed 004's permission model.
pub(crate) const BUILTIN_LEVELS: &[BuiltinLevel] = &[
    ("restricted", &["/workspace/**"], &[], &[], &[]),
    (
        "standard",
        &["/workspace/**", "/var/www/**"],
        &["/workspace/**"],
        &[
            "https://github.com",
            "https://*.github.com",
            "https://pypi.org",
            "https://files.pythonhosted.org",
            "https://registry.npmjs.org",
        ],
        &["git", "npm", "pip", "pytest"],
    ),
    (
        "elevated",
        &[
            "/workspace/**",
            "/var/www/**",
            "/etc/nginx/**",
            "/var/log/**",
        ],
        &[
            "/workspace/**",
            "/var/www/**",
            "/etc/nginx/sites-available/**",
        ],
        &["https://*"],
        &["docker", "nginx", "certbot", "systemctl"],
    ),
    ("privileged", &["/**"], &["/**"], &["*"], &["*", "/**"]),
];

fn builtin_levels() -> Vec<Level> {
    let pats = |list: &[&str]| list.iter().filter_map(|p| Pattern::new(p).ok()).collect();
    BUILTIN_LEVELS
        .iter()
        .map(|(name, read, write, network, exec)| Level {
            name: (*name).to_owned(),
            read: pats(read),
            write: pats(write),
            network: network
                .iter()
                .filter_map(|p| {
                    parse::network_glob(p)
                        .ok()
                        .and_then(|g| Pattern::with_glob(p, g).ok())
                })
                .collect(),
            exec: pats(exec),
            at: None,
        })
        .collect()
}

fn read_file(path: &Path) -> Result<String, PolicyError> {
    let shown = path.display().to_string();
    let fail = |reason: String, hint: &str| PolicyError::Read {
        path: shown.clone(),
        reason,
        hint: hint.to_owned(),
    };
    let file = std::fs::File::open(path).map_err(|e| {
        fail(
            io_reason(&e),
            "make the file readable by the user running aura",
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                io_reason(&e),
                "make the file readable by the user running aura",
            )
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(
            "the file is larger than 4 MiB".to_owned(),
            "split the policy into several smaller files",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid =
            String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]).into_owned();
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PolicyError::Invalid {
            at: Location {
                file: Arc::from(shown.as_str()),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            },
            message: "the file is not valid UTF-8 text".to_owned(),
            hint: "save the file with UTF-8 encoding".to_owned(),
        }
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string().to_lowercase(),
    }
}
