//! The services sensor: HTTP health checks from the configuration, run concurrently — status,
//! latency, error rate over the last checks, uptime since the sensor started, and a version
//! header.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use toml::{Table, Value};

use super::procfs::round2;
use super::{Sample, Sensor, SensorError};
use crate::aav::Health;

/// One configured check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck {
    /// The key under `[services.checks]`.
    pub name: String,
    /// The URL fetched with GET.
    pub url: String,
    /// Bound on one check.
    pub timeout: Duration,
    /// Status codes counted as up; empty means 200–399.
    pub expect_status: Vec<u16>,
    /// Response header carrying the service's version (e.g. `x-version`).
    pub version_header: Option<String>,
}

#[derive(Debug, Default)]
struct History {
    recent: VecDeque<bool>,
    total: u64,
    up: u64,
    last_status: Option<&'static str>,
    since: Option<Instant>,
}

/// Window of the error rate, in checks.
const WINDOW: usize = 20;

/// Runs the configured HTTP checks.
#[derive(Debug)]
pub struct ServicesSensor {
    checks: Vec<ServiceCheck>,
    history: Vec<History>,
    client: reqwest::Client,
}

impl ServicesSensor {
    /// A services sensor for `checks`. The process must have installed a rustls crypto provider.
    pub fn new(checks: Vec<ServiceCheck>) -> Result<ServicesSensor, SensorError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("aura-sensor/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| SensorError::Other(format!("http client: {e}")))?;
        let history = checks.iter().map(|_| History::default()).collect();
        Ok(ServicesSensor {
            checks,
            history,
            client,
        })
    }
}

struct Outcome {
    up: bool,
    http_status: Option<u16>,
    latency_ms: f64,
    version: Option<String>,
    error: Option<String>,
}

async fn check(client: &reqwest::Client, c: &ServiceCheck) -> Outcome {
    let started = Instant::now();
    let result = client.get(&c.url).timeout(c.timeout).send().await;
    let latency_ms = round2(started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let up = if c.expect_status.is_empty() {
                (200..400).contains(&code)
            } else {
                c.expect_status.contains(&code)
            };
            let version = c
                .version_header
                .as_deref()
                .and_then(|h| resp.headers().get(h))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect());
            Outcome {
                up,
                http_status: Some(code),
                latency_ms,
                version,
                error: (!up).then(|| format!("unexpected status {code}")),
            }
        }
        Err(e) => Outcome {
            up: false,
            http_status: None,
            latency_ms,
            version: None,
            error: Some(if e.is_timeout() {
                "timeout".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            }),
        },
    }
}

#[async_trait::async_trait]
impl Sensor for ServicesSensor {
    fn name(&self) -> &'static str {
        "services"
    }

    async fn sample(&mut self) -> Result<Sample, SensorError> {
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            let client = self.client.clone();
            let c = c.clone();
            set.spawn(async move { (i, check(&client, &c).await) });
        }
        let mut outcomes: Vec<Option<Outcome>> = self.checks.iter().map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, o)) = joined
                && let Some(slot) = outcomes.get_mut(i)
            {
                *slot = Some(o);
            }
        }
        let mut checks = Table::new();
        let (mut up_count, mut down_count) = (0, 0);
        for ((c, h), o) in self
            .checks
            .iter()
            .zip(self.history.iter_mut())
            .zip(outcomes)
        {
            let o = o.unwrap_or(Outcome {
                up: false,
                http_status: None,
                latency_ms: 0.0,
                version: None,
                error: Some("check did not complete".into()),
            });
            h.recent.push_back(o.up);
            while h.recent.len() > WINDOW {
                h.recent.pop_front();
            }
            h.total += 1;
            h.up += u64::from(o.up);
            let status = if o.up { "up" } else { "down" };
            if h.last_status != Some(status) {
                h.last_status = Some(status);
                h.since = Some(Instant::now());
            }
            if o.up {
                up_count += 1;
            } else {
                down_count += 1;
            }
            let errors = h.recent.iter().filter(|u| !**u).count();
            let mut t = Table::new();
            t.insert("url".into(), Value::String(c.url.clone()));
            t.insert("status".into(), Value::String(status.into()));
            if let Some(code) = o.http_status {
                t.insert("http_status".into(), Value::Integer(i64::from(code)));
            }
            t.insert("latency_ms".into(), Value::Float(o.latency_ms));
            t.insert(
                "error_rate".into(),
                Value::Float(round2(errors as f64 / h.recent.len().max(1) as f64)),
            );
            t.insert(
                "uptime_percent".into(),
                Value::Float(round2(h.up as f64 * 100.0 / h.total.max(1) as f64)),
            );
            t.insert(
                "status_for_seconds".into(),
                Value::Integer(h.since.map(|s| s.elapsed().as_secs() as i64).unwrap_or(0)),
            );
            if let Some(v) = o.version {
                t.insert("version".into(), Value::String(v));
            }
            if let Some(e) = o.error {
                t.insert("error".into(), Value::String(e));
            }
            checks.insert(c.name.clone(), Value::Table(t));
        }
        let mut s = Table::new();
        s.insert("up".into(), Value::Integer(up_count));
        s.insert("down".into(), Value::Integer(down_count));
        s.insert("checks".into(), Value::Table(checks));
        let health = if self.checks.is_empty() || down_count == 0 {
            Health::Healthy
        } else if up_count == 0 {
            Health::Unhealthy
        } else {
            Health::Degraded
        };
        Ok(Sample { section: s, health })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn checks_a_real_http_server() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nx-version: 1.2.3\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
            }
        });
        let mut s = ServicesSensor::new(vec![
            ServiceCheck {
                name: "api".into(),
                url: format!("http://{addr}/health"),
                timeout: Duration::from_secs(2),
                expect_status: vec![],
                version_header: Some("x-version".into()),
            },
            ServiceCheck {
                name: "gone".into(),
                url: "http://127.0.0.1:1/".into(),
                timeout: Duration::from_secs(2),
                expect_status: vec![],
                version_header: None,
            },
        ])
        .unwrap();
        let sample = s.sample().await.unwrap();
        let api = &sample.section["checks"]["api"];
        assert_eq!(api["status"].as_str(), Some("up"));
        assert_eq!(api["version"].as_str(), Some("1.2.3"));
        assert_eq!(
            sample.section["checks"]["gone"]["status"].as_str(),
            Some("down")
        );
        assert_eq!(sample.health, Health::Degraded);
        server.abort();
    }
}
