//! Aura's discovery scanners. A [`Registry`] holds [`Scanner`]s (each with a name, the asset kinds it finds and
//! tags); [`Registry::run`] runs the selected ones, reports progress per target, keeps per-target errors apart
//! from results, and skips cleanly a scanner whose backend is not there (no Docker socket, no `virsh`, …).
//!
//! Scanners: [`local::LocalScanner`] (this machine), [`systemd::SystemdScanner`] (service units),
//! [`docker::DockerScanner`] (Docker Engine API through bollard, feature `docker`), [`libvirt::LibvirtScanner`]
//! (VMs through `virsh`), [`aws::AwsScanner`] (EC2, ECS, RDS, Lambda through the AWS query/JSON APIs with SigV4),
//! `kubernetes::KubernetesScanner` (pods, services, deployments, statefulsets, daemonsets through `kube`,
//! feature `k8s`).
//!
//! Architecture invariant: scanners only read from what they scan and return assets; they never write files
//! (the caller writes through an `AssetSink`) and never return secret values (environment variables become
//! names only).

pub mod aws;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "k8s")]
pub mod kubernetes;
pub mod libvirt;
pub mod local;
mod sigv4;
pub mod systemd;

use std::sync::Arc;
use std::time::Instant;

use aura_catalog::{Asset, AssetKind};

/// Why a scanner produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Its backend is not there (no daemon, no tool, no credentials): skipped, not a failure.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Its backend answered with an error.
    #[error("{0}")]
    Failed(String),
}

/// One target a scanner could not read, while others succeeded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetError {
    /// What was being read (a container id, a region/service pair, …).
    pub target: String,
    /// What went wrong.
    pub message: String,
}

/// What one scanner found.
#[derive(Debug, Default)]
pub struct ScanOutput {
    /// Assets found.
    pub assets: Vec<Asset>,
    /// Targets that failed.
    pub errors: Vec<TargetError>,
}

/// Progress of a scan, reported by scanners as they go (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    /// A scanner starts and expects `targets` steps (0 when unknown).
    fn begin(&self, scanner: &str, targets: u64);
    /// One step done.
    fn step(&self, scanner: &str, target: &str);
    /// The scanner finished.
    fn end(&self, scanner: &str, found: usize);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: u64) {}
    fn step(&self, _: &str, _: &str) {}
    fn end(&self, _: &str, _: usize) {}
}

/// What every scanner gets.
#[derive(Clone)]
pub struct ScanContext {
    /// Scan time, RFC 3339 (becomes `updated_at`).
    pub now: String,
    /// This machine's host name (parent of local services).
    pub local_host: String,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for ScanContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanContext")
            .field("now", &self.now)
            .field("local_host", &self.local_host)
            .finish_non_exhaustive()
    }
}

impl ScanContext {
    /// A context stamped with the current time and this machine's host name.
    pub fn new(progress: Arc<dyn Progress>) -> ScanContext {
        ScanContext {
            now: aura_core::Timestamp::from_millis(now_millis()).to_rfc3339(),
            local_host: local::hostname(),
            progress,
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A discovery scanner.
#[async_trait::async_trait]
pub trait Scanner: Send + Sync {
    /// Stable name (`local`, `systemd`, `docker`, `libvirt`, `aws`, `kubernetes`).
    fn name(&self) -> &'static str;
    /// The asset kinds it finds.
    fn kinds(&self) -> &'static [AssetKind];
    /// Free-form tags for selection (`local`, `cloud`, `containers`, …).
    fn tags(&self) -> &'static [&'static str];
    /// Scans.
    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError>;
}

/// How one scanner's run went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScannerRun {
    /// The scanner.
    pub scanner: &'static str,
    /// Assets found.
    pub assets: usize,
    /// Targets that failed.
    pub errors: Vec<TargetError>,
    /// Why it was skipped (backend unavailable).
    pub skipped: Option<String>,
    /// Why it failed as a whole.
    pub failed: Option<String>,
    /// Wall time, ms.
    pub elapsed_ms: u64,
}

/// The result of running several scanners.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Every asset found (ids unique: a later scanner's asset replaces an earlier one with the same id).
    pub assets: Vec<Asset>,
    /// One entry per scanner run.
    pub runs: Vec<ScannerRun>,
}

