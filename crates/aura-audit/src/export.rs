//! Export of the audit log to S3-compatible object storage (feature `s3`): every sealed segment not yet exported,
//! the checkpoints that cover the exported entries, and the verifier key, listed with sizes and SHA-256 in
//! `<prefix>/manifest.json`. Idempotent; never overwrites an exported object (a different object already at a key
//! is an error); credentials come from the standard AWS environment variables and are never logged.
//!
//! Optional S3 Object Lock: with a [`Retention`], each object is written with `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date` (object_store cannot set those headers, so these PUTs are signed here with
//! its SigV4 signer and sent with its HTTP client). The bucket must have Object Lock enabled.

use std::path::Path;
use std::time::Duration;

use aura_core::Timestamp;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStoreExt, PutPayload,
    client::{HttpConnector, HttpRequestBody, ReqwestConnector},
};
use sha2::{Digest, Sha256};

use crate::error::AuditError;
use crate::retention::{
    self, LOCAL_MANIFEST_FILE, Manifest, ManifestObject, checkpoint_sizes, list_segments,
    read_sealed, segment_key, sha256_hex,
};

/// Where and how to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    /// `s3://bucket/prefix` (the prefix may be empty).
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); `AWS_ENDPOINT_URL` otherwise; AWS when neither.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// S3 Object Lock retention for every uploaded object; `None` leaves it to the bucket's default.
    pub retention: Option<Retention>,
    /// Credentials; `None` reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub credentials: Option<S3Credentials>,
}

/// Explicit S3 credentials. `Debug` never shows the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// S3 Object Lock retention set on each uploaded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` (nobody can shorten it) or `GOVERNANCE` (users with a special permission can).
    pub mode: LockMode,
    /// Objects are retained until upload time plus this.
    pub period: Duration,
}

/// S3 Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// No one, including the root account, can delete or shorten the retention before it ends.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    fn header(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Keys (relative to the prefix) uploaded by this run, manifest excluded.
    pub uploaded: Vec<String>,
    /// Bytes uploaded by this run, manifest excluded.
    pub uploaded_bytes: u64,
    /// Objects already exported and checked unchanged.
    pub already_exported: usize,
    /// Entries covered by the exported segments.
    pub exported_entries: u64,
    /// Full key of the manifest.
    pub manifest_key: String,
}

/// An export failure.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target is unusable.
    #[error("invalid export target: {0}")]
    Target(String),
    /// Reading the local log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The object store refused or failed a request.
    #[error("object store error on `{key}`: {reason}")]
    Store {
        /// The object key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// An exported object differs from what was exported (or from the local file): evidence is never overwritten.
    #[error("`{key}` differs from the exported copy: {reason}")]
    Conflict {
        /// The object key.
        key: String,
        /// What differs.
        reason: String,
    },
}

