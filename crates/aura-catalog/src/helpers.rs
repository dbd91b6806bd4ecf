//! Decision helpers for agents (seed 001 §7.2): each answers from the catalog with a structured report that lists
//! the evidence it used (the queries and what they found) and what it could not see.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::asset::{Asset, AssetKind, Health};
use crate::catalog::{Catalog, Rows};

/// One piece of evidence: the query asked and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The catalog query.
    pub query: String,
    /// What it showed.
    pub finding: String,
}

/// The common shape of every helper's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which helper.
    pub helper: &'static str,
    /// The short answer (`safe`/`unsafe`, `available`/`unavailable`, …).
    pub verdict: String,
    /// Why, in one line.
    pub summary: String,
    /// Helper-specific details (candidates, findings).
    pub details: Value,
    /// What was looked at.
    pub evidence: Vec<Evidence>,
    /// What the helper could not see, so the agent knows the limits of the answer.
    pub blind_spots: Vec<String>,
}

/// Resources a workload needs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// CPU cores.
    #[serde(default)]
    pub cpu_cores: f64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Labels the host must carry (`labels.<k> = <v>`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hosts not to use.
    #[serde(default)]
    pub avoid_hosts: Vec<String>,
}

fn assets(
    catalog: &Catalog,
    query: &str,
    evidence: &mut Vec<Evidence>,
    what: &str,
) -> Vec<Arc<Asset>> {
    let found = match catalog.query(query).map(|a| a.rows) {
        Ok(Rows::Assets(v)) => v,
        _ => vec![],
    };
    evidence.push(Evidence {
        query: query.to_owned(),
        finding: format!("{} {what}", found.len()),
    });
    found
}

