//! Finding, reading and parsing `aura.yaml`, and resolving the relative paths inside it.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::de::IgnoredAny;

use crate::error::{self, ConfigError};
use crate::index::Index;
use crate::schema::{Config, StoreUrl};

/// The file read when no `--config` is given, relative to the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "aura.yaml";

/// Files larger than this are refused: a configuration is a few kilobytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A configuration and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The configuration, relative paths resolved against the file's directory.
    pub config: Config,
    /// The file read, or `None` when the built-in defaults are used.
    pub source: Option<PathBuf>,
}

/// Loads the configuration.
///
/// With `explicit` (from `--config` / `AURA_CONFIG`), reads that file, which must exist.
/// Otherwise reads `./aura.yaml` if it exists, else returns the built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (path, required) = match explicit {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG_FILE), false),
    };
    let text = match read(path) {
        Ok(text) => text,
        Err(err) if !required && err.kind() == io::ErrorKind::NotFound => {
            return Ok(Loaded {
                config: Config::default(),
                source: None,
            });
        }
        Err(err) => return Err(read_error(path, &err)),
    };
    let text = decode(&text, path)?;
    let config = parse_str(&text, path)?;
    Ok(Loaded {
        config,
        source: Some(path.to_path_buf()),
    })
}

/// Parses the text of a configuration file. `origin` names the file in errors, and relative
/// paths (`data_dir`, `policies.dir`, a `sqlite://` path) are resolved against its directory.
///
/// Empty text (or only comments) gives the defaults.
pub fn parse_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // Only YAML 1.2 booleans: `yes`, `on`, … stay strings, which `values::boolean` refuses.
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_nodes: 20_000,
            max_events: 100_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_documents: 2,
        },
    };
    // Check the syntax of the whole file first: deserialization stops at the first bad value,
    // which may be a half-parsed line whose real problem is further on.
    serde_saphyr::from_str_with_options::<IgnoredAny>(text, options.clone())
        .map_err(|err| error::from_yaml(&err, text, origin))?;
    let parsed: Option<Config> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|err| error::from_yaml(&err, text, origin))?;
    let mut config = parsed.unwrap_or_default();
    check_store(&config, text, origin)?;
    let base = origin.parent().unwrap_or(Path::new(""));
    config.data_dir = resolve(base, &config.data_dir);
    config.policies.dir = resolve(base, &config.policies.dir);
    if let Some(StoreUrl::Sqlite(path)) = &mut config.store.url {
        *path = resolve(base, path);
    }
    if let Some(path) = &mut config.discovery.kubernetes.kubeconfig {
        *path = resolve(base, path);
    }
    Ok(config)
}

/// Rules that involve more than one key.
fn check_store(config: &Config, text: &str, origin: &Path) -> Result<(), ConfigError> {
    let postgres = matches!(config.store.url, Some(StoreUrl::Postgres(_)));
    if config.store.schema.is_some() && !postgres {
        let index = Index::build(text);
        let at = index
            .value(&["store", "schema"])
            .map_or((1, 1), |node| (node.line, node.column));
        return Err(ConfigError::invalid(
            origin,
            at,
            "`store.schema` only applies to PostgreSQL, but `store.url` is not a postgres:// URL",
            "remove `store.schema`, or set `store.url` to a postgres:// URL",
        ));
    }
    Ok(())
}

/// `path` relative to `base` (the config file's directory); absolute paths are kept.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || base.as_os_str().is_empty() {
        return path.to_path_buf();
    }
    let rest: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if rest.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::from(io::ErrorKind::FileTooLarge));
    }
    Ok(bytes)
}

fn read_error(path: &Path, err: &io::Error) -> ConfigError {
    let (reason, hint) = match err.kind() {
        io::ErrorKind::NotFound => (
            "file not found".to_owned(),
            "check the path given with --config or AURA_CONFIG; `aura init` writes a starter aura.yaml",
        ),
        io::ErrorKind::PermissionDenied => (
            "permission denied".to_owned(),
            "make the file readable by the user running aura",
        ),
        io::ErrorKind::IsADirectory => (
            "it is a directory".to_owned(),
            "name the aura.yaml file itself, not its directory",
        ),
        io::ErrorKind::FileTooLarge => (
            "the file is larger than 1 MiB".to_owned(),
            "a configuration is a few kilobytes; check that the path names the right file",
        ),
        _ => (
            err.to_string().to_lowercase(),
            "check that the path names a readable file",
        ),
    };
    ConfigError::Read {
        path: path.to_path_buf(),
        reason,
        hint: hint.to_owned(),
    }
}

/// The file as text; invalid UTF-8 is reported at its position.
fn decode(bytes: &[u8], path: &Path) -> Result<String, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(err) => {
            let valid = String::from_utf8_lossy(&bytes[..err.valid_up_to()]);
            let line = valid.matches('\n').count() as u64 + 1;
            let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
            Err(ConfigError::invalid(
                path,
                (line, column),
                "the file is not valid UTF-8 text",
                "save the file with UTF-8 encoding",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_joins_relative_paths_only() {
        let base = Path::new("/etc/aura");
        assert_eq!(
            resolve(base, Path::new("./aura-data")),
            PathBuf::from("/etc/aura/aura-data")
        );
        assert_eq!(
            resolve(base, Path::new("data/x")),
            PathBuf::from("/etc/aura/data/x")
        );
        assert_eq!(
            resolve(base, Path::new("/var/aura")),
            PathBuf::from("/var/aura")
        );
        assert_eq!(resolve(base, Path::new(".")), PathBuf::from("/etc/aura"));
        assert_eq!(
            resolve(Path::new(""), Path::new("./aura-data")),
            PathBuf::from("./aura-data")
        );
    }
}
