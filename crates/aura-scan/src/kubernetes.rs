//! Kubernetes through its API server (`kube` + `k8s-openapi`, cargo feature `k8s`): pods, services, deployments,
//! statefulsets and daemonsets, in every namespace or a chosen few, optionally narrowed by a label selector.
//! Labels and annotations are kept (minus `kubectl.kubernetes.io/last-applied-configuration`, which can embed
//! environment values); container environment variables become *names* only.
//!
//! Pods are `pod` assets (`k8s-<cluster>-<namespace>-<pod>`, host = the node, parent = the owning workload);
//! services and workloads are `service` assets (`k8s-<cluster>-<namespace>-<svc|deploy|sts|ds>-<name>`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use aura_catalog::{Asset, AssetKind, Health};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Map, Value, json};

use crate::{ScanContext, ScanError, ScanOutput, Scanner, TargetError};

/// The annotation `kubectl apply` leaves behind: a whole manifest, environment values included. Never kept.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Where the cluster is and what to read from it.
#[derive(Debug, Clone, Default)]
pub struct KubernetesSettings {
    /// A kubeconfig file; `None` reads `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; its current context when `None`.
    pub context: Option<String>,
    /// Namespaces to read; every namespace when empty.
    pub namespaces: Vec<String>,
    /// A label selector (`app=web,tier!=cache`, `env in (prod,staging)`) applied to every list call.
    pub label_selector: Option<String>,
}

/// Scans one Kubernetes cluster.
#[derive(Debug)]
pub struct KubernetesScanner {
    settings: KubernetesSettings,
}

impl KubernetesScanner {
    /// A scanner with these settings.
    pub fn new(settings: KubernetesSettings) -> KubernetesScanner {
        KubernetesScanner { settings }
    }

    /// A client and the cluster's name (from the kubeconfig context, `in-cluster` for a service account).
    async fn connect(&self) -> Result<(kube::Client, String), ScanError> {
        let unavailable = |what: String| ScanError::Unavailable(format!("kubernetes: {what}"));
        let path = self
            .settings
            .kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".kube/config"))
                    .filter(|p| p.exists())
            });
        let (config, cluster) = match path {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(&path)
                    .map_err(|e| unavailable(format!("reading `{}`: {e}", path.display())))?;
                let context_name = self
                    .settings
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone());
                let cluster = context_name
                    .as_deref()
                    .and_then(|name| kubeconfig.contexts.iter().find(|c| c.name == name))
                    .and_then(|c| c.context.as_ref())
                    .map(|c| c.cluster.clone())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "cluster".to_owned());
                let options = KubeConfigOptions {
                    context: self.settings.context.clone(),
                    ..KubeConfigOptions::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| unavailable(format!("`{}`: {e}", path.display())))?;
                (config, cluster)
            }
            None => {
                let config = kube::Config::incluster().map_err(|_| {
                    unavailable(
                        "no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a pod"
                            .into(),
                    )
                })?;
                (config, "in-cluster".to_owned())
            }
        };
        let client = kube::Client::try_from(config).map_err(|e| unavailable(e.to_string()))?;
        Ok((client, cluster))
    }

    fn params(&self) -> ListParams {
        match &self.settings.label_selector {
            Some(sel) => ListParams::default().labels(sel),
            None => ListParams::default(),
        }
    }

    /// Lists one resource type in every selected namespace, recording per-namespace failures.
    async fn list<K>(
        &self,
        client: &kube::Client,
        what: &str,
        errors: &mut Vec<TargetError>,
    ) -> Vec<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let lp = self.params();
        let apis: Vec<(String, Api<K>)> = if self.settings.namespaces.is_empty() {
            vec![("all namespaces".to_owned(), Api::all(client.clone()))]
        } else {
            self.settings
                .namespaces
                .iter()
                .map(|ns| {
                    (
                        format!("namespace {ns}"),
                        Api::namespaced(client.clone(), ns),
                    )
                })
                .collect()
        };
        let mut items = Vec::new();
        for (scope, api) in apis {
            match api.list(&lp).await {
                Ok(list) => items.extend(list.items),
                Err(e) => errors.push(TargetError {
                    target: format!("{what} in {scope}"),
                    message: e.to_string(),
                }),
            }
        }
        items
    }
}

