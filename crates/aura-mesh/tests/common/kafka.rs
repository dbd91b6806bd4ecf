//! Starts `tansu`, a Kafka-protocol broker, in memory on a free loopback port; killed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `tansu broker`.
pub struct Tansu {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The `tansu` binary: `$TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
pub fn binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return p.into();
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    std::path::Path::new(&home).join(".cargo/bin/tansu")
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub async fn start() -> Tansu {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let bin = binary();
        let child = Command::new(&bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}); install it: cargo install --locked tansu --features dynostore",
                    bin.display()
                )
            });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tansu did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Tansu {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `kafka://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.addr)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
