//! Small, allocation-free-in-steady-state readers of `/proc` and `/sys` files: a sensor keeps each
//! fixed file open as a [`ProcFd`] and reads it again from offset 0, or reads any path into a
//! reused [`ProcFile`] buffer, and parses with these helpers.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
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

/// One `/proc` file kept open between samples and read again from offset 0 with `pread` (proc's
/// seq files regenerate their text when read from the start): one syscall per sample, or two for
/// a file longer than the buffer, instead of open, statx, lseek, read, read, close.
#[derive(Debug)]
pub(crate) struct ProcFd {
    path: PathBuf,
    file: Option<File>,
    /// Zero-initialised once; `len` bytes of it hold the last text.
    buf: Vec<u8>,
    len: usize,
}

impl ProcFd {
    /// `path`, opened at the first read.
    pub(crate) fn new(path: PathBuf) -> ProcFd {
        ProcFd {
            path,
            file: None,
            buf: Vec::new(),
            len: 0,
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's current text, as a sensor error naming the file when it cannot be read.
    pub(crate) fn text(&mut self) -> Result<&str, super::SensorError> {
        match self.refresh() {
            Ok(()) => std::str::from_utf8(&self.buf[..self.len]).map_err(std::io::Error::other),
            Err(e) => Err(e),
        }
        .map_err(|source| super::SensorError::Read {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// The file's current text.
    pub(crate) fn read(&mut self) -> std::io::Result<&str> {
        self.refresh()?;
        std::str::from_utf8(&self.buf[..self.len]).map_err(std::io::Error::other)
    }

    fn refresh(&mut self) -> std::io::Result<()> {
        if self.read_once().is_err() {
            // A descriptor that went bad (e.g. a replaced /proc mount): open again once.
            self.file = None;
            self.read_once()?;
        }
        Ok(())
    }

    fn read_once(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
        }
        if let Some(file) = &self.file {
            self.len = pread_all(file, &mut self.buf)?;
        }
        Ok(())
    }
}

/// Reads `file` from offset 0 into `buf` (zero-filled, grown as needed; never shrunk) and
/// returns how many bytes it holds.
pub(crate) fn pread_all(file: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.is_empty() {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            return Ok(len);
        }
        len += n;
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
