//! Rules shared by the edges agents act through (the HTTP enforcement proxy, the MCP server, the hook): the SSRF
//! guard — resolve a target once, classify the address, and let a non-public destination through only when a
//! policy explicitly allows it — and deciding an action for an authenticated agent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aura_audit::Actor;
use aura_core::{Action, ActionError, AgentName, Estimate, Principal, RawAction, Verdict};

use super::ServiceError;
use super::govern::{Decided, Governance};

/// What kind of network a destination address is on. Everything but [`EgressClass::Public`] is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressClass {
    /// A public, routable address.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64.0.0/10), IPv6 unique-local (fc00::/7), benchmarking ranges.
    Private,
    /// 169.254.0.0/16, fe80::/10 (cloud metadata excepted).
    LinkLocal,
    /// Cloud metadata endpoints: 169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254.
    Metadata,
    /// 0.0.0.0, ::, broadcast, multicast, documentation and reserved ranges: never a real target.
    Reserved,
}

impl EgressClass {
    /// The snake_case name used in policy targets (`egress/<class>/<ip>`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EgressClass::Public => "public",
            EgressClass::Loopback => "loopback",
            EgressClass::Private => "private",
            EgressClass::LinkLocal => "link_local",
            EgressClass::Metadata => "metadata",
            EgressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for EgressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an address (IPv4-mapped IPv6 addresses are classified as their IPv4 address).
pub fn classify(ip: IpAddr) -> EgressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> EgressClass {
    let o = ip.octets();
    if matches!(
        o,
        [169, 254, 169, 254] | [169, 254, 170, 2] | [100, 100, 100, 200]
    ) {
        return EgressClass::Metadata;
    }
    if ip.is_loopback() {
        EgressClass::Loopback
    } else if ip.is_link_local() {
        EgressClass::LinkLocal
    } else if ip.is_private()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        EgressClass::Private
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
    {
        EgressClass::Reserved
    } else {
        EgressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> EgressClass {
    let s = ip.segments();
    if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
        EgressClass::Metadata
    } else if ip.is_loopback() {
        EgressClass::Loopback
    } else if (s[0] & 0xffc0) == 0xfe80 {
        EgressClass::LinkLocal
    } else if (s[0] & 0xfe00) == 0xfc00 {
        EgressClass::Private
    } else if ip.is_unspecified() || ip.is_multicast() || s[0] == 0x2001 && s[1] == 0xdb8 {
        EgressClass::Reserved
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64: classify the embedded IPv4 address.
        let v4 = Ipv4Addr::new(
            (s[6] >> 8) as u8,
            (s[6] & 0xff) as u8,
            (s[7] >> 8) as u8,
            (s[7] & 0xff) as u8,
        );
        classify_v4(v4)
    } else {
        EgressClass::Public
    }
}

/// Resolves `host:port` once and returns the address to connect to (the first one the resolver gives). Callers
/// connect to exactly this address, so a DNS answer that changes between check and connect (rebinding) cannot
/// redirect the request.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ServiceError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| ServiceError::NotFound(format!("cannot resolve `{bare}`: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| ServiceError::NotFound(format!("`{bare}` resolves to no address")))
}

/// The SSRF guard: when `addr` is not public, decides the action `custom` `egress/<class>/<ip>` (args: host, port,
/// and the decision of the request it guards, so each guard decision is its own action and repeated requests do
/// not look like a loop) for `agent` — denied unless a policy rule allows it — and returns that decision; `None`
/// for a public address.
pub async fn guard_egress(
    governance: &Governance,
    agent: &AgentName,
    task: Option<&str>,
    host: &str,
    addr: SocketAddr,
    for_decision: &str,
    caller: Actor,
) -> Option<Decided> {
    let class = classify(addr.ip());
    if class == EgressClass::Public {
        return None;
    }
    let raw = RawAction {
        agent: agent.clone(),
        task: task.map(str::to_owned),
        kind: "custom".into(),
        target: format!("egress/{class}/{}", addr.ip()),
        args: serde_json::json!({"host": host, "port": addr.port(), "for_decision": for_decision}),
        estimate: Estimate::default(),
        labels: Default::default(),
    };
    match Action::extract(raw) {
        Ok(action) => Some(governance.decide(&action, caller).await),
        Err(e) => {
            tracing::warn!(error = %e, "egress guard could not build its action; denying");
            Some(refused("egress_guard", &e.to_string()))
        }
    }
}

/// A non-public destination the policy lets an agent reach *whatever its counters say*, found before the request's
/// own decision so that one audited decision carries both facts (the request, and the guard's allowance in its
/// args as `egress`) instead of two durable decisions in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPass {
    /// The destination's class.
    pub class: EgressClass,
    /// The address the request will connect to.
    pub addr: SocketAddr,
    /// The rule that allows it.
    pub rule: String,
}

