//! Docker containers through the Docker Engine API (bollard): image (and its tags and size), state and health,
//! ports, labels, networks and addresses, volumes and mounts, restart count, and environment variable *names*
//! (values are never read into the asset).

use std::collections::HashMap;

use aura_catalog::{Asset, AssetKind, Health};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptions};
use serde_json::{Map, Value, json};

use crate::{ScanContext, ScanError, ScanOutput, Scanner, TargetError};

/// Scans one Docker daemon.
#[derive(Debug)]
pub struct DockerScanner {
    host: Option<String>,
}

impl DockerScanner {
    /// A scanner for `host` (`unix:///path`, `tcp://h:p`, `http://h:p`); `DOCKER_HOST` or the local socket when `None`.
    pub fn new(host: Option<String>) -> DockerScanner {
        DockerScanner { host }
    }

    fn connect(&self) -> Result<Docker, ScanError> {
        let host = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok());
        let unavailable =
            |e: bollard::errors::Error| ScanError::Unavailable(format!("docker: {e}"));
        match host.as_deref() {
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                Docker::connect_with_http(h, 30, bollard::API_DEFAULT_VERSION).map_err(unavailable)
            }
            Some(h) => {
                Docker::connect_with_unix(h, 30, bollard::API_DEFAULT_VERSION).map_err(unavailable)
            }
            None => {
                if !std::path::Path::new("/var/run/docker.sock").exists() {
                    return Err(ScanError::Unavailable(
                        "no Docker socket at /var/run/docker.sock and no DOCKER_HOST".into(),
                    ));
                }
                Docker::connect_with_local_defaults().map_err(unavailable)
            }
        }
    }
}

#[async_trait::async_trait]
impl Scanner for DockerScanner {
    fn name(&self) -> &'static str {
        "docker"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Container]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["containers"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        let docker = self.connect()?;
        let info = docker
            .info()
            .await
            .map_err(|e| ScanError::Unavailable(format!("docker daemon not reachable: {e}")))?;
        let daemon = info.name.clone().unwrap_or_else(|| ctx.local_host.clone());
        let containers = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
            .await
            .map_err(|e| ScanError::Failed(format!("listing containers: {e}")))?;
        let images: HashMap<String, (Vec<String>, i64)> = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map(|list| {
                list.into_iter()
                    .map(|i| (i.id, (i.repo_tags, i.size)))
                    .collect()
            })
            .unwrap_or_default();
        ctx.progress.begin(self.name(), containers.len() as u64);
        let mut out = ScanOutput::default();
        for c in containers {
            let cid = c.id.clone().unwrap_or_default();
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| cid.chars().take(12).collect());
            let inspect = match docker.inspect_container(&cid, None).await {
                Ok(i) => Some(i),
                Err(e) => {
                    out.errors.push(TargetError {
                        target: format!("container {name}"),
                        message: e.to_string(),
                    });
                    None
                }
            };
            let id = aura_catalog::asset::sanitize_id(&format!("docker-{daemon}-{name}"));
            let mut a = Asset::new(&id, AssetKind::Container, &name, &ctx.now);
            a.set_host(&daemon);
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            let health_status = c
                .health
                .as_ref()
                .and_then(|h| h.status.map(|s| s.to_string()))
                .unwrap_or_default();
            let exit_code = inspect
                .as_ref()
                .and_then(|i| i.state.as_ref())
                .and_then(|s| s.exit_code)
                .unwrap_or(0);
            a.set_health(match (state.as_str(), health_status.as_str()) {
                ("running", "unhealthy") => Health::Unhealthy,
                ("running", "starting") => Health::Degraded,
                ("running", _) => Health::Healthy,
                ("restarting", _) => Health::Degraded,
                ("dead", _) => Health::Unhealthy,
                ("exited", _) if exit_code != 0 => Health::Unhealthy,
                _ => Health::Unknown,
            });
            let mut s = Map::new();
            s.insert("runtime".into(), Value::from("docker"));
            s.insert("id".into(), Value::from(cid.clone()));
            s.insert(
                "image".into(),
                Value::from(c.image.clone().unwrap_or_default()),
            );
            if let Some(image_id) = &c.image_id {
                s.insert("image_id".into(), Value::from(image_id.clone()));
                if let Some((tags, size)) = images.get(image_id) {
                    s.insert("image_tags".into(), json!(tags));
                    s.insert("image_size_bytes".into(), json!(size));
                }
            }
            s.insert("state".into(), Value::from(state.clone()));
            s.insert(
                "status".into(),
                Value::from(c.status.clone().unwrap_or_default()),
            );
            if !health_status.is_empty() {
                s.insert("health".into(), Value::from(health_status));
            }
            if let Some(cmd) = &c.command {
                s.insert("command".into(), Value::from(cmd.clone()));
            }
            if let Some(created) = c.created {
                s.insert("created".into(), json!(created));
            }
            let ports = c.ports.clone().unwrap_or_default();
            let mut port_numbers: Vec<u16> = ports.iter().map(|p| p.private_port).collect();
            port_numbers.sort_unstable();
            port_numbers.dedup();
            s.insert("ports".into(), json!(port_numbers));
            let published: Vec<String> = ports
                .iter()
                .filter_map(|p| {
                    let public = p.public_port?;
                    let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                    Some(format!(
                        "{}:{public}->{}/{proto}",
                        p.ip.clone().unwrap_or_default(),
                        p.private_port
                    ))
                })
                .collect();
            s.insert("published".into(), json!(published));
            let networks = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.clone())
                .unwrap_or_default();
            let mut net_names: Vec<&String> = networks.keys().collect();
            net_names.sort();
            s.insert("networks".into(), json!(net_names));
            let mut ips: Vec<String> = networks
                .values()
                .filter_map(|n| n.ip_address.clone())
                .filter(|ip| !ip.is_empty())
                .collect();
            ips.sort();
            s.insert("ip_addresses".into(), json!(ips));
            let mounts = c.mounts.clone().unwrap_or_default();
            let volumes: Vec<String> = mounts
                .iter()
                .filter_map(|m| m.name.clone().or_else(|| m.source.clone()))
                .collect();
            s.insert("volumes".into(), json!(volumes));
            let dests: Vec<String> = mounts
                .iter()
                .filter_map(|m| m.destination.clone())
                .collect();
            s.insert("mount_points".into(), json!(dests));
            if let Some(i) = &inspect {
                if let Some(n) = i.restart_count {
                    s.insert("restart_count".into(), json!(n));
                }
                // Names only: the values may hold secrets and never leave the daemon.
                let env_names: Vec<String> = i
                    .config
                    .as_ref()
                    .and_then(|c| c.env.clone())
                    .unwrap_or_default()
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map_or(kv.as_str(), |(k, _)| k)
                            .to_owned()
                    })
                    .collect();
                s.insert("env_names".into(), json!(env_names));
                if let Some(code) = i.state.as_ref().and_then(|s| s.exit_code) {
                    s.insert("exit_code".into(), json!(code));
                }
            }
            if let Some(project) = c
                .labels
                .as_ref()
                .and_then(|l| l.get("com.docker.compose.project"))
            {
                s.insert("compose_project".into(), Value::from(project.clone()));
            }
            a.set_section("container", s);
            if let Some(labels) = &c.labels {
                let mut l = Map::new();
                let mut keys: Vec<&String> = labels.keys().collect();
                keys.sort();
                for k in keys {
                    l.insert(k.clone(), Value::from(labels[k].clone()));
                }
                a.set_section("labels", l);
            }
            out.assets.push(a);
            ctx.progress.step(self.name(), &name);
        }
        Ok(out)
    }
}
