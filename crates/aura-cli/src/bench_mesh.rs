//! `aura bench mesh`: durable publish throughput (`msgs_per_sec`) and batch-ack latency (p50/p99) of a mesh
//! backend through the `Mesh` adapter and, for NATS and Redis, through the raw client doing the same work in the
//! same run (JetStream publish + PubAck; pipelined XADD), with the adapter/raw ratio. Single-message latency with
//! concurrent publishers shows the embedded log's group commit.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::json;

use aura_core::SystemClock;
use aura_mesh::{
    EmbeddedConfig, EmbeddedMesh, Mesh, NatsConfig, NatsMesh, Outgoing, RedisConfig, RedisMesh,
    Topic,
};

/// Which backend to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchBackend {
    /// The embedded durable log (fsync'd, group commit).
    Embedded,
    /// NATS JetStream (file storage).
    Nats,
    /// Redis Streams.
    Redis,
    /// Kafka (needs a binary built with the `kafka` feature).
    Kafka,
}

/// Options of `aura bench mesh`.
#[derive(Debug, Args)]
pub(crate) struct BenchMeshArgs {
    /// Backend.
    #[arg(long, value_enum, default_value_t = BenchBackend::Embedded)]
    pub backend: BenchBackend,
    /// Server URL [default: nats://127.0.0.1:4222, redis://127.0.0.1:6379].
    #[arg(long)]
    pub url: Option<String>,
    /// Messages per run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub messages: u64,
    /// Messages per publish call.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub publishers: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub size: u64,
    /// Print JSON (`msgs_per_sec`, `p99_ms`, `raw_msgs_per_sec`, `ratio`, …).
    #[arg(long)]
    pub json: bool,
}

