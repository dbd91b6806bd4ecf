//! Record framing shared by segment files and the checkpoint file, and the scan that tells a torn tail from
//! corruption.
//!
//! A file is a 16-byte header (`magic[8] ‖ first sequence number u64 LE`) followed by records
//! `len u32 LE ‖ seq u64 LE ‖ check[8] ‖ payload[len]`, where `check` is the first 8 bytes of SHA-256(0x00 ‖ payload)
//! (for segments, exactly the first 8 bytes of the entry's Merkle leaf hash).

use crate::merkle::{Hash, leaf_hash};

/// Magic of segment files.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"AURASEG1";
/// Magic of the checkpoint file.
pub(crate) const CHECKPOINT_MAGIC: &[u8; 8] = b"AURACKP1";
/// Length of the file header.
pub(crate) const FILE_HEADER_LEN: usize = 16;
/// Length of a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 20;
/// Largest payload a record may carry.
pub(crate) const MAX_PAYLOAD: usize = crate::entry::MAX_ENTRY_BYTES;

/// The file header for a file whose first record has sequence number `first`.
pub(crate) fn file_header(magic: &[u8; 8], first: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&first.to_le_bytes());
    h
}

/// Parses a file header, returning the first sequence number.
pub(crate) fn parse_file_header(buf: &[u8], magic: &[u8; 8]) -> Option<u64> {
    if buf.len() < FILE_HEADER_LEN || &buf[..8] != magic {
        return None;
    }
    Some(u64::from_le_bytes(buf[8..16].try_into().ok()?))
}

/// Appends one framed record. `leaf` must be `leaf_hash(payload)`.
pub(crate) fn push_frame(out: &mut Vec<u8>, seq: u64, leaf: &Hash, payload: &[u8]) {
    // INVARIANT: payloads are limited to MAX_PAYLOAD (1 MiB) by the encoder, so the length fits in u32.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; RECORD_HEADER_LEN];
    write_header(&mut header, len, seq, leaf);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Writes a record header (`len ‖ seq ‖ check`) into the first [`RECORD_HEADER_LEN`] bytes of `out`.
pub(crate) fn write_header(out: &mut [u8], len: u32, seq: u64, leaf: &Hash) {
    if let Some(h) = out.get_mut(..RECORD_HEADER_LEN) {
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..12].copy_from_slice(&seq.to_le_bytes());
        h[12..20].copy_from_slice(&leaf[..8]);
    }
}

/// A valid record found by [`walk`].
pub(crate) struct Rec<'a> {
    /// Its sequence number.
    pub(crate) seq: u64,
    /// Byte offset of the record header in the file.
    pub(crate) offset: u64,
    /// The payload.
    pub(crate) payload: &'a [u8],
    /// SHA-256(0x00 ‖ payload).
    pub(crate) leaf: Hash,
}

/// How a walk over a file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte belongs to a valid record.
    Clean,
    /// An incomplete or damaged last write, with nothing valid after it: safe to cut at `offset`.
    Torn {
        /// Where the torn part starts.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// Damage followed by valid data, or a valid record out of sequence: not a torn write.
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// What was found.
        reason: String,
    },
}

/// The result of a walk.
pub(crate) struct Walk {
    /// Number of valid records.
    pub(crate) count: u64,
    /// Offset just past the last valid record.
    pub(crate) valid_end: u64,
    /// How the walk ended.
    pub(crate) end: End,
}

