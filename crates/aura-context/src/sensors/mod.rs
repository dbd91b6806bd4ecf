//! The host sensors and their lifecycle.
//!
//! A [`Sensor`] takes one [`Sample`]: a TOML section (`[compute]`, `[memory]`, …) and its own
//! health verdict. Sensors read `/proc` and `/sys` directly with buffers they reuse between
//! samples (see ARCHITECTURE.md for the measurement against `sysinfo`). The [`Manager`] runs each
//! sensor as a component with its own task: start, sample on its adaptive interval, retry with
//! backoff, restart after repeated failures, detect crash loops, stop.

mod compute;
mod manager;
mod memory;
mod network;
pub(crate) mod procfs;
mod procs;
mod services;
mod sockdiag;
mod storage;

pub use compute::ComputeSensor;
pub use manager::{
    ComponentStatus, Manager, ManagerHandle, ManagerOptions, Pacing, SensorFactory, SensorReport,
};
pub use memory::{LeakDetector, LeakVerdict, MemorySensor, linear_fit};
pub use network::NetworkSensor;
pub use procs::ProcessTable;
pub use services::{ServiceCheck, ServicesSensor};
pub use storage::StorageSensor;

use crate::aav::Health;

/// Why a sample failed.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// A `/proc` or `/sys` file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file had an unexpected shape.
    #[error("cannot parse `{path}`: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl SensorError {
    pub(crate) fn read(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SensorError + '_ {
        move |source| SensorError::Read {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One sample of one sensor.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The section written to the asset file.
    pub section: toml::Table,
    /// This sensor's view of the asset's health.
    pub health: Health,
}

/// A sensor: something that can take a sample of one aspect of an asset.
#[async_trait::async_trait]
pub trait Sensor: Send {
    /// The section (and status) name: `compute`, `memory`, `storage`, `network`, `services`.
    fn name(&self) -> &'static str;
    /// Takes one sample.
    async fn sample(&mut self) -> Result<Sample, SensorError>;
}

/// The names of the built-in sensors.
pub const BUILTIN: &[&str] = &["compute", "memory", "storage", "network", "services"];

/// A fresh built-in sensor by name (`services` needs its checks: see [`ServicesSensor::new`]).
#[must_use]
pub fn builtin(name: &str, top_processes: usize) -> Option<Box<dyn Sensor>> {
    builtin_sharing(name, top_processes, &ProcessTable::new())
}

/// As [`builtin`], with the compute and memory sensors reading one shared [`ProcessTable`]
/// (one `/proc` sweep per tick instead of one per sensor).
#[must_use]
pub fn builtin_sharing(
    name: &str,
    top_processes: usize,
    table: &ProcessTable,
) -> Option<Box<dyn Sensor>> {
    Some(match name {
        "compute" => Box::new(ComputeSensor::sharing(top_processes, table.clone())),
        "memory" => Box::new(MemorySensor::sharing(
            top_processes,
            LeakDetector::default(),
            table.clone(),
        )),
        "storage" => Box::new(StorageSensor::new()),
        "network" => Box::new(NetworkSensor::new()),
        _ => return None,
    })
}

/// (utime + stime ticks, RSS bytes) from the text of `/proc/self/stat`.
pub(crate) fn procfs_self_stat(text: &str) -> Option<(u64, u64)> {
    let mut p = procs::Proc::default();
    procs::parse_stat_into(0, text, 4096, &mut p).then_some((p.cpu_ticks, p.rss_bytes))
}