impl EgressPass {
    /// The fact as it is recorded in the request's args (`egress`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "class": self.class.as_str(),
            "ip": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "target": format!("egress/{}/{}", self.class, self.addr.ip()),
            "allowed_by": self.rule,
        })
    }
}

/// Counters as high as they go: every `count` condition holds.
struct Saturated;

impl aura_policy::Facts for Saturated {
    fn count(&self, _: &AgentName, _: &aura_policy::CounterQuery, _: u64) -> u64 {
        u64::MAX
    }
}

/// The guard's pre-check for a destination known before the decision (an IP literal, or `localhost`): `None` when
/// the address is public (nothing to guard) or when the policy does not allow its `custom` `egress/<class>/<ip>`
/// action for every possible counter value — the caller then runs the audited [`guard_egress`] decision as
/// before. A rule's `count` condition holds from some count on, so the rules that match under real counters lie
/// between those matching with every counter at zero and those matching with every counter saturated; ALLOW under
/// both is ALLOW under the real ones. Pure: no I/O; `now` is for the rules' `time` conditions.
pub fn egress_pass(
    governance: &Governance,
    now: aura_core::Timestamp,
    agent: &AgentName,
    task: Option<&str>,
    host: &str,
    addr: SocketAddr,
) -> Option<EgressPass> {
    let class = classify(addr.ip());
    if class == EgressClass::Public {
        return None;
    }
    let action = Action::extract(RawAction {
        agent: agent.clone(),
        task: task.map(str::to_owned),
        kind: "custom".into(),
        target: format!("egress/{class}/{}", addr.ip()),
        args: serde_json::json!({"host": host, "port": addr.port()}),
        estimate: Estimate::default(),
        labels: Default::default(),
    })
    .ok()?;
    let set = governance.kernel().policy();
    let low = set.evaluate(&action, now, &aura_policy::NoFacts);
    let high = set.evaluate(&action, now, &Saturated);
    (low.verdict == Verdict::Allow && high.verdict == Verdict::Allow).then(|| EgressPass {
        class,
        addr,
        rule: low
            .matched_rules
            .first()
            .map_or_else(|| "allow".to_owned(), ToString::to_string),
    })
}