#[async_trait::async_trait]
impl Scanner for KubernetesScanner {
    fn name(&self) -> &'static str {
        "kubernetes"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Pod, AssetKind::Service]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["k8s", "containers", "cloud"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        let (client, cluster) = self.connect().await?;
        let version = client.apiserver_version().await.map_err(|e| {
            ScanError::Unavailable(format!("kubernetes API server not reachable: {e}"))
        })?;
        let git_version = version.git_version;
        ctx.progress.begin(self.name(), 5);
        let mut out = ScanOutput::default();
        let name = self.name();

        let deployments: Vec<Deployment> = self.list(&client, "deployments", &mut out.errors).await;
        ctx.progress.step(name, "deployments");
        let statefulsets: Vec<StatefulSet> =
            self.list(&client, "statefulsets", &mut out.errors).await;
        ctx.progress.step(name, "statefulsets");
        let daemonsets: Vec<DaemonSet> = self.list(&client, "daemonsets", &mut out.errors).await;
        ctx.progress.step(name, "daemonsets");
        let services: Vec<Service> = self.list(&client, "services", &mut out.errors).await;
        ctx.progress.step(name, "services");
        let pods: Vec<Pod> = self.list(&client, "pods", &mut out.errors).await;
        ctx.progress.step(name, "pods");

        let base = Base {
            cluster: &cluster,
            version: &git_version,
            now: &ctx.now,
        };
        for d in &deployments {
            let s = Some(&d.spec);
            let st = d.status.as_ref();
            let desired = s.and_then(|s| s.replicas).unwrap_or(1);
            let ready = st.and_then(|s| s.ready_replicas).unwrap_or(0);
            let mut w = workload_section("deployment", desired, ready);
            w.insert(
                "available".into(),
                json!(st.and_then(|s| s.available_replicas).unwrap_or(0)),
            );
            w.insert(
                "updated".into(),
                json!(st.and_then(|s| s.updated_replicas).unwrap_or(0)),
            );
            if let Some(strategy) = s
                .and_then(|s| s.strategy.as_ref())
                .and_then(|s| s.type_.clone())
            {
                w.insert("strategy".into(), Value::from(strategy));
            }
            let containers = s
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| &p.containers);
            out.assets
                .push(base.workload(&d.metadata, "deploy", w, containers));
        }
        for s in &statefulsets {
            let spec = Some(&s.spec);
            let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = s
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let mut w = workload_section("statefulset", desired, ready);
            if let Some(svc) = spec.and_then(|s| s.service_name.clone()) {
                w.insert("service_name".into(), Value::from(svc));
            }
            let containers = spec
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| &p.containers);
            out.assets
                .push(base.workload(&s.metadata, "sts", w, containers));
        }
        for d in &daemonsets {
            let st = d.status.as_ref();
            let desired = st.map_or(0, |s| s.desired_number_scheduled);
            let ready = st.map_or(0, |s| s.number_ready);
            let mut w = workload_section("daemonset", desired, ready);
            w.insert(
                "available".into(),
                json!(st.and_then(|s| s.number_available).unwrap_or(0)),
            );
            w.insert(
                "misscheduled".into(),
                json!(st.map_or(0, |s| s.number_misscheduled)),
            );
            let containers = d.spec.template.spec.as_ref().map(|p| &p.containers);
            out.assets
                .push(base.workload(&d.metadata, "ds", w, containers));
        }
        for svc in &services {
            out.assets.push(base.service(svc));
        }
        for pod in &pods {
            out.assets.push(base.pod(pod));
        }
        Ok(out)
    }
}

/// What every asset of one scan shares.
struct Base<'a> {
    cluster: &'a str,
    version: &'a str,
    now: &'a str,
}

