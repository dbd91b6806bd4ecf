//! Aura's asset catalog (context plane II): an in-memory index of every asset kept current from the asset
//! files, a query language (filters, aggregates, sort, paging, projection — see `docs/queries.md`), watch
//! streams of diffs, cache tiers (in-process, Redis, S3 cold archive) and the agents' decision helpers.
//!
//! The catalog never parses queries twice, never writes files itself (an [`files::AssetSink`] does) and never
//! knows HTTP: the server and CLI own the wire shapes.

pub mod asset;
pub mod cache;
mod catalog;
pub mod files;
pub mod helpers;
mod index;
pub mod query;
pub mod synth;
pub mod value;
mod watch;

pub use asset::{Asset, AssetError, AssetKind, Health};
pub use catalog::{
    Answer, Catalog, CatalogSettings, Change, ChangeFeed, GroupRow, HealthSummary, QueryError,
    Rows, Upsert,
};
pub use index::Entry;
pub use watch::{FieldChange, Gone, Watch, WatchEvent};
