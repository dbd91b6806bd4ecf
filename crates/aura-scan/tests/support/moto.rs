//! A `moto` server (the S3/EC2/… API on loopback) started for one test and killed when dropped. Shared by the
//! aura-scan, aura-catalog, aura-audit and aura-cli tests through `#[path]` (installed by `scripts/services.sh`:
//! `moto[server]`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server that is killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 -m moto.server` on a free loopback port and waits until it accepts connections.
pub fn start() -> Moto {
    let ok = Command::new("python3")
        .args(["-c", "import moto, boto3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "moto is not installed: run scripts/services.sh (python3 -m pip install 'moto[server]')"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start on port {port}"
        );
        std::thread::yield_now();
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}
