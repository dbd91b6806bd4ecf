//! Optional compressed history of an asset's past section values: one gzip member per write
//! appended to `<dir>/.history/<asset_id>.jsonl.gz` (a concatenation of gzip members is itself
//! a valid gzip stream), rotated to `.1` past a size bound.

use std::fs::{self, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use aura_core::Timestamp;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use toml::Table;

use super::error::AavError;
use super::format::Document;

/// One recorded write.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// When it was written.
    pub at: Timestamp,
    /// The sections it wrote, as JSON.
    pub sections: serde_json::Value,
}

fn history_path(dir: &Path, asset_id: &str) -> PathBuf {
    dir.join(".history").join(format!("{asset_id}.jsonl.gz"))
}

pub(crate) fn append(
    dir: &Path,
    asset_id: &str,
    at: Timestamp,
    sections: &[(String, Table)],
    max_bytes: u64,
) -> Result<(), AavError> {
    let path = history_path(dir, asset_id);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(AavError::io(parent))?;
    }
    if fs::metadata(&path).is_ok_and(|m| m.len() > max_bytes) {
        let rotated = path.with_extension("gz.1");
        fs::rename(&path, &rotated).map_err(AavError::io(&rotated))?;
    }
    let mut table = Table::new();
    for (name, section) in sections {
        table.insert(name.clone(), toml::Value::Table(section.clone()));
    }
    let line = serde_json::json!({
        "at": at.to_rfc3339(),
        "sections": Document::from_table(table).to_json(),
    });
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let io = |e| AavError::io(&path)(e);
    encoder.write_all(line.to_string().as_bytes()).map_err(io)?;
    encoder.write_all(b"\n").map_err(io)?;
    let bytes = encoder.finish().map_err(io)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(AavError::io(&path))?;
    file.write_all(&bytes).map_err(AavError::io(&path))
}

/// Every record of `asset_id`'s history in `dir`, oldest first (the rotated file included).
/// A torn last member (a crash during an append) ends the read without an error.
pub fn read_history(dir: &Path, asset_id: &str) -> Result<Vec<HistoryRecord>, AavError> {
    let path = history_path(dir, asset_id);
    let mut out = Vec::new();
    for file in [path.with_extension("gz.1"), path] {
        let f = match fs::File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AavError::io(&file)(e)),
        };
        let reader = BufReader::new(MultiGzDecoder::new(f));
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                break;
            };
            let Some(at) = value["at"].as_str().and_then(Timestamp::parse_rfc3339) else {
                continue;
            };
            out.push(HistoryRecord {
                at,
                sections: value["sections"].clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aav::{AssetKind, SectionUpdate, Writer, WriterOptions};

    #[test]
    fn history_records_every_write_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::new(
            dir.path(),
            WriterOptions {
                history: true,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        for i in 0..50 {
            let mut t = Table::new();
            t.insert("cpu_percent".into(), (i as f64).into());
            w.update(&SectionUpdate::new("h", AssetKind::Host, "h").section("compute", t))
                .unwrap();
        }
        let records = read_history(dir.path(), "h").unwrap();
        assert_eq!(records.len(), 50);
        assert_eq!(records[49].sections["compute"]["cpu_percent"], 49.0);
    }
}
