//! Fallback spool: a real NATS server (our own, on a free port) is stopped and restarted while a producer keeps
//! publishing; every acknowledged message ends up in JetStream, in order, exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aura_core::SystemClock;
use aura_mesh::{
    EmbeddedConfig, EmbeddedMesh, Mesh, NatsConfig, NatsMesh, Outgoing, Spooled, StartAt, Topic,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_binary() -> String {
    std::env::var("AURA_TEST_NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into())
}

struct Server(Child);

impl Server {
    fn start(port: u16, store: &Path) -> Server {
        let child = Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server binary (Debian package nats-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child)
    }

    /// Graceful stop (SIGTERM), waiting for the process to exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_and_restarted_while_publishing_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store = dir.path().join("nats");
    let server = Server::start(port, &store);
    let nats = NatsMesh::connect(&NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
    })
    .await
    .unwrap();
    let spool = EmbeddedMesh::open(
        EmbeddedConfig::new(dir.path().join("spool")),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mesh = Spooled::new(
        Arc::new(nats.clone()),
        spool,
        Duration::from_millis(500),
        Duration::from_millis(100),
    );
    let topic = Topic::new("orders").unwrap();
    mesh.ensure_topic(&topic).await.unwrap();

    let mut spooled = 0;
    for i in 0..100 {
        let r = mesh
            .publish(&topic, Outgoing::new(format!("{i}")))
            .await
            .unwrap();
        assert!(!r.spooled);
    }
    server.stop();
    for i in 100..200 {
        let r = mesh
            .publish(&topic, Outgoing::new(format!("{i}")))
            .await
            .unwrap();
        spooled += usize::from(r.spooled);
    }
    assert!(
        spooled >= 95,
        "only {spooled} of 100 publishes were spooled while NATS was down"
    );
    assert!(mesh.status().await.unwrap().pending > 0);
    let server = Server::start(port, &store);
    for i in 200..300 {
        mesh.publish(&topic, Outgoing::new(format!("{i}")))
            .await
            .unwrap();
    }
    // The forwarder drains the spool once NATS is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while mesh.status().await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool not drained: {:?}",
            mesh.status().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = nats.read(&topic, StartAt::Earliest, 1000).await.unwrap();
    let got: Vec<u32> = all
        .iter()
        .map(|m| {
            String::from_utf8(m.payload.clone())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let want: Vec<u32> = (0..300).collect();
    assert_eq!(got, want, "every acknowledged message, in order, once");
    mesh.close().await;
    server.stop();
}