fn num(a: &Asset, section: &str, key: &str) -> Option<f64> {
    a.doc.get(section)?.get(key)?.as_f64()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether deploying `service` now looks safe: its instances' health, its dependencies' health (ids listed in
/// `dependencies.depends_on`), headroom on the hosts it runs on, and assets currently unhealthy on those hosts.
pub fn is_safe_to_deploy(catalog: &Catalog, service: &str) -> Report {
    let mut ev = Vec::new();
    let q = quote(service);
    let instances = assets(
        catalog,
        &format!("(name = {q} or id = {q} or labels.app = {q}) limit 1000"),
        &mut ev,
        "instances of the service",
    );
    let mut problems = Vec::new();
    let mut blind = vec![
        "change history (recent deploys) is not in the catalog; only the current state was checked"
            .to_owned(),
        "no incident tracker is connected: open incidents were not checked".to_owned(),
    ];
    if instances.is_empty() {
        blind.push(format!(
            "no asset is named `{service}` or labelled app={service}"
        ));
    }
    for a in &instances {
        if matches!(a.health, Health::Unhealthy | Health::Degraded) {
            problems.push(format!("instance `{}` is {}", a.id, a.health));
        }
    }
    let mut deps: Vec<String> = instances
        .iter()
        .filter_map(|a| {
            a.doc
                .get("dependencies")?
                .get("depends_on")?
                .as_array()
                .cloned()
        })
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    deps.sort();
    deps.dedup();
    if deps.is_empty() {
        blind.push("no dependencies are declared (`dependencies.depends_on`)".to_owned());
    } else {
        let list = deps.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ");
        let found = assets(
            catalog,
            &format!("id in ({list}) limit 1000"),
            &mut ev,
            "dependencies found",
        );
        for d in &deps {
            match found.iter().find(|a| &*a.id == d) {
                Some(a) if a.health == Health::Healthy => {}
                Some(a) => problems.push(format!("dependency `{d}` is {}", a.health)),
                None => blind.push(format!("dependency `{d}` is not in the catalog")),
            }
        }
    }
    let mut hosts: Vec<String> = instances.iter().filter_map(|a| a.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    if !hosts.is_empty() {
        let list = hosts
            .iter()
            .map(|h| quote(h))
            .collect::<Vec<_>>()
            .join(", ");
        for h in assets(
            catalog,
            &format!("kind = host and name in ({list}) limit 1000"),
            &mut ev,
            "hosts running it",
        ) {
            if num(&h, "compute", "cpu_percent").is_some_and(|c| c >= 85.0) {
                problems.push(format!("host `{}` has no CPU headroom", h.id));
            }
            if num(&h, "memory", "used_percent").is_some_and(|m| m >= 90.0) {
                problems.push(format!("host `{}` has no memory headroom", h.id));
            }
        }
        let sick = assets(
            catalog,
            &format!("host in ({list}) and health = unhealthy limit 1000"),
            &mut ev,
            "unhealthy assets on those hosts",
        );
        for s in sick
            .iter()
            .filter(|s| !instances.iter().any(|i| i.id == s.id))
        {
            problems.push(format!("`{}` on the same host is unhealthy", s.id));
        }
    }
    let safe = problems.is_empty() && !instances.is_empty();
    Report {
        helper: "is_safe_to_deploy",
        verdict: if safe {
            "safe"
        } else if instances.is_empty() {
            "unknown"
        } else {
            "unsafe"
        }
        .to_owned(),
        summary: if safe {
            format!(
                "{} instances healthy, dependencies healthy, hosts have headroom",
                instances.len()
            )
        } else if instances.is_empty() {
            format!("`{service}` is not in the catalog")
        } else {
            problems.join("; ")
        },
        details: json!({"service": service, "instances": instances.len(), "dependencies": deps, "hosts": hosts, "problems": problems}),
        evidence: ev,
        blind_spots: blind,
    }
}

fn free(h: &Asset) -> (Option<f64>, Option<f64>) {
    let cores = num(h, "compute", "cpu_count")
        .zip(num(h, "compute", "cpu_percent"))
        .map(|(n, p)| n * (1.0 - p / 100.0));
    let mem = num(h, "memory", "available_bytes");
    (cores, mem)
}

fn host_candidates(
    catalog: &Catalog,
    req: &Requirements,
    ev: &mut Vec<Evidence>,
    blind: &mut Vec<String>,
) -> Vec<Value> {
    let mut q = "kind = host".to_owned();
    for (k, v) in &req.labels {
        q.push_str(&format!(" and labels.{k} = {}", quote(v)));
    }
    let hosts = assets(catalog, &format!("{q} limit 10000"), ev, "hosts");
    let mut unknown = 0;
    let mut out: Vec<(f64, Value)> = Vec::new();
    for h in hosts {
        if req.avoid_hosts.iter().any(|a| a == &*h.id || a == &h.name)
            || h.health == Health::Unhealthy
        {
            continue;
        }
        let (cores, mem) = free(&h);
        let (Some(cores), Some(mem)) = (cores, mem) else {
            unknown += 1;
            continue;
        };
        if cores >= req.cpu_cores && mem >= req.memory_bytes as f64 {
            // Score: the smaller relative headroom left after placing the workload (higher is better).
            let total_cores = num(&h, "compute", "cpu_count").unwrap_or(1.0);
            let total_mem = num(&h, "memory", "total_bytes").unwrap_or(mem.max(1.0));
            let score = ((cores - req.cpu_cores) / total_cores)
                .min((mem - req.memory_bytes as f64) / total_mem);
            out.push((score, json!({"host": &*h.id, "free_cores": (cores * 100.0).round() / 100.0, "free_memory_bytes": mem as u64, "health": h.health, "score": (score * 1000.0).round() / 1000.0})));
        }
    }
    if unknown > 0 {
        blind.push(format!(
            "{unknown} hosts report no CPU count/utilisation or available memory"
        ));
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().map(|(_, v)| v).collect()
}

/// Hosts with enough free CPU and memory (and the requested labels) for `req`.
pub fn check_resource_availability(catalog: &Catalog, req: &Requirements) -> Report {
    let mut ev = Vec::new();
    let mut blind =
        vec!["free capacity is derived from the last sensor reading, not reservations".to_owned()];
    let candidates = host_candidates(catalog, req, &mut ev, &mut blind);
    Report {
        helper: "check_resource_availability",
        verdict: if candidates.is_empty() {
            "unavailable"
        } else {
            "available"
        }
        .to_owned(),
        summary: format!(
            "{} hosts can take {} cores and {} bytes",
            candidates.len(),
            req.cpu_cores,
            req.memory_bytes
        ),
        details: json!({"requirements": req, "hosts": candidates}),
        evidence: ev,
        blind_spots: blind,
    }
}

/// The best host for a workload: enough resources, matching labels, not avoided, most headroom left.
pub fn find_optimal_placement(catalog: &Catalog, req: &Requirements) -> Report {
    let mut ev = Vec::new();
    let mut blind = vec![
        "affinity, spread and network locality are not modelled".to_owned(),
        "free capacity is derived from the last sensor reading, not reservations".to_owned(),
    ];
    let candidates = host_candidates(catalog, req, &mut ev, &mut blind);
    let best = candidates.first().cloned();
    Report {
        helper: "find_optimal_placement",
        verdict: best.as_ref().map_or("none".to_owned(), |b| {
            b["host"].as_str().unwrap_or("").to_owned()
        }),
        summary: match &best {
            Some(b) => format!(
                "place on `{}` (most headroom left of {} candidates)",
                b["host"].as_str().unwrap_or(""),
                candidates.len()
            ),
            None => "no host satisfies the constraints".to_owned(),
        },
        details: json!({"requirements": req, "best": best, "alternatives": candidates.iter().skip(1).take(4).collect::<Vec<_>>()}),
        evidence: ev,
        blind_spots: blind,
    }
}

/// Idle and stopped assets that could be downsized or removed.
pub fn analyze_cost_optimization(catalog: &Catalog) -> Report {
    let mut ev = Vec::new();
    let idle = assets(
        catalog,
        "cpu < 5 and mem < 20 limit 10000",
        &mut ev,
        "idle assets (cpu < 5%, memory < 20%)",
    );
    let under = assets(
        catalog,
        "kind = host and cpu < 15 and mem < 40 limit 10000",
        &mut ev,
        "under-used hosts",
    );
    let stopped = assets(
        catalog,
        "container.state in (exited, dead, created) or cloud.state in (stopped, stopping) limit 10000",
        &mut ev,
        "stopped containers and instances",
    );
    let ids = |v: &[Arc<Asset>]| v.iter().map(|a| a.id.to_string()).collect::<Vec<_>>();
    let n = idle.len() + under.len() + stopped.len();
    Report {
        helper: "analyze_cost_optimization",
        verdict: if n == 0 {
            "nothing_found"
        } else {
            "opportunities"
        }
        .to_owned(),
        summary: format!(
            "{} idle, {} under-used hosts, {} stopped",
            idle.len(),
            under.len(),
            stopped.len()
        ),
        details: json!({"idle": ids(&idle), "underused_hosts": ids(&under), "stopped": ids(&stopped)}),
        evidence: ev,
        blind_spots: vec![
            "no pricing data: savings are not estimated in money".to_owned(),
            "utilisation is a point-in-time reading, not a trend over days".to_owned(),
        ],
    }
}

/// Outliers now: assets whose CPU or memory is more than 3 standard deviations above their kind's mean, load above
/// twice the core count, and assets whose file was not updated since `stale_before` (RFC 3339).
pub fn detect_anomalies(catalog: &Catalog, stale_before: &str) -> Report {
    let mut ev = Vec::new();
    let mut findings = Vec::new();
    for kind in AssetKind::ALL {
        let all = assets(
            catalog,
            &format!("kind = {kind} limit 10000"),
            &mut ev,
            &format!("{kind} assets"),
        );
        for (section, key, label) in [
            ("compute", "cpu_percent", "cpu"),
            ("memory", "used_percent", "memory"),
        ] {
            let vals: Vec<f64> = all.iter().filter_map(|a| num(a, section, key)).collect();
            if vals.len() < 5 {
                continue;
            }
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let sd =
                (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
            if sd < 1e-9 {
                continue;
            }
            for a in &all {
                if let Some(v) = num(a, section, key)
                    && (v - mean) / sd > 3.0
                {
                    findings.push(json!({"asset": &*a.id, "kind": "outlier", "metric": label, "value": v, "kind_mean": (mean * 10.0).round() / 10.0}));
                }
            }
        }
    }
    for a in assets(
        catalog,
        "exists load and exists cpu.count limit 10000",
        &mut ev,
        "assets with load and core count",
    ) {
        if let (Some(l), Some(c)) = (
            num(&a, "compute", "load_1"),
            num(&a, "compute", "cpu_count"),
        ) && l > 2.0 * c
        {
            findings
                .push(json!({"asset": &*a.id, "kind": "overload", "load_1": l, "cpu_count": c}));
        }
    }
    for a in assets(
        catalog,
        &format!("updated_at < {} limit 10000", quote(stale_before)),
        &mut ev,
        "stale assets",
    ) {
        findings.push(json!({"asset": &*a.id, "kind": "stale", "updated_at": a.updated_at}));
    }
    Report {
        helper: "detect_anomalies",
        verdict: if findings.is_empty() { "none" } else { "anomalies" }.to_owned(),
        summary: format!("{} findings", findings.len()),
        details: json!({"stale_before": stale_before, "findings": findings}),
        evidence: ev,
        blind_spots: vec![
            "no time series: anomalies are against the fleet now, not against each asset's own history".to_owned(),
            "kinds with fewer than 5 assets reporting a metric are not compared".to_owned(),
        ],
    }
}
