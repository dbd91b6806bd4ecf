//! Signed checkpoints: the C2SP `tlog-checkpoint` body in a C2SP `signed-note`, signed with Ed25519, plus the
//! signing key file and the verifier key text.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{AuditError, CheckpointError};
use crate::merkle::Hash;

/// The signed-note signature type byte for Ed25519.
const ED25519: u8 = 0x01;

/// Prefix of the extension line that chains a checkpoint to the previous one.
pub(crate) const PREV_PREFIX: &str = "prev ";

/// A signed tree head of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (also the signing key's name).
    pub origin: String,
    /// Number of entries covered.
    pub tree_size: u64,
    /// Merkle root of the first `tree_size` entries.
    pub root: Hash,
    /// SHA-256 of the previous checkpoint's complete signed note; `None` for the log's first checkpoint.
    pub prev: Option<Hash>,
    /// The complete signed note text, as stored and served.
    pub note: String,
}

impl Checkpoint {
    /// SHA-256 of the complete signed note: what the next checkpoint's `prev` line carries.
    pub fn note_hash(&self) -> Hash {
        Sha256::digest(self.note.as_bytes()).into()
    }
}

/// The log's Ed25519 signing key and its signed-note name.
pub(crate) struct Signer {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the key at `path`, or creates it (mode 0600) when `create` is set and the file does not exist.
    pub(crate) fn load_or_create(
        path: &Path,
        name: &str,
        create: bool,
    ) -> Result<Self, AuditError> {
        let key_err = |reason: String| AuditError::Key {
            path: path.to_owned(),
            reason,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path).map_err(|e| AuditError::io(path, e))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(key_err(format!("file mode is {:o}; it must not be readable by others (chmod 600)", mode & 0o777)));
                }
                Self::parse(text.trim_end(), name).map_err(key_err)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| key_err(format!("no randomness: {e}")))?;
                let signer = Self::from_seed(name, &seed);
                seed.fill(0);
                signer.write(path)?;
                Ok(signer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(key_err(
                "file is missing but the log already exists; restore the key (a new key would break verification)".into(),
            )),
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Self {
            name: name.to_owned(),
            key,
            key_id,
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>` (the Go `note` signer key format).
    fn parse(text: &str, expected_name: &str) -> Result<Self, String> {
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id_hex), Some(b64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("not a `PRIVATE+KEY+name+id+key` signer key".into());
        };
        if name != expected_name {
            return Err(format!(
                "key is for origin `{name}`, the log's origin is `{expected_name}`"
            ));
        }
        let raw = B64.decode(b64).map_err(|e| format!("bad base64: {e}"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ED25519, rest)) => rest
                .try_into()
                .map_err(|_| "key is not 32 bytes".to_string())?,
            _ => return Err("not an Ed25519 key".into()),
        };
        let signer = Self::from_seed(name, &seed);
        if id_hex != hex::encode(signer.key_id) {
            return Err("key id does not match the key".into());
        }
        Ok(signer)
    }

    fn write(&self, path: &Path) -> Result<(), AuditError> {
        let io = |e| AuditError::io(path, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
        }
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        let text = format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.key_id),
            B64.encode(&raw)
        );
        raw.fill(0);
        let tmp = path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        crate::store::sync_parent(path)
    }

    /// The verifier key text: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub(crate) fn verifier_key(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }

    /// Signs a checkpoint for `tree_size` entries with `root`, chained to the previous checkpoint note.
    pub(crate) fn sign(&self, tree_size: u64, root: &Hash, prev: Option<Hash>) -> Checkpoint {
        let mut text = format!("{}\n{}\n{}\n", self.name, tree_size, B64.encode(root));
        if let Some(p) = prev {
            text.push_str(PREV_PREFIX);
            text.push_str(&B64.encode(p));
            text.push('\n');
        }
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&sig.to_bytes());
        let note = format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(raw));
        Checkpoint {
            origin: self.name.clone(),
            tree_size,
            root: *root,
            prev,
            note,
        }
    }
}

/// key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A parsed verifier key.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub(crate) fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::VerifierKey(m.to_owned());
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `name+keyid+key`"));
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(bad("empty name or name with spaces"));
        }
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ED25519, rest)) => rest.try_into().map_err(|_| bad("key is not 32 bytes"))?,
            _ => return Err(bad("not an Ed25519 key")),
        };
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 point"))?;
        let key_id = key_id(name, &public);
        if id_hex.len() != 8 || id_hex != hex::encode(key_id) {
            return Err(bad("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Checks the note's signature from this key and parses the checkpoint body.
    pub(crate) fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |m: String| CheckpointError::Malformed(m);
        if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
            return Err(bad("control characters in note".into()));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures".into()))?;
        let text = &note[..=split];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') || sigs.len() < 2 {
            return Err(bad("signature block must end with a newline".into()));
        }
        let mut verified = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad(format!("bad signature line `{line}`")))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad(format!("bad signature line `{line}`")))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not base64".into()))?;
            if raw.len() < 4 {
                return Err(bad("signature too short".into()));
            }
            if name != self.name || raw[..4] != self.key_id {
                continue; // Unknown keys are ignored, as the signed-note spec requires.
            }
            let sig = Signature::from_slice(&raw[4..])
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if !verified {
            return Err(CheckpointError::NoSignature(self.name.clone()));
        }
        parse_body(text, note)
    }
}

fn parse_body(text: &str, note: &str) -> Result<Checkpoint, CheckpointError> {
    let bad = |m: &str| CheckpointError::Malformed(m.to_owned());
    let mut lines = text[..text.len() - 1].split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("missing origin line"))?;
    let size_line = lines.next().ok_or_else(|| bad("missing tree size line"))?;
    if size_line.is_empty()
        || !size_line.bytes().all(|b| b.is_ascii_digit())
        || (size_line.len() > 1 && size_line.starts_with('0'))
    {
        return Err(bad(
            "tree size is not a decimal number without leading zeros",
        ));
    }
    let tree_size: u64 = size_line
        .parse()
        .map_err(|_| bad("tree size out of range"))?;
    let root_line = lines.next().ok_or_else(|| bad("missing root hash line"))?;
    let root: Hash = B64
        .decode(root_line)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
    let mut prev = None;
    for ext in lines {
        if ext.is_empty() {
            return Err(bad("empty extension line"));
        }
        if let Some(p) = ext.strip_prefix(PREV_PREFIX) {
            if prev.is_some() {
                return Err(bad("two prev lines"));
            }
            prev = Some(
                B64.decode(p)
                    .ok()
                    .and_then(|r| <Hash>::try_from(r).ok())
                    .ok_or_else(|| bad("prev hash is not 32 bytes of base64"))?,
            );
        }
    }
    Ok(Checkpoint {
        origin: origin.to_owned(),
        tree_size,
        root,
        prev,
        note: note.to_owned(),
    })
}

/// Verifies a checkpoint note against a verifier key (`<name>+<hex key id>+<base64(0x01 ‖ public key)>`) and
/// returns its parsed contents. Signatures from other keys are ignored, as the signed-note spec requires.
pub fn verify_checkpoint(note: &str, verifier_key: &str) -> Result<Checkpoint, CheckpointError> {
    Verifier::parse(verifier_key)?.verify(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_notes_verify_and_parse_back() {
        let signer = Signer::from_seed("aura.local/audit", &[7u8; 32]);
        let cp = signer.sign(3, &[1u8; 32], Some([2u8; 32]));
        let vkey = signer.verifier_key();
        assert!(vkey.starts_with("aura.local/audit+"));
        let parsed = verify_checkpoint(&cp.note, &vkey).unwrap();
        assert_eq!(parsed, cp);
        let lines: Vec<&str> = cp.note.lines().collect();
        assert_eq!(lines[0], "aura.local/audit");
        assert_eq!(lines[1], "3");
        assert_eq!(lines[2], B64.encode([1u8; 32]));
        assert_eq!(lines[3], format!("prev {}", B64.encode([2u8; 32])));
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\u{2014} aura.local/audit "));
    }

    #[test]
    fn tampered_notes_and_foreign_keys_are_rejected() {
        let signer = Signer::from_seed("aura.local/audit", &[7u8; 32]);
        let cp = signer.sign(3, &[1u8; 32], None);
        let vkey = signer.verifier_key();
        let tampered = cp.note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(
            verify_checkpoint(&tampered, &vkey),
            Err(CheckpointError::BadSignature("aura.local/audit".into()))
        );
        let other = Signer::from_seed("aura.local/audit", &[8u8; 32]).verifier_key();
        assert!(matches!(
            verify_checkpoint(&cp.note, &other),
            Err(CheckpointError::NoSignature(_))
        ));
        assert!(verify_checkpoint(&cp.note, "garbage").is_err());
    }

    #[test]
    fn key_files_round_trip_and_refuse_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.ed25519");
        let a = Signer::load_or_create(&path, "o.example/log", true).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Signer::load_or_create(&path, "o.example/log", false).unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        assert!(Signer::load_or_create(&path, "other/log", false).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Signer::load_or_create(&path, "o.example/log", false).is_err());
    }
}
/// The worked example of `docs/audit-format.md`: if this test changes, the document must change with it.
#[cfg(test)]
mod worked_example {
    use super::*;
    use crate::entry::*;
    use crate::merkle::*;

    #[test]
    fn the_documented_example_holds() {
        let mut e = AuditEntry::new(
            aura_core::Timestamp::from_millis(1_795_292_371_042),
            Actor {
                kind: ActorKind::Agent,
                id: "planner".into(),
                ip: None,
            },
            Resource {
                kind: "model".into(),
                path: "gpt-4o".into(),
            },
            "kernel.decide",
            "allowed",
            RiskLevel::Low,
        );
        e.agent = Some(aura_core::AgentName::new("planner").unwrap());
        e.verdict = Some(aura_core::Verdict::Allow);
        e.rules = vec!["llm-default".into()];
        let b0 = canonical_bytes(0, &e).unwrap();
        let mut e1 = e.clone();
        e1.outcome = "denied".into();
        e1.verdict = Some(aura_core::Verdict::Deny);
        e1.rules = vec!["no-prod-writes".into()];
        let b1 = canonical_bytes(1, &e1).unwrap();
        assert_eq!(
            String::from_utf8(b0.clone()).unwrap(),
            r#"{"action":"kernel.decide","actor":{"id":"planner","type":"agent"},"agent":"planner","details":{},"outcome":"allowed","resource":{"path":"gpt-4o","type":"model"},"risk":"low","rules":["llm-default"],"seq":0,"time":1795292371042,"v":1,"verdict":"allow"}"#
        );
        let (l0, l1) = (leaf_hash(&b0), leaf_hash(&b1));
        let root = node_hash(&l0, &l1);
        assert_eq!(
            hex::encode(l0),
            "b48a6f8ef96ce902970fba2854459a9c2a49d0713916f67f0abe870ae242c456"
        );
        assert_eq!(
            hex::encode(l1),
            "c479b48495822175dcc5f954bdd8d83a299d5d545d233b4913667e21e6d87dfe"
        );
        assert_eq!(
            hex::encode(root),
            "a7e46fd547b99619ff087951567bc34dd4c3ab8da5ed8aae0ee2298788b44aee"
        );
        let mut frame = Vec::new();
        crate::record::push_frame(&mut frame, 0, &l0, &b0);
        assert_eq!(
            hex::encode(&frame[..20]),
            "fb0000000000000000000000b48a6f8ef96ce902"
        );
        let signer = Signer::from_seed("aura.local/audit", &[7u8; 32]);
        let vkey = signer.verifier_key();
        assert_eq!(
            vkey,
            "aura.local/audit+8db5c790+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
        );
        let cp0 = signer.sign(1, &l0, None);
        let cp1 = signer.sign(2, &root, Some(cp0.note_hash()));
        assert_eq!(
            hex::encode(cp0.note_hash()),
            "004933aef48a191260ae7709fb7fd0721f27d15d48dcb4990280697f02a23041"
        );
        assert_eq!(
            cp1.note,
            "aura.local/audit\n2\np+Rv1Ue5lhn/CHlRVnvDTdTDq42l7YquDuIph4i0Su4=\nprev AEkzrvSKGRJgrncJ+3/Qch8n0V1I3LSZAoBpfwKiMEE=\n\n\u{2014} aura.local/audit jbXHkMnjL8+eDAhVXE+5/R1DnEzYGHmv1H/V6rHR5k4NWojnt6pxkJvtRSNQhCG7+4Uf3no5Y7c/SNt/H9g5vuaKugo=\n"
        );
        assert_eq!(
            verify_checkpoint(&cp1.note, &vkey).unwrap().prev,
            Some(cp0.note_hash())
        );
        let proof = InclusionProof {
            leaf_index: 1,
            tree_size: 2,
            path: vec![l0],
        };
        assert_eq!(verify_inclusion(&l1, &proof, &root), Ok(()));
    }
}