struct Run {
    msgs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs the benchmark.
pub(crate) async fn run(args: &BenchMeshArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let topic = Topic::new(&format!("bench-{}", std::process::id()))?;
    let payload = vec![b'x'; args.size as usize];
    let (mesh, raw): (Arc<dyn Mesh>, Option<Raw>) = match args.backend {
        BenchBackend::Embedded => (
            Arc::new(EmbeddedMesh::open(
                EmbeddedConfig::new(tmp.path().join("mesh")),
                Arc::new(SystemClock),
            )?),
            None,
        ),
        BenchBackend::Nats => {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
            let m = NatsMesh::connect(&NatsConfig {
                url,
                timeout: Duration::from_secs(5),
            })
            .await?;
            let raw = Raw::Nats(m.client().clone());
            (Arc::new(m), Some(raw))
        }
        BenchBackend::Redis => {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            let m = RedisMesh::connect(&RedisConfig {
                url,
                timeout: Duration::from_secs(5),
            })
            .await?;
            let conn = m.dedicated_connection().await?;
            (Arc::new(m), Some(Raw::Redis(conn)))
        }
        #[cfg(feature = "kafka")]
        BenchBackend::Kafka => {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| "kafka://127.0.0.1:9092".into());
            let m = aura_mesh::KafkaMesh::connect(&aura_mesh::KafkaConfig::new(url)).await?;
            m.ensure_topic(&Topic::new(&format!("{}-raw", topic.as_str()))?)
                .await?;
            let raw = Raw::Kafka(m.producer().clone());
            (Arc::new(m), Some(raw))
        }
        #[cfg(not(feature = "kafka"))]
        BenchBackend::Kafka => anyhow::bail!(
            "the Kafka backend is not in this binary: build aura with `--features kafka`"
        ),
    };
    mesh.ensure_topic(&topic).await?;
    // Warm up.
    mesh.publish_batch(
        &topic,
        (0..100).map(|_| Outgoing::new(payload.clone())).collect(),
    )
    .await?;
    let adapter = publish_run(mesh.clone(), &topic, args, &payload).await?;
    let single = single_run(mesh.clone(), &topic, &payload).await?;
    let raw_run = match &raw {
        Some(r) => Some(r.run(&topic, args, &payload).await?),
        None => None,
    };
    let _ = mesh.delete_topic(&topic).await;
    if let Some(Raw::Nats(_)) = &raw {
        let _ = mesh
            .delete_topic(&Topic::new(&format!("{}-raw", topic.as_str()))?)
            .await;
    }
    #[cfg(feature = "kafka")]
    if let Some(Raw::Kafka(_)) = &raw {
        let _ = mesh
            .delete_topic(&Topic::new(&format!("{}-raw", topic.as_str()))?)
            .await;
    }
    if let Some(Raw::Redis(conn)) = &raw {
        let mut c = conn.clone();
        let _: Result<i64, _> = redis::cmd("DEL")
            .arg(format!("aura:bench-raw:{}", topic.as_str()))
            .query_async(&mut c)
            .await;
    }
    mesh.close().await;
    let mut out = json!({
        "backend": mesh.backend(),
        "messages": args.messages,
        "batch": args.batch,
        "publishers": args.publishers,
        "payload_bytes": args.size,
        "msgs_per_sec": adapter.msgs_per_sec.round(),
        "p50_ms": round3(adapter.p50_ms),
        "p99_ms": round3(adapter.p99_ms),
        "single_publishers": 64,
        "single_msgs_per_sec": single.msgs_per_sec.round(),
        "single_p50_ms": round3(single.p50_ms),
        "single_p99_ms": round3(single.p99_ms),
    });
    if let Some(r) = &raw_run {
        out["raw_msgs_per_sec"] = json!(r.msgs_per_sec.round());
        out["raw_p99_ms"] = json!(round3(r.p99_ms));
        out["ratio"] = json!(round3(adapter.msgs_per_sec / r.msgs_per_sec.max(1.0)));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut rows = vec![
            vec!["backend".to_owned(), mesh.backend().to_owned()],
            vec![
                format!(
                    "msgs/s ({} publishers × batches of {})",
                    args.publishers, args.batch
                ),
                format!("{:.0}", adapter.msgs_per_sec),
            ],
            vec![
                "batch ack p50 / p99 ms".to_owned(),
                format!("{:.3} / {:.3}", adapter.p50_ms, adapter.p99_ms),
            ],
            vec![
                "single msgs/s (64 publishers)".to_owned(),
                format!("{:.0}", single.msgs_per_sec),
            ],
            vec![
                "single ack p50 / p99 ms".to_owned(),
                format!("{:.3} / {:.3}", single.p50_ms, single.p99_ms),
            ],
        ];
        if let Some(r) = &raw_run {
            rows.push(vec![
                "raw client msgs/s".to_owned(),
                format!("{:.0}", r.msgs_per_sec),
            ]);
            rows.push(vec![
                "adapter / raw".to_owned(),
                format!("{:.2}", adapter.msgs_per_sec / r.msgs_per_sec.max(1.0)),
            ]);
        }
        print!("{}", crate::output::table(&["", ""], rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn publish_run(
    mesh: Arc<dyn Mesh>,
    topic: &Topic,
    args: &BenchMeshArgs,
    payload: &[u8],
) -> anyhow::Result<Run> {
    let per = args.messages / args.publishers;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.publishers {
        let mesh = mesh.clone();
        let topic = topic.clone();
        let payload = payload.to_vec();
        let batch = args.batch;
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut sent = 0;
            while sent < per {
                let n = batch.min(per - sent);
                let msgs: Vec<Outgoing> = (0..n).map(|_| Outgoing::new(payload.clone())).collect();
                let t = Instant::now();
                mesh.publish_batch(&topic, msgs).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                sent += n;
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.context("publisher task")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        msgs_per_sec: (per * args.publishers) as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    })
}

async fn single_run(mesh: Arc<dyn Mesh>, topic: &Topic, payload: &[u8]) -> anyhow::Result<Run> {
    let publishers = 64u64;
    let per = 200u64;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..publishers {
        let mesh = mesh.clone();
        let topic = topic.clone();
        let payload = payload.to_vec();
        set.spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for _ in 0..per {
                let t = Instant::now();
                mesh.publish(&topic, Outgoing::new(payload.clone())).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.context("publisher task")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        msgs_per_sec: (publishers * per) as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    })
}

/// The raw client of a remote backend, doing the adapter's work without it.
enum Raw {
    Nats(async_nats::Client),
    Redis(redis::aio::MultiplexedConnection),
    /// The adapter's own producer (acks=all, idempotent), sending to a sibling topic.
    #[cfg(feature = "kafka")]
    Kafka(rdkafka::producer::FutureProducer),
}

impl Raw {
    async fn run(
        &self,
        topic: &Topic,
        args: &BenchMeshArgs,
        payload: &[u8],
    ) -> anyhow::Result<Run> {
        let per = args.messages / args.publishers;
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        match self {
            Raw::Nats(client) => {
                let js = async_nats::jetstream::new(client.clone());
                let name = format!(
                    "AURA_{}-raw",
                    topic.as_str().replace('_', "__").replace('.', "_d")
                );
                let subject = format!("aura.mesh.{}-raw", topic.as_str());
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name,
                    subjects: vec![subject.clone()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    description: Some(format!("{}-raw", topic.as_str())),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                for _ in 0..args.publishers {
                    let js = js.clone();
                    let subject = subject.clone();
                    let payload = bytes::Bytes::from(payload.to_vec());
                    let batch = args.batch;
                    set.spawn(async move {
                        let mut lat = Vec::new();
                        let mut sent = 0;
                        while sent < per {
                            let n = batch.min(per - sent);
                            let t = Instant::now();
                            let mut acks = Vec::with_capacity(n as usize);
                            for _ in 0..n {
                                acks.push(
                                    js.publish(subject.clone(), payload.clone())
                                        .await
                                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                                );
                            }
                            for a in acks {
                                a.await.map_err(|e| anyhow::anyhow!("{e}"))?;
                            }
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            sent += n;
                        }
                        anyhow::Ok(lat)
                    });
                }
            }
            #[cfg(feature = "kafka")]
            Raw::Kafka(producer) => {
                let name = format!("{}-raw", topic.as_str());
                for _ in 0..args.publishers {
                    let producer = producer.clone();
                    let name = name.clone();
                    let payload = payload.to_vec();
                    let batch = args.batch;
                    set.spawn(async move {
                        let mut lat = Vec::new();
                        let mut sent = 0;
                        while sent < per {
                            let n = batch.min(per - sent);
                            let t = Instant::now();
                            let mut acks = Vec::with_capacity(n as usize);
                            for _ in 0..n {
                                let mut record: rdkafka::producer::FutureRecord<'_, (), [u8]> =
                                    rdkafka::producer::FutureRecord::to(&name)
                                        .payload(payload.as_slice());
                                loop {
                                    match producer.send_result(record) {
                                        Ok(f) => {
                                            acks.push(f);
                                            break;
                                        }
                                        Err((e, r)) => {
                                            if e.rdkafka_error_code()
                                                != Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                                            {
                                                anyhow::bail!("{e}");
                                            }
                                            record = r;
                                            tokio::time::sleep(Duration::from_millis(1)).await;
                                        }
                                    }
                                }
                            }
                            for a in acks {
                                a.await
                                    .map_err(|e| anyhow::anyhow!("{e}"))?
                                    .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
                            }
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            sent += n;
                        }
                        anyhow::Ok(lat)
                    });
                }
            }
            Raw::Redis(conn) => {
                let key = format!("aura:bench-raw:{}", topic.as_str());
                for _ in 0..args.publishers {
                    let mut conn = conn.clone();
                    let key = key.clone();
                    let payload = payload.to_vec();
                    let batch = args.batch;
                    set.spawn(async move {
                        let mut lat = Vec::new();
                        let mut sent = 0;
                        while sent < per {
                            let n = batch.min(per - sent);
                            let mut pipe = redis::pipe();
                            for _ in 0..n {
                                pipe.cmd("XADD")
                                    .arg(&key)
                                    .arg("*")
                                    .arg("p")
                                    .arg(payload.as_slice());
                            }
                            let t = Instant::now();
                            let _: Vec<String> = pipe.query_async(&mut conn).await?;
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            sent += n;
                        }
                        anyhow::Ok(lat)
                    });
                }
            }
        }
        let mut lat = Vec::new();
        while let Some(r) = set.join_next().await {
            lat.extend(r.context("raw publisher task")??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        Ok(Run {
            msgs_per_sec: (per * args.publishers) as f64 / elapsed,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        })
    }
}
