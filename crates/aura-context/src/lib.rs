//! Aura's context plane, part one: the `.aav` asset files and what keeps them current.
//!
//! - [`aav`]: the file format (TOML, specified in `docs/aav-spec.md`), a cached [`aav::Reader`]
//!   with key-path queries and JSON/YAML export, and an atomic [`aav::Writer`] (temp file, fsync,
//!   rename, directory fsync, advisory lock, section merge, checksum, bounded backups, optional
//!   compressed history, schema migration).
//! - [`sensors`]: the host sensors (compute, memory, storage, network, services) reading `/proc`
//!   and `/sys` directly with reused buffers, their component lifecycle and the [`sensors::Manager`].
//! - [`detect`]: the change detector deciding which samples are worth a write.
//! - [`aggregate`]: batching, dedupe, priority and emergency flush between detector and writer.
//! - [`sample`]: the adaptive sampler; [`watchdog`]: the sensor's own RSS/CPU caps.
//! - [`guardian`]: validation and repair (levels 1–5) of asset files.
//! - [`pipeline`]: the whole host-sensor loop used by `aura up` and `aura sensor`.
//! - [`forward`]: the bounded, coalescing spool of updates a sidecar sends to a running Aura.
//!
//! Architecture invariant: knows files, `/proc`, `/sys` and outbound HTTP health checks —
//! nothing of the HTTP API, policies or the audit log (repairs are returned as records; the
//! caller audits them). A reader never sees a torn file: every write is a rename of a fsync'd
//! temp file.

pub mod aav;
pub mod aggregate;
pub mod detect;
pub mod forward;
pub mod guardian;
pub mod pipeline;
pub mod sample;
pub mod sensors;
pub mod watchdog;

mod metric_names;

pub use metric_names::{SENSOR_PUSHES, describe_metrics};
