//! systemd service units, from `systemctl list-units --type=service --all --output=json` (no D-Bus needed).

use aura_catalog::{Asset, AssetKind, Health};
use serde_json::{Map, Value};

use crate::{ScanContext, ScanError, ScanOutput, Scanner};

/// Scans the local systemd's service units.
#[derive(Debug)]
pub struct SystemdScanner {
    /// The `systemctl` program.
    pub systemctl: String,
}

impl Default for SystemdScanner {
    fn default() -> Self {
        SystemdScanner {
            systemctl: "systemctl".to_owned(),
        }
    }
}

/// One unit as `systemctl --output=json` prints it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Unit {
    /// `ssh.service`.
    pub unit: String,
    /// `loaded`, `not-found`, …
    #[serde(default)]
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`, …
    #[serde(default)]
    pub active: String,
    /// `running`, `exited`, `dead`, …
    #[serde(default)]
    pub sub: String,
    /// Human description.
    #[serde(default)]
    pub description: String,
}

/// Turns `systemctl list-units --output=json` output into service assets on `host`.
pub fn units_to_assets(json: &str, host: &str, now: &str) -> Result<Vec<Asset>, ScanError> {
    let units: Vec<Unit> = serde_json::from_str(json)
        .map_err(|e| ScanError::Failed(format!("unreadable systemctl output: {e}")))?;
    Ok(units
        .into_iter()
        .filter(|u| u.unit.ends_with(".service") && u.load != "not-found")
        .map(|u| {
            let id = aura_catalog::asset::sanitize_id(&format!("{host}-{}", u.unit));
            let mut a = Asset::new(&id, AssetKind::Service, &u.unit, now);
            a.set_host(host);
            a.set_parent(host);
            a.set_health(match (u.active.as_str(), u.sub.as_str()) {
                ("active", "running" | "exited") => Health::Healthy,
                ("failed", _) => Health::Unhealthy,
                ("activating" | "deactivating" | "reloading", _) => Health::Degraded,
                _ => Health::Unknown,
            });
            let mut s = Map::new();
            s.insert("manager".into(), Value::from("systemd"));
            s.insert("unit".into(), Value::from(u.unit));
            s.insert("load".into(), Value::from(u.load));
            s.insert("active".into(), Value::from(u.active));
            s.insert("sub".into(), Value::from(u.sub));
            s.insert("description".into(), Value::from(u.description));
            a.set_section("services", s);
            a
        })
        .collect())
}

#[async_trait::async_trait]
impl Scanner for SystemdScanner {
    fn name(&self) -> &'static str {
        "systemd"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Service]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["local", "services"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        ctx.progress.begin(self.name(), 1);
        let out = tokio::process::Command::new(&self.systemctl)
            .args([
                "list-units",
                "--type=service",
                "--all",
                "--output=json",
                "--no-pager",
            ])
            .output()
            .await
            .map_err(|e| ScanError::Unavailable(format!("`{}` cannot run: {e}", self.systemctl)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // Containers and CI machines without systemd as PID 1 answer this way.
            return Err(ScanError::Unavailable(format!(
                "systemd is not running here: {}",
                err.trim()
            )));
        }
        let assets = units_to_assets(
            &String::from_utf8_lossy(&out.stdout),
            &ctx.local_host,
            &ctx.now,
        )?;
        ctx.progress.step(self.name(), "units");
        Ok(ScanOutput {
            assets,
            errors: vec![],
        })
    }
}