/// The scanners known to this build.
#[derive(Default)]
pub struct Registry {
    scanners: Vec<Box<dyn Scanner>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.scanners.iter().map(|s| s.name()))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a scanner.
    pub fn register(&mut self, scanner: Box<dyn Scanner>) {
        self.scanners.push(scanner);
    }

    /// Names of the registered scanners.
    pub fn names(&self) -> Vec<&'static str> {
        self.scanners.iter().map(|s| s.name()).collect()
    }

    /// Scanners that find one of `kinds` (all when empty) and whose name or a tag is in `only` (all when empty).
    pub fn select(&self, kinds: &[AssetKind], only: &[String]) -> Vec<&dyn Scanner> {
        self.scanners
            .iter()
            .filter(|s| kinds.is_empty() || s.kinds().iter().any(|k| kinds.contains(k)))
            .filter(|s| {
                only.is_empty()
                    || only
                        .iter()
                        .any(|o| o == s.name() || s.tags().contains(&o.as_str()))
            })
            .map(|s| s.as_ref())
            .collect()
    }

    /// Runs `scanners` one after the other; keeps only assets of `kinds` (all when empty).
    pub async fn run(
        &self,
        scanners: &[&dyn Scanner],
        kinds: &[AssetKind],
        ctx: &ScanContext,
    ) -> ScanReport {
        let mut report = ScanReport::default();
        let mut index: std::collections::HashMap<Arc<str>, usize> = Default::default();
        for scanner in scanners {
            let started = Instant::now();
            let mut run = ScannerRun {
                scanner: scanner.name(),
                assets: 0,
                errors: vec![],
                skipped: None,
                failed: None,
                elapsed_ms: 0,
            };
            match scanner.scan(ctx).await {
                Ok(out) => {
                    for asset in out.assets {
                        if !kinds.is_empty() && !kinds.contains(&asset.kind) {
                            continue;
                        }
                        run.assets += 1;
                        match index.get(&asset.id) {
                            Some(&i) => report.assets[i] = asset,
                            None => {
                                index.insert(asset.id.clone(), report.assets.len());
                                report.assets.push(asset);
                            }
                        }
                    }
                    run.errors = out.errors;
                }
                Err(ScanError::Unavailable(why)) => run.skipped = Some(why),
                Err(ScanError::Failed(why)) => run.failed = Some(why),
            }
            ctx.progress.end(scanner.name(), run.assets);
            run.elapsed_ms = started.elapsed().as_millis() as u64;
            report.runs.push(run);
        }
        report
    }
}

/// Settings for the built-in scanners.
#[derive(Debug, Clone, Default)]
pub struct ScannerSettings {
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://host:2375`); `DOCKER_HOST` or the local socket when `None`.
    pub docker_host: Option<String>,
    /// libvirt connection URI (`qemu:///system`); virsh's default when `None`.
    pub libvirt_uri: Option<String>,
    /// AWS settings; the AWS scanner is skipped when `None` and no credentials are in the environment.
    pub aws: Option<aws::AwsSettings>,
    /// Kubernetes settings (kubeconfig, context, namespaces, label selector); used with feature `k8s`.
    pub kubernetes: KubernetesOptions,
}

/// Where the Kubernetes scanner looks (feature `k8s`; ignored by builds without it).
#[derive(Debug, Clone, Default)]
pub struct KubernetesOptions {
    /// A kubeconfig file; `KUBECONFIG`, `~/.kube/config`, then the in-cluster service account when `None`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context; the current context when `None`.
    pub context: Option<String>,
    /// Namespaces to read; all when empty.
    pub namespaces: Vec<String>,
    /// Label selector applied to every list (`app=web,tier!=cache`).
    pub label_selector: Option<String>,
}

/// Whether this build has the Kubernetes scanner (cargo feature `k8s`).
pub const HAS_KUBERNETES: bool = cfg!(feature = "k8s");

/// A registry with every scanner this build has.
pub fn default_registry(settings: &ScannerSettings) -> Registry {
    let mut r = Registry::new();
    r.register(Box::new(local::LocalScanner));
    r.register(Box::new(systemd::SystemdScanner::default()));
    #[cfg(feature = "docker")]
    r.register(Box::new(docker::DockerScanner::new(
        settings.docker_host.clone(),
    )));
    r.register(Box::new(libvirt::LibvirtScanner::new(
        settings.libvirt_uri.clone(),
    )));
    r.register(Box::new(aws::AwsScanner::new(
        settings.aws.clone().or_else(aws::AwsSettings::from_env),
    )));
    #[cfg(feature = "k8s")]
    r.register(Box::new(kubernetes::KubernetesScanner::new(
        kubernetes::KubernetesSettings {
            kubeconfig: settings.kubernetes.kubeconfig.clone(),
            context: settings.kubernetes.context.clone(),
            namespaces: settings.kubernetes.namespaces.clone(),
            label_selector: settings.kubernetes.label_selector.clone(),
        },
    )));
    r
}
