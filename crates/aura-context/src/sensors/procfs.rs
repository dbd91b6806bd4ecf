//! Small, allocation-free-in-steady-state readers of `/proc` and `/sys` files: each sensor owns a
//! [`ProcFile`] buffer it reuses for every read, and parses with these helpers.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// A reusable read buffer.
#[derive(Debug, Default)]
pub(crate) struct ProcFile {
    buf: String,
}

impl ProcFile {
    /// Reads `path` into the buffer (replacing its contents) and returns the text.
    pub(crate) fn read(&mut self, path: &Path) -> std::io::Result<&str> {
        self.buf.clear();
        File::open(path)?.read_to_string(&mut self.buf)?;
        Ok(&self.buf)
    }
}

/// The root of the proc filesystem (overridable for tests with `AURA_PROC_ROOT`).
pub(crate) fn proc_root() -> PathBuf {
    std::env::var_os("AURA_PROC_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc"))
}

/// The value of `key:` in a `/proc/meminfo`-style text, in the file's unit.
pub(crate) fn field_u64(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The whitespace-separated numbers after the first token of `line`.
pub(crate) fn numbers(line: &str) -> impl Iterator<Item = u64> + '_ {
    line.split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0))
}

/// Rounds to two decimals (files stay small and stable).
pub(crate) fn round2(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Saturating `u64` → `i64` for TOML integers.
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Clock ticks per second used by `/proc/<pid>/stat` and `/proc/stat` (USER_HZ: 100 on Linux).
pub(crate) const USER_HZ: f64 = 100.0;