/// Exports the log in `dir` to `target` (see the module docs). `now` dates Object Lock retention.
pub async fn export(
    dir: &Path,
    target: &ExportTarget,
    now: Timestamp,
) -> Result<ExportReport, ExportError> {
    let remote = Remote::new(target)?;
    let mut report = ExportReport {
        manifest_key: remote.key("manifest.json"),
        ..ExportReport::default()
    };
    let vkey_path = dir.join("verifier.key");
    let vkey_bytes = std::fs::read(&vkey_path).map_err(|e| AuditError::io(&vkey_path, e))?;
    let vkey = String::from_utf8_lossy(&vkey_bytes).trim().to_owned();

    let mut manifest = match remote.get("manifest.json").await? {
        Some(bytes) => {
            serde_json::from_slice::<Manifest>(&bytes).map_err(|e| ExportError::Conflict {
                key: report.manifest_key.clone(),
                reason: format!("unreadable manifest: {e}"),
            })?
        }
        None => Manifest {
            version: 1,
            verifier_key: vkey.clone(),
            ..Manifest::default()
        },
    };
    if manifest.verifier_key != vkey {
        return Err(ExportError::Conflict {
            key: report.manifest_key,
            reason: "the exported log has a different verifier key".into(),
        });
    }

    // Everything already exported must still be there, unchanged.
    for obj in &manifest.objects {
        remote.check_unchanged(obj).await?;
        report.already_exported += 1;
    }

    let retired = retention::load_retired(dir)?;
    let segs = list_segments(dir)?;
    let sealed = segs.len().saturating_sub(1);
    let mut exported_end = retired.as_ref().map_or(0, |r| r.size);
    for (first, path) in segs.iter().take(sealed) {
        if retired
            .as_ref()
            .is_some_and(|r| r.segments.iter().any(|s| s.first == *first))
        {
            continue;
        }
        let seg = read_sealed(path, *first)?;
        let entries = seg.leaves.len() as u64;
        let key = segment_key(*first);
        let hash = sha256_hex(&seg.bytes);
        exported_end = first + entries;
        if let Some(obj) = manifest.get(&key) {
            if obj.sha256 != hash {
                return Err(ExportError::Conflict {
                    key: remote.key(&key),
                    reason: format!(
                        "local segment `{}` has SHA-256 {hash}, exported {}",
                        path.display(),
                        obj.sha256
                    ),
                });
            }
            continue;
        }
        let mut obj = remote.upload(&key, seg.bytes, now).await?;
        obj.first = Some(*first);
        obj.entries = Some(entries);
        report.uploaded_bytes += obj.bytes;
        report.uploaded.push(key);
        manifest.objects.push(obj);
    }
    report.exported_entries = exported_end;

    // The checkpoints covering the exported entries: a prefix of the (append-only) checkpoint file.
    let cut = checkpoint_sizes(dir)?
        .iter()
        .enumerate()
        .filter(|(_, (size, _))| *size <= exported_end)
        .map(|(i, (_, end))| (i + 1, *end))
        .next_back();
    if let Some((count, end)) = cut {
        let key = format!("checkpoints/{count:020}");
        if manifest.get(&key).is_none() {
            let cp_path = dir.join("checkpoints");
            let mut bytes = std::fs::read(&cp_path).map_err(|e| AuditError::io(&cp_path, e))?;
            bytes.truncate(usize::try_from(end).unwrap_or(usize::MAX));
            let obj = remote.upload(&key, bytes, now).await?;
            report.uploaded_bytes += obj.bytes;
            report.uploaded.push(key.clone());
            manifest.objects.push(obj);
        }
        manifest.latest_checkpoints = Some(key);
    }
    if manifest.get("verifier.key").is_none() {
        let obj = remote.upload("verifier.key", vkey_bytes, now).await?;
        report.uploaded_bytes += obj.bytes;
        report.uploaded.push("verifier.key".into());
        manifest.objects.push(obj);
    }

    // The manifest is the one object that is replaced (with Object Lock and versioning, old versions stay).
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| AuditError::Encode(e.to_string()))?;
    remote.put_plain("manifest.json", body).await?;
    retention::write_json(&dir.join(LOCAL_MANIFEST_FILE), &manifest)?;
    tracing::info!(
        target = %target.url,
        uploaded = report.uploaded.len(),
        bytes = report.uploaded_bytes,
        "audit export finished"
    );
    Ok(report)
}

/// The bucket, prefix and clients.
struct Remote {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    region: String,
    endpoint: String,
    allow_http: bool,
    retention: Option<Retention>,
    credential: Option<AwsCredential>,
}

