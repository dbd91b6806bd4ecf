//! The `.aav` asset file: format, schema, checksum and migration ([`format`](mod@format)), the cached
//! [`Reader`] and the atomic [`Writer`]. The format is specified in `docs/aav-spec.md`.
//!
//! ```no_run
//! use aura_context::aav::{AssetKind, Reader, SectionUpdate, Writer, WriterOptions};
//!
//! # fn main() -> Result<(), aura_context::aav::AavError> {
//! let writer = Writer::new("/var/lib/aura/assets", WriterOptions::default())?;
//! let mut compute = toml::Table::new();
//! compute.insert("cpu_percent".into(), 12.5.into());
//! writer.update(&SectionUpdate::new("web-1", AssetKind::Host, "web-1").section("compute", compute))?;
//! let reader = Reader::new(1024);
//! let doc = reader.read(&writer.path_for("web-1")?)?;
//! assert_eq!(doc.get("compute.cpu_percent").and_then(|v| v.as_float()), Some(12.5));
//! # Ok(()) }
//! ```

mod error;
pub mod format;
mod history;
mod reader;
mod writer;

pub use error::AavError;
pub use format::{
    AssetKind, Document, Health, SCHEMA_VERSION, SECTIONS, checksum_of, valid_asset_id,
};
pub use history::{HistoryRecord, read_history};
pub use reader::Reader;
/// The backups of `asset_id` in `dir`, newest first (empty when there are none or the
/// directory cannot be read).
#[must_use]
pub fn backups(dir: &std::path::Path, asset_id: &str) -> Vec<std::path::PathBuf> {
    writer::list_backups(dir, asset_id).unwrap_or_default()
}

pub use writer::{SectionUpdate, WriteOutcome, Writer, WriterOptions, lock_path, temp_prefix};