/// Walks the records of a whole file `buf` (header included), expecting sequence numbers `first, first+1, ...`.
/// `f` sees every valid record in order and may stop the walk with an error.
pub(crate) fn walk<E>(
    buf: &[u8],
    first: u64,
    mut f: impl FnMut(Rec<'_>) -> Result<(), E>,
) -> Result<Walk, E> {
    let mut pos = FILE_HEADER_LEN.min(buf.len());
    let mut expected = first;
    while pos < buf.len() {
        match read_at(buf, pos, expected) {
            Ok((rec, next)) => {
                f(rec)?;
                pos = next;
                expected += 1;
            }
            Err(Bad::OutOfOrder(reason)) => {
                return Ok(Walk {
                    count: expected - first,
                    valid_end: pos as u64,
                    end: End::Corrupt {
                        offset: pos as u64,
                        reason,
                    },
                });
            }
            Err(Bad::Invalid(reason)) => {
                let end = if let Some(q) = valid_record_after(buf, pos, expected) {
                    End::Corrupt {
                        offset: pos as u64,
                        reason: format!("{reason}, yet a valid record follows at byte {q}"),
                    }
                } else {
                    End::Torn {
                        offset: pos as u64,
                        reason,
                    }
                };
                return Ok(Walk {
                    count: expected - first,
                    valid_end: pos as u64,
                    end,
                });
            }
        }
    }
    Ok(Walk {
        count: expected - first,
        valid_end: pos as u64,
        end: End::Clean,
    })
}

enum Bad {
    /// The bytes do not form a valid record.
    Invalid(String),
    /// A valid record with the wrong sequence number.
    OutOfOrder(String),
}

fn read_at(buf: &[u8], pos: usize, expected: u64) -> Result<(Rec<'_>, usize), Bad> {
    let rest = &buf[pos..];
    if rest.len() < RECORD_HEADER_LEN {
        return Err(Bad::Invalid("partial record header".into()));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&rest[4..12]);
    let seq = u64::from_le_bytes(seq_bytes);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(Bad::Invalid(format!("invalid record length {len}")));
    }
    if rest.len() < RECORD_HEADER_LEN + len {
        return Err(Bad::Invalid("record runs past the end of the file".into()));
    }
    let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    let leaf = leaf_hash(payload);
    if leaf[..8] != rest[12..20] {
        return Err(Bad::Invalid(format!(
            "checksum mismatch in record {expected}"
        )));
    }
    if seq != expected {
        return Err(Bad::OutOfOrder(format!(
            "record number {seq} found where {expected} was expected"
        )));
    }
    Ok((
        Rec {
            seq,
            offset: pos as u64,
            payload,
            leaf,
        },
        pos + RECORD_HEADER_LEN + len,
    ))
}

/// Looks for any valid record starting after `pos` with a plausible sequence number.
fn valid_record_after(buf: &[u8], pos: usize, expected: u64) -> Option<usize> {
    let max_records = (buf.len() - pos) as u64 / RECORD_HEADER_LEN as u64 + 1;
    (pos + 1..buf.len().saturating_sub(RECORD_HEADER_LEN - 1)).find(|&q| {
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&buf[q + 4..q + 12]);
        let seq = u64::from_le_bytes(seq_bytes);
        seq >= expected && seq - expected <= max_records && read_at(buf, q, seq).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u64) -> Vec<u8> {
        let mut buf = file_header(SEGMENT_MAGIC, 10).to_vec();
        for seq in 10..10 + n {
            let payload = format!("{{\"n\":{seq}}}");
            push_frame(
                &mut buf,
                seq,
                &leaf_hash(payload.as_bytes()),
                payload.as_bytes(),
            );
        }
        buf
    }

    fn walk_all(buf: &[u8]) -> Walk {
        walk::<()>(buf, 10, |_| Ok(())).unwrap()
    }

    #[test]
    fn clean_files_walk_to_the_end() {
        let buf = file(5);
        let w = walk_all(&buf);
        assert_eq!(
            (w.count, w.valid_end, w.end),
            (5, buf.len() as u64, End::Clean)
        );
    }

    #[test]
    fn a_cut_anywhere_in_the_last_record_is_a_torn_tail() {
        let full = file(3);
        let last_start = walk_all(&file(2)).valid_end as usize;
        for cut in last_start + 1..full.len() {
            let w = walk_all(&full[..cut]);
            assert_eq!(w.count, 2, "cut at {cut}");
            assert!(
                matches!(w.end, End::Torn { offset, .. } if offset == last_start as u64),
                "cut at {cut}"
            );
        }
        let mut zeroed = full.clone();
        zeroed.extend_from_slice(&[0u8; 100]);
        assert!(matches!(walk_all(&zeroed).end, End::Torn { .. }));
    }

    #[test]
    fn damage_before_valid_records_is_corruption() {
        let mut buf = file(4);
        buf[FILE_HEADER_LEN + RECORD_HEADER_LEN + 2] ^= 1;
        let w = walk_all(&buf);
        assert_eq!(w.count, 0);
        assert!(matches!(w.end, End::Corrupt { .. }), "{:?}", w.end);
    }
}