impl Remote {
    fn new(target: &ExportTarget) -> Result<Self, ExportError> {
        let rest = target
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| ExportError::Target(format!("`{}` is not an s3:// URL", target.url)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_owned();
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(ExportError::Target(format!("bad bucket name `{bucket}`")));
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            || prefix.split('/').any(|p| p == "." || p == "..")
        {
            return Err(ExportError::Target(format!(
                "prefix `{prefix}` may only hold letters, digits, `-`, `_`, `.` and `/`"
            )));
        }
        // ring is the TLS provider everywhere in Aura; a no-op when the binary installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let endpoint = target
            .endpoint
            .clone()
            .or(env_endpoint)
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", target.region));
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let credential = match &target.credentials {
            Some(c) => Some(AwsCredential {
                key_id: c.access_key_id.clone(),
                secret_key: c.secret_access_key.clone(),
                token: c.session_token.clone(),
            }),
            None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(key_id), Some(secret_key)) => Some(AwsCredential {
                    key_id,
                    secret_key,
                    token: env("AWS_SESSION_TOKEN"),
                }),
                _ => None,
            },
        };
        let mut builder = AmazonS3Builder::from_env();
        if let Some(c) = &credential {
            builder = builder
                .with_access_key_id(&c.key_id)
                .with_secret_access_key(&c.secret_key);
            if let Some(t) = &c.token {
                builder = builder.with_token(t);
            }
        }
        let store = builder
            .with_bucket_name(bucket)
            .with_region(&target.region)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(target.allow_http)
            .build()
            .map_err(|e| ExportError::Target(e.to_string()))?;
        Ok(Self {
            store,
            bucket: bucket.to_owned(),
            prefix,
            region: target.region.clone(),
            endpoint,
            allow_http: target.allow_http,
            retention: target.retention,
            credential,
        })
    }

    /// The full object key of `rel`.
    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn store_err(&self, rel: &str, e: impl std::fmt::Display) -> ExportError {
        ExportError::Store {
            key: self.key(rel),
            reason: e.to_string(),
        }
    }

    /// The object's content, `None` when absent.
    async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, ExportError> {
        match self.store.get(&ObjectPath::from(self.key(rel))).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| self.store_err(rel, e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_err(rel, e)),
        }
    }

    /// Checks that an exported object is still there with the same size and ETag (or, without an ETag, hash).
    async fn check_unchanged(&self, obj: &ManifestObject) -> Result<(), ExportError> {
        let conflict = |reason: String| ExportError::Conflict {
            key: self.key(&obj.key),
            reason,
        };
        let meta = match self.store.head(&ObjectPath::from(self.key(&obj.key))).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(conflict("the exported object is missing".into()));
            }
            Err(e) => return Err(self.store_err(&obj.key, e)),
        };
        if meta.size != obj.bytes {
            return Err(conflict(format!(
                "size {} instead of {}",
                meta.size, obj.bytes
            )));
        }
        match (&obj.e_tag, &meta.e_tag) {
            (Some(a), Some(b)) if a == b => Ok(()),
            (Some(_), Some(_)) => Err(conflict("its ETag changed: it was replaced".into())),
            _ => {
                let bytes = self.get(&obj.key).await?.unwrap_or_default();
                if sha256_hex(&bytes) == obj.sha256 {
                    Ok(())
                } else {
                    Err(conflict("its content changed".into()))
                }
            }
        }
    }

    /// Uploads an immutable object. An object already at the key is accepted only with the same content (a
    /// re-run after an interrupted export), otherwise it is a conflict.
    async fn upload(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<ManifestObject, ExportError> {
        let sha = Sha256::digest(&bytes);
        let sha256 = hex::encode(sha);
        let size = bytes.len() as u64;
        if let Some(existing) = self.get(rel).await? {
            if sha256_hex(&existing) != sha256 {
                return Err(ExportError::Conflict {
                    key: self.key(rel),
                    reason: "a different object is already stored there".into(),
                });
            }
            let e_tag = self
                .store
                .head(&ObjectPath::from(self.key(rel)))
                .await
                .map_err(|e| self.store_err(rel, e))?
                .e_tag;
            return Ok(ManifestObject {
                key: rel.to_owned(),
                bytes: size,
                sha256,
                e_tag,
                first: None,
                entries: None,
                retain_until: None,
            });
        }
        let (e_tag, retain_until) = match self.retention {
            None => (self.put_plain(rel, bytes).await?, None),
            Some(r) => {
                let ms = i64::try_from(r.period.as_millis()).unwrap_or(i64::MAX);
                let until = Timestamp::from_millis(now.as_millis().saturating_add(ms));
                let e_tag = self.put_locked(rel, bytes, &sha, r.mode, until).await?;
                (e_tag, Some(until.to_rfc3339()))
            }
        };
        tracing::debug!(key = %self.key(rel), bytes = size, "audit export: uploaded");
        Ok(ManifestObject {
            key: rel.to_owned(),
            bytes: size,
            sha256,
            e_tag,
            first: None,
            entries: None,
            retain_until,
        })
    }

    /// A plain PUT through object_store; returns the ETag.
    async fn put_plain(&self, rel: &str, bytes: Vec<u8>) -> Result<Option<String>, ExportError> {
        self.store
            .put(&ObjectPath::from(self.key(rel)), PutPayload::from(bytes))
            .await
            .map(|r| r.e_tag)
            .map_err(|e| self.store_err(rel, e))
    }

    /// A PUT with Object Lock headers, signed (every header included) with object_store's SigV4 signer.
    async fn put_locked(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        sha: &[u8],
        mode: LockMode,
        until: Timestamp,
    ) -> Result<Option<String>, ExportError> {
        use base64::Engine as _;
        let Some(credential) = &self.credential else {
            return Err(ExportError::Target(
                "Object Lock uploads need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        let url = format!("{}/{}/{}", self.endpoint, self.bucket, self.key(rel));
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha);
        let mut req = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header("content-length", bytes.len())
            .header("x-amz-sdk-checksum-algorithm", "SHA256")
            .header("x-amz-checksum-sha256", checksum)
            .header("x-amz-object-lock-mode", mode.header())
            .header("x-amz-object-lock-retain-until-date", until.to_rfc3339())
            .body(HttpRequestBody::from(bytes))
            .map_err(|e| self.store_err(rel, e))?;
        AwsAuthorizer::new(credential, "s3", &self.region)
            .try_authorize(&mut req, Some(sha))
            .map_err(|e| self.store_err(rel, e))?;
        let client = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(self.allow_http))
            .map_err(|e| self.store_err(rel, e))?;
        let resp = client
            .execute(req)
            .await
            .map_err(|e| self.store_err(rel, e))?;
        let status = resp.status();
        let e_tag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            let body = resp.into_body().bytes().await.unwrap_or_default();
            return Err(self.store_err(
                rel,
                format!(
                    "PUT with Object Lock failed with {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ),
            ));
        }
        Ok(e_tag)
    }
}
