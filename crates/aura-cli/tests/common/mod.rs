//! The shared harness of the real-binary tests: start `aura up` on port 0, run `aura` commands with a clean
//! environment, and small HTTP helpers. Every test file uses a subset.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_aura");

/// A running `aura up` child process.
pub struct Aura {
    /// `None` once [`Aura::wait`] has reaped it.
    child: Option<Child>,
    pid: u32,
    /// `http://ADDR`.
    pub url: String,
    /// `ADDR`.
    pub addr: String,
    /// Its working directory (holding `policies/`, `aura.yaml` when a test writes them).
    pub home: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    /// Everything the server wrote to stderr, drained by a thread so the pipe never fills and blocks it.
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Aura {
    /// Starts `aura up` in a fresh temporary home (data dir `home/data`) with extra arguments.
    pub fn start(extra: &[&str]) -> Aura {
        let home = tempfile::tempdir().unwrap();
        let mut aura = Aura::start_in_with(home.path(), "data", extra);
        aura._owned = Some(home);
        aura
    }

    /// Starts `aura up` on port 0 in `home` with the data dir `home/<data>`.
    pub fn start_in(home: &Path, data: &str) -> Aura {
        Aura::start_in_with(home, data, &[])
    }

    /// As [`Aura::start_in`], with extra arguments for `aura up`.
    pub fn start_in_with(home: &Path, data: &str, extra: &[&str]) -> Aura {
        Aura::start_in_with_envs(home, data, extra, &[])
    }

    /// As [`Aura::start_in_with`], with extra environment variables for `aura up`.
    pub fn start_in_with_envs(
        home: &Path,
        data: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Aura {
        let data_dir = home.join(data);
        let mut child = aura_cmd(home)
            .envs(envs.iter().copied())
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let line = read_line(child.stdout.as_mut().unwrap());
        let Some(url) = line.strip_prefix("listening on ") else {
            let mut err = String::new();
            let _ = child.kill();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "aura up did not start (when it uses PostgreSQL: is PostgreSQL running? scripts/services.sh): \
                 `{line}`\n{err}"
            );
        };
        let url = url.trim().to_owned();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drain = child.stderr.take().map(|mut pipe| {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        });
        Aura {
            addr: url.trim_start_matches("http://").to_owned(),
            url,
            pid: child.id(),
            child: Some(child),
            home: home.to_owned(),
            data_dir,
            _owned: None,
            stderr,
            drain,
        }
    }

    /// The working directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Reads the `proxy listening on http://ADDR` line `aura up` prints after `listening on`; returns
    /// `http://ADDR`. Call it once, right after starting.
    pub fn proxy_url(&mut self) -> String {
        let stdout = self.child.as_mut().unwrap().stdout.as_mut().unwrap();
        let line = read_line(stdout);
        line.strip_prefix("proxy listening on ")
            .unwrap_or_else(|| panic!("expected the proxy line, got `{line}`"))
            .trim()
            .to_owned()
    }

    /// The admin token written on first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Runs an `aura` command against this server: its URL, and its data dir for the admin token.
    pub fn cli(&self, args: &[&str]) -> Run {
        let out = aura_cmd(&self.home)
            .env("AURA_URL", &self.url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap();
        Run::from(args, out)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Sends SIGKILL: the process gets no chance to flush or sync anything.
    pub fn kill9(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }

    /// Waits for exit with a deadline; returns the exit status and everything written to stderr. The exit is an
    /// event: a waiter thread blocks in `wait()` and reports over a channel.
    pub fn wait(&mut self, within: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("aura was already waited for");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(within) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("aura did not exit within {within:?}");
            }
        };
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        (status, stderr)
    }

    /// Creates a token with the admin token; returns the secret.
    pub async fn token(&self, name: &str, role: &str, agent: Option<&str>) -> String {
        let resp = client()
            .post(self.url("/api/v1/tokens"))
            .bearer_auth(self.admin_token())
            .json(&json!({"name": name, "role": role, "agent": agent}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "creating token `{name}`");
        let body: Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// POST /api/v1/decide with `token`; returns the status and the answer.
    pub async fn decide(&self, token: &str, body: Value) -> (u16, Value) {
        post(&self.url("/api/v1/decide"), token, body).await
    }

    /// GET `path` with the admin token, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let resp = client()
            .get(self.url(path))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// The bundle hash of the policy in force.
    pub async fn policy_hash(&self) -> String {
        self.get("/api/v1/policies").await["hash"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Aura {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The result of one `aura` command.
pub struct Run {
    what: String,
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Wraps a finished command.
    pub fn from(args: &[&str], out: std::process::Output) -> Run {
        Run {
            what: format!("aura {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Asserts the exit code and returns self.
    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code,
            Some(expected),
            "`{}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", self.what, self.stdout))
    }
}

/// The `aura` command with a clean environment and `dir` as working directory (so no stray ./aura.yaml).
pub fn aura_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for var in [
        "AURA_CONFIG",
        "AURA_DATA_DIR",
        "AURA_LISTEN",
        "AURA_LOG",
        "AURA_TOKEN",
        "AURA_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Reads one line, byte by byte (so nothing after it is consumed).
pub fn read_line(r: &mut impl std::io::Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while r.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// An HTTP client with a timeout.
pub fn client() -> reqwest::Client {
    // The `s3` feature gives reqwest rustls without a provider (as in `main`): install ring first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POST JSON with a bearer token; the status and the answer (null when not JSON).
pub async fn post(url: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A temp home with `policies/<name>` for each `(name, text)`.
pub fn home_with(policies: &[(&str, &str)]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("policies")).unwrap();
    for (name, text) in policies {
        write_policy(home.path(), name, text);
    }
    home
}

/// Writes a policy file atomically (a hidden temp file, then a rename), so the watcher never sees half a file.
pub fn write_policy(home: &Path, name: &str, text: &str) {
    let dir = home.join("policies");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Runs `promtool check metrics` when promtool is installed; CI sets AURA_REQUIRE_PROMTOOL=1 so it must be.
pub fn promtool_check(text: &str) {
    let required = std::env::var("AURA_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "promtool is required (AURA_REQUIRE_PROMTOOL=1) but cannot run: {e}"
            );
            eprintln!(
                "note: promtool not installed; skipped `promtool check metrics` (apt-get install prometheus)"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
