//! libvirt virtual machines through `virsh` (`list --all`, `dominfo`); skipped cleanly when `virsh` is absent.

use aura_catalog::{Asset, AssetKind, Health};
use serde_json::{Map, Value, json};

use crate::{ScanContext, ScanError, ScanOutput, Scanner, TargetError};

/// Scans libvirt domains.
#[derive(Debug)]
pub struct LibvirtScanner {
    uri: Option<String>,
    virsh: String,
}

impl LibvirtScanner {
    /// A scanner for `uri` (virsh's default connection when `None`).
    pub fn new(uri: Option<String>) -> LibvirtScanner {
        LibvirtScanner {
            uri,
            virsh: "virsh".to_owned(),
        }
    }

    async fn virsh(&self, args: &[&str]) -> Result<String, ScanError> {
        let mut cmd = tokio::process::Command::new(&self.virsh);
        if let Some(uri) = &self.uri {
            cmd.args(["-c", uri]);
        }
        let out = cmd
            .args(args)
            .output()
            .await
            .map_err(|e| ScanError::Unavailable(format!("`virsh` cannot run: {e}")))?;
        if !out.status.success() {
            return Err(ScanError::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Parses `virsh dominfo` output (`Key:   value` lines).
pub fn parse_dominfo(text: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let key = k.trim().to_ascii_lowercase().replace([' ', '(', ')'], "_");
        let key = key.trim_end_matches('_').replace("__", "_");
        let v = v.trim();
        let value = match v
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(n) if key.contains("memory") || key == "cpu_s" => json!(n),
            _ => Value::from(v),
        };
        if !key.is_empty() {
            m.insert(key, value);
        }
    }
    m
}

#[async_trait::async_trait]
impl Scanner for LibvirtScanner {
    fn name(&self) -> &'static str {
        "libvirt"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Vm]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["local", "vms"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        let names = match self.virsh(&["list", "--all", "--name"]).await {
            Ok(t) => t,
            Err(ScanError::Failed(msg)) => {
                return Err(ScanError::Unavailable(format!(
                    "libvirt not reachable: {msg}"
                )));
            }
            Err(e) => return Err(e),
        };
        let names: Vec<&str> = names
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        ctx.progress.begin(self.name(), names.len() as u64);
        let mut out = ScanOutput::default();
        for name in names {
            match self.virsh(&["dominfo", name]).await {
                Ok(info) => {
                    let info = parse_dominfo(&info);
                    let id =
                        aura_catalog::asset::sanitize_id(&format!("vm-{}-{name}", ctx.local_host));
                    let mut a = Asset::new(&id, AssetKind::Vm, name, &ctx.now);
                    a.set_host(&ctx.local_host);
                    a.set_parent(&ctx.local_host);
                    let state = info.get("state").and_then(Value::as_str).unwrap_or("");
                    a.set_health(match state {
                        "running" => Health::Healthy,
                        "paused" | "in shutdown" => Health::Degraded,
                        "crashed" => Health::Unhealthy,
                        _ => Health::Unknown,
                    });
                    a.set_section("vm", info);
                    out.assets.push(a);
                }
                Err(e) => out.errors.push(TargetError {
                    target: name.to_owned(),
                    message: e.to_string(),
                }),
            }
            ctx.progress.step(self.name(), name);
        }
        Ok(out)
    }
}