impl Base<'_> {
    fn id(&self, namespace: &str, infix: &str, name: &str) -> String {
        let raw = if infix.is_empty() {
            format!("k8s-{}-{namespace}-{name}", self.cluster)
        } else {
            format!("k8s-{}-{namespace}-{infix}-{name}", self.cluster)
        };
        aura_catalog::asset::sanitize_id(&raw)
    }

    /// An asset with the `kubernetes`, `labels` and `annotations` sections every object gets.
    fn asset(&self, meta: &ObjectMeta, kind: AssetKind, infix: &str, resource: &str) -> Asset {
        let name = meta.name.clone().unwrap_or_default();
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let mut a = Asset::new(&self.id(&ns, infix, &name), kind, &name, self.now);
        let mut k = Map::new();
        k.insert("cluster".into(), Value::from(self.cluster));
        k.insert("server_version".into(), Value::from(self.version));
        k.insert("resource".into(), Value::from(resource));
        k.insert("namespace".into(), Value::from(ns));
        if let Some(uid) = &meta.uid {
            k.insert("uid".into(), Value::from(uid.clone()));
        }
        if let Some(created) = &meta.creation_timestamp {
            k.insert("created".into(), Value::from(created.0.to_string()));
        }
        if let Some(owner) = meta.owner_references.as_ref().and_then(|o| o.first()) {
            k.insert("owner_kind".into(), Value::from(owner.kind.clone()));
            k.insert("owner_name".into(), Value::from(owner.name.clone()));
        }
        a.set_section("kubernetes", k);
        if let Some(labels) = &meta.labels {
            a.set_section("labels", string_map(labels, |_| true));
        }
        if let Some(annotations) = &meta.annotations {
            let kept = string_map(annotations, |k| k != LAST_APPLIED);
            if !kept.is_empty() {
                a.set_section("annotations", kept);
            }
        }
        a
    }

    fn workload(
        &self,
        meta: &ObjectMeta,
        infix: &str,
        section: Map<String, Value>,
        containers: Option<&Vec<Container>>,
    ) -> Asset {
        let resource = section
            .get("workload")
            .and_then(Value::as_str)
            .unwrap_or("workload")
            .to_owned();
        let mut a = self.asset(meta, AssetKind::Service, infix, &resource);
        let desired = section.get("desired").and_then(Value::as_i64).unwrap_or(0);
        let ready = section.get("ready").and_then(Value::as_i64).unwrap_or(0);
        a.set_health(if ready >= desired {
            Health::Healthy
        } else if ready == 0 {
            Health::Unhealthy
        } else {
            Health::Degraded
        });
        let mut section = section;
        if let Some(cs) = containers {
            add_containers(&mut section, cs);
        }
        a.set_section("workload", section);
        a
    }

    fn service(&self, svc: &Service) -> Asset {
        let mut a = self.asset(&svc.metadata, AssetKind::Service, "svc", "service");
        let spec = svc.spec.as_ref();
        let typ = spec
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".into());
        let mut s = Map::new();
        s.insert("type".into(), Value::from(typ.clone()));
        if let Some(ip) = spec.and_then(|s| s.cluster_ip.clone()) {
            s.insert("cluster_ip".into(), Value::from(ip));
        }
        let ports: Vec<String> = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                        let target = p
                            .target_port
                            .as_ref()
                            .map(|t| {
                                match t {
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                                    n,
                                ) => n.to_string(),
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                                    s,
                                ) => s.clone(),
                            }
                            })
                            .unwrap_or_else(|| p.port.to_string());
                        match p.node_port {
                            Some(np) => format!("{}:{np}->{target}/{proto}", p.port),
                            None => format!("{}->{target}/{proto}", p.port),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        s.insert("ports".into(), json!(ports));
        if let Some(sel) = spec.and_then(|s| s.selector.as_ref()) {
            let mut pairs: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.sort();
            s.insert("selector".into(), json!(pairs.join(",")));
        }
        let ingress: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ing| {
                ing.iter()
                    .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if typ == "LoadBalancer" {
            s.insert("load_balancer".into(), json!(ingress));
        }
        a.set_health(if typ == "LoadBalancer" && ingress.is_empty() {
            // The cloud has not provisioned the balancer yet.
            Health::Degraded
        } else {
            Health::Healthy
        });
        a.set_section("service", s);
        a
    }

    fn pod(&self, pod: &Pod) -> Asset {
        let meta = &pod.metadata;
        let mut a = self.asset(meta, AssetKind::Pod, "", "pod");
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        if let Some(node) = spec.and_then(|s| s.node_name.as_deref()) {
            a.set_host(node);
        }
        if let Some(parent) = owner_workload(meta) {
            a.set_parent(&self.id(&ns, parent.0, &parent.1));
        }
        let phase = status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        let statuses = status
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let ready = statuses.iter().filter(|c| c.ready).count();
        let total = spec.map_or(statuses.len(), |s| s.containers.len());
        let restarts: i64 = statuses.iter().map(|c| i64::from(c.restart_count)).sum();
        let waiting: Vec<String> = statuses
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .collect();
        let crashing = waiting.iter().any(|r| {
            matches!(
                r.as_str(),
                "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull"
            )
        });
        a.set_health(match phase.as_str() {
            "Running" if crashing => Health::Unhealthy,
            "Running" if ready == total => Health::Healthy,
            "Running" | "Pending" => Health::Degraded,
            "Succeeded" => Health::Healthy,
            "Failed" => Health::Unhealthy,
            _ => Health::Unknown,
        });
        let mut s = Map::new();
        s.insert("phase".into(), Value::from(phase));
        s.insert("ready".into(), Value::from(format!("{ready}/{total}")));
        s.insert("ready_containers".into(), json!(ready));
        s.insert("containers_total".into(), json!(total));
        s.insert("restart_count".into(), json!(restarts));
        if !waiting.is_empty() {
            s.insert("waiting_reasons".into(), json!(waiting));
        }
        if let Some(node) = spec.and_then(|s| s.node_name.clone()) {
            s.insert("node".into(), Value::from(node));
        }
        if let Some(ip) = status.and_then(|s| s.pod_ip.clone()) {
            s.insert("pod_ip".into(), Value::from(ip));
        }
        if let Some(ip) = status.and_then(|s| s.host_ip.clone()) {
            s.insert("host_ip".into(), Value::from(ip));
        }
        if let Some(q) = status.and_then(|s| s.qos_class.clone()) {
            s.insert("qos_class".into(), Value::from(q));
        }
        if let Some(sa) = spec.and_then(|s| s.service_account_name.clone()) {
            s.insert("service_account".into(), Value::from(sa));
        }
        if let Some(spec) = spec {
            add_containers(&mut s, &spec.containers);
        }
        a.set_section("pod", s);
        a
    }
}