/// The address of a host known without asking DNS: an IP literal (any form the URL parser accepts), or `localhost`
/// (RFC 6761: always loopback). Other names are resolved only after the request is allowed, so a refused request
/// leaks nothing through DNS.
pub fn known_address(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let lower = bare.to_ascii_lowercase();
    (lower == "localhost" || lower.ends_with(".localhost"))
        .then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// The agent a principal acts for: agent tokens only (an edge acts for exactly one agent).
pub fn agent_of(principal: &Principal) -> Result<AgentName, ServiceError> {
    principal.agent.clone().ok_or_else(|| {
        ServiceError::Invalid(format!(
            "token `{}` acts for no agent; use an agent token (`aura token create --role agent --agent NAME`)",
            principal.token_name
        ))
    })
}

/// Builds the action an edge asks about (the validated extractor) — an error the caller can show when invalid.
pub fn action(
    agent: &AgentName,
    task: Option<&str>,
    kind: &str,
    target: &str,
    args: serde_json::Value,
) -> Result<Action, ActionError> {
    Action::extract(RawAction {
        agent: agent.clone(),
        task: task.map(str::to_owned),
        kind: kind.into(),
        target: target.into(),
        args,
        estimate: Estimate::default(),
        labels: Default::default(),
    })
}

/// Whether a decision lets the effect happen.
pub fn allowed(d: &Decided) -> bool {
    d.decision.verdict == Verdict::Allow
}

/// A DENY made at the edge without the kernel (the action could not even be built); not audited by itself.
pub fn refused(rule: &str, message: &str) -> Decided {
    Decided {
        decision: aura_govern::kernel::Decision {
            id: String::new(),
            verdict: Verdict::Deny,
            reasons: vec![aura_core::Reason {
                rule: rule.into(),
                message: message.into(),
            }],
            obligations: Vec::new(),
            reservation: None,
            retry_after: None,
            approval_id: None,
            approved_by: None,
            policy_hash: String::new(),
            budget: Vec::new(),
            redacted_args: None,
            halted: Vec::new(),
        },
        audit_seq: 0,
    }
}

/// The agent's budget usage as the edges show it (micro-dollars).
pub async fn budget_view(
    governance: &Governance,
    agent: &AgentName,
) -> Result<serde_json::Value, ServiceError> {
    let usage = governance.budgets(agent).await?;
    Ok(serde_json::json!({
        "agent": agent.as_str(),
        "budgets": usage.into_iter().map(|(key, u)| {
            let limit = u.limits.cost_micros;
            serde_json::json!({
                "key": key,
                "spent_micros": u.spent.cost_micros,
                "reserved_micros": u.reserved.cost_micros,
                "limit_micros": limit,
                "remaining_micros": limit.map(|l| l - u.spent.cost_micros - u.reserved.cost_micros),
                "overridden": u.overridden,
            })
        }).collect::<Vec<_>>(),
    }))
}

/// What the policy in force says about an agent: level (and its grants), pools, dependencies, and the rate
/// limits and budgets whose scope can apply to it.
pub fn limits_view(governance: &Governance, agent: &AgentName) -> serde_json::Value {
    let set = governance.kernel().policy();
    let spec = set.agent(agent.as_str());
    let level = spec.and_then(|s| set.level(&s.level));
    let patterns =
        |p: &[aura_policy::Pattern]| p.iter().map(|x| x.as_str().to_owned()).collect::<Vec<_>>();
    serde_json::json!({
        "agent": agent.as_str(),
        "declared": spec.is_some(),
        "level": spec.map(|s| s.level.clone()),
        "grants": level.map(|l| serde_json::json!({
            "read": patterns(&l.read), "write": patterns(&l.write),
            "network": patterns(&l.network), "exec": patterns(&l.exec),
        })),
        "pools": spec.map(|s| s.pools.clone()).unwrap_or_default(),
        "depends_on": spec.map(|s| s.depends_on.clone()).unwrap_or_default(),
        "rate_limits": set.rate_limits().iter().map(|r| serde_json::json!({
            "id": r.id.to_string(), "scope": format!("{:?}", r.scope),
            "requests": r.requests.as_ref().map(|x| format!("{x:?}")),
            "tokens": r.tokens.as_ref().map(|x| format!("{x:?}")),
        })).collect::<Vec<_>>(),
        "budgets": set.budgets().iter().map(|b| serde_json::json!({
            "id": b.id.to_string(), "scope": format!("{:?}", b.scope), "period": format!("{:?}", b.period),
            "limit_micros": b.limit.cost_micros,
        })).collect::<Vec<_>>(),
        "halted": governance.halts().iter().any(|h| h.target.to_string() == agent.as_str() || h.target.to_string() == "*"),
        "policy_hash": set.bundle_hash(),
    })
}

/// The MCP server's governance over this process's kernel (and its event mesh, for `publish_message`).
#[derive(Debug, Clone)]
pub struct McpGovernance {
    governance: Governance,
    mesh: super::mesh::MeshService,
}

impl McpGovernance {
    /// Over `governance` and `mesh`.
    pub fn new(governance: Governance, mesh: super::mesh::MeshService) -> McpGovernance {
        McpGovernance { governance, mesh }
    }

    fn caller(agent: &aura_mcp::Agent) -> Result<(AgentName, Actor), aura_mcp::BackendError> {
        let name = AgentName::new(agent.name.as_str())
            .map_err(|e| aura_mcp::BackendError::Invalid(e.to_string()))?;
        let actor = match &agent.principal {
            Some(p) => super::audit::actor_of(p),
            None => Actor {
                kind: aura_audit::ActorKind::Agent,
                id: format!("mcp:{name}"),
                ip: None,
            },
        };
        Ok((name, actor))
    }
}

/// The kernel's decision in the MCP crate's terms.
pub fn verdict_of(d: &Decided) -> aura_mcp::Verdict {
    let first = d.decision.reasons.first();
    aura_mcp::Verdict {
        decision_id: d.decision.id.clone(),
        verdict: d.decision.verdict.as_str().to_owned(),
        rule: first.map_or_else(|| "default_deny".to_owned(), |r| r.rule.clone()),
        reason: first.map_or_else(String::new, |r| r.message.clone()),
        approval_id: d.decision.approval_id.clone(),
        audit_seq: d.audit_seq,
    }
}

#[async_trait::async_trait]
impl aura_mcp::Backend for McpGovernance {
    async fn decide(
        &self,
        agent: &aura_mcp::Agent,
        kind: &str,
        target: &str,
        args: serde_json::Value,
    ) -> Result<aura_mcp::Verdict, aura_mcp::BackendError> {
        let (name, actor) = Self::caller(agent)?;
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("edge".to_owned(), "mcp".to_owned());
        let action = Action::extract(RawAction {
            agent: name,
            task: None,
            kind: kind.into(),
            target: target.into(),
            args,
            estimate: Estimate::default(),
            labels,
        })
        .map_err(|e| aura_mcp::BackendError::Invalid(e.to_string()))?;
        Ok(verdict_of(&self.governance.decide(&action, actor).await))
    }

    async fn guard_egress(
        &self,
        agent: &aura_mcp::Agent,
        host: &str,
        addr: SocketAddr,
        for_decision: &str,
    ) -> Result<Option<aura_mcp::Verdict>, aura_mcp::BackendError> {
        let (name, actor) = Self::caller(agent)?;
        Ok(guard_egress(
            &self.governance,
            &name,
            None,
            host,
            addr,
            for_decision,
            actor,
        )
        .await
        .as_ref()
        .map(verdict_of))
    }

    fn egress_pass(
        &self,
        agent: &aura_mcp::Agent,
        host: &str,
        port: u16,
    ) -> Option<(SocketAddr, serde_json::Value)> {
        let name = AgentName::new(agent.name.as_str()).ok()?;
        let addr = known_address(host, port)?;
        let pass = egress_pass(
            &self.governance,
            self.governance.now(),
            &name,
            None,
            host,
            addr,
        )?;
        Some((pass.addr, pass.to_json()))
    }

    async fn settle(&self, agent: &aura_mcp::Agent, decision_id: &str, success: bool) {
        let Ok((name, actor)) = Self::caller(agent) else {
            return;
        };
        let outcome = if success {
            aura_govern::kernel::ActionOutcome::Success
        } else {
            aura_govern::kernel::ActionOutcome::Failure
        };
        if let Err(e) = self
            .governance
            .settle(decision_id, Some(&name), outcome, Default::default(), actor)
            .await
        {
            tracing::warn!(decision = %decision_id, error = %e, "mcp could not settle a decision");
        }
    }

    async fn budget(
        &self,
        agent: &aura_mcp::Agent,
    ) -> Result<serde_json::Value, aura_mcp::BackendError> {
        let (name, _) = Self::caller(agent)?;
        budget_view(&self.governance, &name)
            .await
            .map_err(|e| aura_mcp::BackendError::Unavailable(e.to_string()))
    }

    async fn limits(
        &self,
        agent: &aura_mcp::Agent,
    ) -> Result<serde_json::Value, aura_mcp::BackendError> {
        let (name, _) = Self::caller(agent)?;
        Ok(limits_view(&self.governance, &name))
    }

    async fn publish(
        &self,
        agent: &aura_mcp::Agent,
        message: aura_mcp::MeshMessage,
    ) -> Result<aura_mcp::Published, aura_mcp::BackendError> {
        let (name, actor) = Self::caller(agent)?;
        let invalid = |e: String| aura_mcp::BackendError::Invalid(e);
        let topic = aura_mesh::Topic::new(&message.topic).map_err(|e| invalid(e.to_string()))?;
        let kind: aura_agents::envelope::MessageType =
            serde_json::from_value(serde_json::Value::String(message.kind.clone()))
                .map_err(|_| invalid(format!("unknown message type `{}`", message.kind)))?;
        let mut envelope = aura_agents::envelope::Envelope::new(
            self.mesh.now(),
            &name,
            &message.target,
            kind,
            message.payload,
        );
        envelope.priority = message.priority;
        match self.mesh.publish(&name, &topic, envelope, actor).await {
            Ok(p) => Ok(aura_mcp::Published::Sent(serde_json::json!({
                "published": true,
                "id": p.envelope.id,
                "topic": topic.as_str(),
                "target": p.envelope.target,
                "offset": p.receipt.offset,
                "spooled": p.receipt.spooled,
                "audit_seq": p.audit_seq,
            }))),
            Err(super::mesh::MeshRefusal::Refused {
                verdict,
                reasons,
                audit_seq,
            }) => {
                let first = reasons.first();
                Ok(aura_mcp::Published::Refused(aura_mcp::Verdict {
                    decision_id: String::new(),
                    verdict: verdict.as_str().to_owned(),
                    rule: first.map_or_else(|| "default_deny".to_owned(), |r| r.rule.clone()),
                    reason: first.map_or_else(String::new, |r| r.message.clone()),
                    approval_id: None,
                    audit_seq,
                }))
            }
            Err(super::mesh::MeshRefusal::Failed(ServiceError::Invalid(m))) => Err(invalid(m)),
            Err(super::mesh::MeshRefusal::Failed(e)) => {
                Err(aura_mcp::BackendError::Unavailable(e.to_string()))
            }
        }
    }
}
