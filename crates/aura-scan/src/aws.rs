//! AWS through its real APIs, signed with SigV4 over plain HTTPS (no SDK): EC2 instances (`vm`), ECS services
//! (`service`, with their running tasks), RDS databases (`service`) and Lambda functions (`service`, environment
//! variable names only), in each configured region. `endpoint` points every call at one server (moto, LocalStack).

use aura_catalog::{Asset, AssetKind, Health};
use serde_json::{Map, Value, json};

use crate::sigv4::{Credentials, amz_date_now, sign, uri_encode};
use crate::{ScanContext, ScanError, ScanOutput, Scanner, TargetError};

/// Where and how to scan AWS.
#[derive(Clone)]
pub struct AwsSettings {
    /// Regions to scan.
    pub regions: Vec<String>,
    /// One endpoint for every service (e.g. `http://127.0.0.1:5000` for moto); AWS's own when `None`.
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Services to scan: any of `ec2`, `ecs`, `rds`, `lambda` (all when empty).
    pub services: Vec<String>,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("regions", &self.regions)
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`, comma-separated for several) and `AWS_ENDPOINT_URL`; `None` without credentials.
    pub fn from_env() -> Option<AwsSettings> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let access_key = var("AWS_ACCESS_KEY_ID")?;
        let secret_key = var("AWS_SECRET_ACCESS_KEY")?;
        let regions = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned())
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        Some(AwsSettings {
            regions,
            endpoint: var("AWS_ENDPOINT_URL"),
            access_key,
            secret_key,
            session_token: var("AWS_SESSION_TOKEN"),
            services: vec![],
        })
    }
}

/// Scans AWS accounts.
#[derive(Debug)]
pub struct AwsScanner {
    settings: Option<AwsSettings>,
}

impl AwsScanner {
    /// A scanner; skipped when `settings` is `None`.
    pub fn new(settings: Option<AwsSettings>) -> AwsScanner {
        AwsScanner { settings }
    }
}

struct Client<'a> {
    http: reqwest::Client,
    settings: &'a AwsSettings,
    creds: Credentials,
}

impl Client<'_> {
    fn base(&self, service: &str, region: &str) -> String {
        match &self.settings.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://{service}.{region}.amazonaws.com"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        service: &str,
        region: &str,
        method: reqwest::Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<String, String> {
        let base = self.base(service, region);
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{query}")
        };
        let parsed = reqwest::Url::parse(&url).map_err(|e| e.to_string())?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Err(format!("no host in `{url}`")),
        };
        let signed = sign(
            &self.creds,
            region,
            service,
            method.as_str(),
            &host,
            path,
            query,
            headers,
            &body,
            &amz_date_now(),
        );
        let mut req = self.http.request(method, parsed).body(body);
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(signed)
        {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{service} {region}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let short: String = text.chars().take(300).collect();
            return Err(format!(
                "{service} {region}: HTTP {}: {short}",
                status.as_u16()
            ));
        }
        Ok(text)
    }

    /// An AWS query-protocol call (EC2, RDS): form-encoded POST, XML answer.
    pub(crate) async fn query(
        &self,
        service: &str,
        region: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut p: Vec<(&str, &str)> = params.to_vec();
        p.sort();
        let body: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect();
        self.send(
            service,
            region,
            reqwest::Method::POST,
            "/",
            "",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body.join("&").into_bytes(),
        )
        .await
    }

    /// An AWS JSON 1.1 call (ECS).
    async fn json(
        &self,
        service: &str,
        region: &str,
        target: &str,
        body: Value,
    ) -> Result<Value, String> {
        let text = self
            .send(
                service,
                region,
                reqwest::Method::POST,
                "/",
                "",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target),
                ],
                body.to_string().into_bytes(),
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| format!("{service}: unreadable answer: {e}"))
    }
}

fn text_of<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.tag_name().name() == name)
        .and_then(|c| c.text())
}

fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    node.children().find(|c| c.tag_name().name() == name)
}

/// EC2 `DescribeInstances` XML → `vm` assets.
pub fn ec2_assets(
    xml: &str,
    region: &str,
    now: &str,
) -> Result<(Vec<Asset>, Option<String>), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("ec2: unreadable XML: {e}"))?;
    let mut out = Vec::new();
    for set in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "instancesSet")
    {
        for item in set.children().filter(|n| n.tag_name().name() == "item") {
            let Some(iid) = text_of(item, "instanceId") else {
                continue;
            };
            let mut tags = Map::new();
            if let Some(tagset) = child(item, "tagSet") {
                for t in tagset.children().filter(|n| n.tag_name().name() == "item") {
                    if let (Some(k), v) = (text_of(t, "key"), text_of(t, "value")) {
                        tags.insert(k.to_owned(), Value::from(v.unwrap_or("")));
                    }
                }
            }
            let name = tags
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or(iid)
                .to_owned();
            let state = child(item, "instanceState")
                .and_then(|s| text_of(s, "name"))
                .unwrap_or("unknown");
            let mut a = Asset::new(
                &aura_catalog::asset::sanitize_id(&format!("aws-{region}-{iid}")),
                AssetKind::Vm,
                &name,
                now,
            );
            a.set_health(match state {
                "running" => Health::Healthy,
                "pending" | "stopping" | "shutting-down" => Health::Degraded,
                _ => Health::Unknown,
            });
            let az = child(item, "placement").and_then(|p| text_of(p, "availabilityZone"));
            let mut s = Map::new();
            s.insert("provider".into(), Value::from("aws"));
            s.insert("service".into(), Value::from("ec2"));
            s.insert("region".into(), Value::from(region));
            s.insert("instance_id".into(), Value::from(iid));
            for (key, tag) in [
                ("instance_type", "instanceType"),
                ("image_id", "imageId"),
                ("private_ip", "privateIpAddress"),
                ("public_ip", "ipAddress"),
                ("launch_time", "launchTime"),
                ("vpc_id", "vpcId"),
                ("subnet_id", "subnetId"),
                ("architecture", "architecture"),
            ] {
                if let Some(v) = text_of(item, tag) {
                    s.insert(key.into(), Value::from(v));
                }
            }
            s.insert("state".into(), Value::from(state));
            if let Some(az) = az {
                s.insert("availability_zone".into(), Value::from(az));
            }
            a.set_section("cloud", s);
            if !tags.is_empty() {
                a.set_section("labels", tags);
            }
            out.push(a);
        }
    }
    let next = doc
        .descendants()
        .find(|n| n.tag_name().name() == "nextToken")
        .and_then(|n| n.text())
        .map(str::to_owned);
    Ok((out, next))
}

/// RDS `DescribeDBInstances` XML → `service` assets.
pub fn rds_assets(
    xml: &str,
    region: &str,
    now: &str,
) -> Result<(Vec<Asset>, Option<String>), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("rds: unreadable XML: {e}"))?;
    let mut out = Vec::new();
    for db in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "DBInstance")
    {
        let Some(ident) = text_of(db, "DBInstanceIdentifier") else {
            continue;
        };
        let status = text_of(db, "DBInstanceStatus").unwrap_or("unknown");
        let mut a = Asset::new(
            &aura_catalog::asset::sanitize_id(&format!("aws-{region}-rds-{ident}")),
            AssetKind::Service,
            ident,
            now,
        );
        a.set_health(match status {
            "available" => Health::Healthy,
            "backing-up"
            | "modifying"
            | "maintenance"
            | "creating"
            | "rebooting"
            | "upgrading"
            | "storage-optimization" => Health::Degraded,
            "failed"
            | "inaccessible-encryption-credentials"
            | "incompatible-parameters"
            | "storage-full" => Health::Unhealthy,
            _ => Health::Unknown,
        });
        let mut s = Map::new();
        s.insert("provider".into(), Value::from("aws"));
        s.insert("service".into(), Value::from("rds"));
        s.insert("region".into(), Value::from(region));
        for (key, tag) in [
            ("instance_class", "DBInstanceClass"),
            ("engine", "Engine"),
            ("engine_version", "EngineVersion"),
            ("availability_zone", "AvailabilityZone"),
            ("arn", "DBInstanceArn"),
        ] {
            if let Some(v) = text_of(db, tag) {
                s.insert(key.into(), Value::from(v));
            }
        }
        s.insert("status".into(), Value::from(status));
        if let Some(ep) = child(db, "Endpoint") {
            if let Some(addr) = text_of(ep, "Address") {
                s.insert("endpoint".into(), Value::from(addr));
            }
            if let Some(port) = text_of(ep, "Port").and_then(|p| p.parse::<u64>().ok()) {
                s.insert("port".into(), json!(port));
            }
        }
        if let Some(gb) = text_of(db, "AllocatedStorage").and_then(|p| p.parse::<u64>().ok()) {
            s.insert("allocated_storage_gb".into(), json!(gb));
        }
        if let Some(m) = text_of(db, "MultiAZ") {
            s.insert("multi_az".into(), json!(m == "true"));
        }
        a.set_section("cloud", s);
        out.push(a);
    }
    let next = doc
        .descendants()
        .find(|n| n.tag_name().name() == "Marker")
        .and_then(|n| n.text())
        .map(str::to_owned);
    Ok((out, next))
}

/// Lambda `ListFunctions` JSON → `service` assets (environment variable names only).
pub fn lambda_assets(body: &Value, region: &str, now: &str) -> (Vec<Asset>, Option<String>) {
    let mut out = Vec::new();
    for f in body["Functions"].as_array().into_iter().flatten() {
        let Some(name) = f["FunctionName"].as_str() else {
            continue;
        };
        let mut a = Asset::new(
            &aura_catalog::asset::sanitize_id(&format!("aws-{region}-lambda-{name}")),
            AssetKind::Service,
            name,
            now,
        );
        let state = f["State"].as_str().unwrap_or("Active");
        a.set_health(match state {
            "Active" => Health::Healthy,
            "Pending" => Health::Degraded,
            "Failed" => Health::Unhealthy,
            _ => Health::Unknown,
        });
        let mut s = Map::new();
        s.insert("provider".into(), Value::from("aws"));
        s.insert("service".into(), Value::from("lambda"));
        s.insert("region".into(), Value::from(region));
        s.insert("state".into(), Value::from(state));
        for (key, field) in [
            ("arn", "FunctionArn"),
            ("runtime", "Runtime"),
            ("handler", "Handler"),
            ("memory_mb", "MemorySize"),
            ("timeout_seconds", "Timeout"),
            ("code_size_bytes", "CodeSize"),
            ("last_modified", "LastModified"),
        ] {
            if !f[field].is_null() {
                s.insert(key.into(), f[field].clone());
            }
        }
        let mut env: Vec<&str> = f["Environment"]["Variables"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        env.sort_unstable();
        s.insert("env_names".into(), json!(env));
        a.set_section("cloud", s);
        out.push(a);
    }
    (out, body["NextMarker"].as_str().map(str::to_owned))
}

/// ECS `DescribeServices` JSON → `service` assets.
pub fn ecs_assets(body: &Value, cluster: &str, region: &str, now: &str) -> Vec<Asset> {
    let cluster_name = cluster.rsplit('/').next().unwrap_or(cluster);
    body["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|svc| {
            let name = svc["serviceName"].as_str()?;
            let desired = svc["desiredCount"].as_i64().unwrap_or(0);
            let running = svc["runningCount"].as_i64().unwrap_or(0);
            let status = svc["status"].as_str().unwrap_or("UNKNOWN");
            let mut a = Asset::new(
                &aura_catalog::asset::sanitize_id(&format!(
                    "aws-{region}-ecs-{cluster_name}-{name}"
                )),
                AssetKind::Service,
                name,
                now,
            );
            a.set_health(match (status, running.cmp(&desired)) {
                ("ACTIVE", std::cmp::Ordering::Less) if running == 0 && desired > 0 => {
                    Health::Unhealthy
                }
                ("ACTIVE", std::cmp::Ordering::Less) => Health::Degraded,
                ("ACTIVE", _) => Health::Healthy,
                ("DRAINING", _) => Health::Degraded,
                _ => Health::Unknown,
            });
            let mut s = Map::new();
            s.insert("provider".into(), Value::from("aws"));
            s.insert("service".into(), Value::from("ecs"));
            s.insert("region".into(), Value::from(region));
            s.insert("cluster".into(), Value::from(cluster_name));
            s.insert("status".into(), Value::from(status));
            s.insert("desired_count".into(), json!(desired));
            s.insert("running_count".into(), json!(running));
            s.insert("pending_count".into(), svc["pendingCount"].clone());
            for (key, field) in [
                ("arn", "serviceArn"),
                ("task_definition", "taskDefinition"),
                ("launch_type", "launchType"),
            ] {
                if !svc[field].is_null() {
                    s.insert(key.into(), svc[field].clone());
                }
            }
            a.set_section("cloud", s);
            Some(a)
        })
        .collect()
}

#[async_trait::async_trait]
impl Scanner for AwsScanner {
    fn name(&self) -> &'static str {
        "aws"
    }
    fn kinds(&self) -> &'static [AssetKind] {
        &[AssetKind::Vm, AssetKind::Service]
    }
    fn tags(&self) -> &'static [&'static str] {
        &["cloud"]
    }

    async fn scan(&self, ctx: &ScanContext) -> Result<ScanOutput, ScanError> {
        let Some(settings) = &self.settings else {
            return Err(ScanError::Unavailable(
                "no AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or discovery.aws)"
                    .into(),
            ));
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ScanError::Failed(e.to_string()))?;
        let client = Client {
            http,
            settings,
            creds: Credentials {
                access_key: settings.access_key.clone(),
                secret_key: settings.secret_key.clone(),
                session_token: settings.session_token.clone(),
            },
        };
        let wanted =
            |s: &str| settings.services.is_empty() || settings.services.iter().any(|x| x == s);
        let services: Vec<&str> = ["ec2", "ecs", "rds", "lambda"]
            .into_iter()
            .filter(|s| wanted(s))
            .collect();
        ctx.progress.begin(
            self.name(),
            (settings.regions.len() * services.len()) as u64,
        );
        let mut out = ScanOutput::default();
        for region in &settings.regions {
            for service in &services {
                let result = match *service {
                    "ec2" => scan_ec2(&client, region, &ctx.now).await,
                    "rds" => scan_rds(&client, region, &ctx.now).await,
                    "lambda" => scan_lambda(&client, region, &ctx.now).await,
                    _ => scan_ecs(&client, region, &ctx.now).await,
                };
                match result {
                    Ok(assets) => out.assets.extend(assets),
                    Err(message) => out.errors.push(TargetError {
                        target: format!("{service} {region}"),
                        message,
                    }),
                }
                ctx.progress
                    .step(self.name(), &format!("{service} {region}"));
            }
        }
        Ok(out)
    }
}

const MAX_PAGES: usize = 100;

async fn scan_ec2(c: &Client<'_>, region: &str, now: &str) -> Result<Vec<Asset>, String> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = vec![("Action", "DescribeInstances"), ("Version", "2016-11-15")];
        if let Some(t) = &token {
            params.push(("NextToken", t.as_str()));
        }
        let xml = c.query("ec2", region, &params).await?;
        let (assets, next) = ec2_assets(&xml, region, now)?;
        all.extend(assets);
        match next {
            Some(n) if !n.is_empty() => token = Some(n),
            _ => break,
        }
    }
    Ok(all)
}

async fn scan_rds(c: &Client<'_>, region: &str, now: &str) -> Result<Vec<Asset>, String> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = vec![("Action", "DescribeDBInstances"), ("Version", "2014-10-31")];
        if let Some(m) = &marker {
            params.push(("Marker", m.as_str()));
        }
        let xml = c.query("rds", region, &params).await?;
        let (assets, next) = rds_assets(&xml, region, now)?;
        all.extend(assets);
        match next {
            Some(n) if !n.is_empty() => marker = Some(n),
            _ => break,
        }
    }
    Ok(all)
}

async fn scan_lambda(c: &Client<'_>, region: &str, now: &str) -> Result<Vec<Asset>, String> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let query = marker
            .as_ref()
            .map(|m| format!("Marker={}", uri_encode(m, false)))
            .unwrap_or_default();
        let text = c
            .send(
                "lambda",
                region,
                reqwest::Method::GET,
                "/2015-03-31/functions/",
                &query,
                &[],
                vec![],
            )
            .await?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("lambda: {e}"))?;
        let (assets, next) = lambda_assets(&body, region, now);
        all.extend(assets);
        match next {
            Some(n) if !n.is_empty() => marker = Some(n),
            _ => break,
        }
    }
    Ok(all)
}

async fn scan_ecs(c: &Client<'_>, region: &str, now: &str) -> Result<Vec<Asset>, String> {
    const T: &str = "AmazonEC2ContainerServiceV20141113";
    let clusters = c
        .json("ecs", region, &format!("{T}.ListClusters"), json!({}))
        .await?;
    let mut all = Vec::new();
    for cluster in clusters["clusterArns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let list = c
            .json(
                "ecs",
                region,
                &format!("{T}.ListServices"),
                json!({"cluster": cluster}),
            )
            .await?;
        let arns: Vec<&Value> = list["serviceArns"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for chunk in arns.chunks(10) {
            let described = c
                .json(
                    "ecs",
                    region,
                    &format!("{T}.DescribeServices"),
                    json!({"cluster": cluster, "services": chunk}),
                )
                .await?;
            all.extend(ecs_assets(&described, cluster, region, now));
        }
    }
    Ok(all)
}