fn workload_section(kind: &str, desired: i32, ready: i32) -> Map<String, Value> {
    let mut w = Map::new();
    w.insert("workload".into(), Value::from(kind));
    w.insert("desired".into(), json!(desired));
    w.insert("ready".into(), json!(ready));
    w
}

/// Container names, images, requested resources and environment variable *names* (values never leave).
fn add_containers(section: &mut Map<String, Value>, containers: &[Container]) {
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<String> = containers.iter().filter_map(|c| c.image.clone()).collect();
    let mut env_names: Vec<String> = containers
        .iter()
        .flat_map(|c| c.env.iter().flatten().map(|e| e.name.clone()))
        .collect();
    env_names.sort();
    env_names.dedup();
    let ports: Vec<i32> = containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port))
        .collect();
    section.insert("container_names".into(), json!(names));
    section.insert("images".into(), json!(images));
    section.insert("container_ports".into(), json!(ports));
    section.insert("env_names".into(), json!(env_names));
    let requests = |key: &str| -> Vec<String> {
        containers
            .iter()
            .filter_map(|c| {
                let q = c.resources.as_ref()?.requests.as_ref()?.get(key)?;
                Some(format!("{}={}", c.name, q.0))
            })
            .collect()
    };
    let (cpu, mem) = (requests("cpu"), requests("memory"));
    if !cpu.is_empty() {
        section.insert("cpu_requests".into(), json!(cpu));
    }
    if !mem.is_empty() {
        section.insert("memory_requests".into(), json!(mem));
    }
}

/// The workload a pod belongs to, as (id infix, name): a ReplicaSet owned by a Deployment is named
/// `<deployment>-<pod-template-hash>`.
fn owner_workload(meta: &ObjectMeta) -> Option<(&'static str, String)> {
    let owner = meta.owner_references.as_ref()?.first()?;
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = meta.labels.as_ref()?.get("pod-template-hash")?;
            let deployment = owner.name.strip_suffix(&format!("-{hash}"))?;
            Some(("deploy", deployment.to_owned()))
        }
        "StatefulSet" => Some(("sts", owner.name.clone())),
        "DaemonSet" => Some(("ds", owner.name.clone())),
        _ => None,
    }
}

fn string_map(map: &BTreeMap<String, String>, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect()
}
