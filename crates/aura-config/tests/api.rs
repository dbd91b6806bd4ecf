//! Behaviour of the public API: defaults, the starter file, loading, path resolution,
//! layering, redaction, serialization and the documentation's coverage of every key.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aura_config::{
    AuditConfig, AuditExportConfig, Config, ConfigError, EffectGate, GovernanceConfig, LedgerKind,
    LogFormat, Overrides, PoliciesConfig, STARTER_YAML, StoreUrl, load, parse_str,
};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

#[test]
fn defaults_are_the_documented_product_defaults() {
    let config = Config::default();
    assert_eq!(
        config.server.listen,
        "127.0.0.1:7470".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.shutdown_timeout_seconds, 10);
    assert_eq!(config.server.request_timeout_seconds, 30);
    assert_eq!(config.server.max_body_bytes, 2_097_152);
    assert_eq!(config.data_dir, PathBuf::from("./aura-data"));
    assert_eq!(config.store.url, None);
    assert_eq!(config.store.schema, None);
    assert_eq!(config.store.max_connections, 10);
    assert_eq!(config.store.connect_timeout_seconds, 5);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    assert_eq!(
        config.sqlite_path(),
        Some(PathBuf::from("./aura-data/aura.db"))
    );
    assert_eq!(
        config.policies,
        PoliciesConfig {
            dir: PathBuf::from("./policies"),
            watch: true,
            allow_widening: false,
        }
    );
    assert_eq!(
        config.audit,
        AuditConfig {
            checkpoint_interval_ms: 100,
            segment_bytes: 67_108_864,
            origin: "aura.local/audit".to_owned(),
            effect_gate: EffectGate::Written,
            export: None,
        }
    );
    assert_eq!(
        config.governance,
        GovernanceConfig {
            reservation_ttl_seconds: 300,
            ledger: LedgerKind::Store,
        }
    );
}

#[test]
fn starter_yaml_parses_to_the_defaults() {
    assert_eq!(
        parse_str(STARTER_YAML, Path::new("aura.yaml")).unwrap(),
        Config::default()
    );
    // Next to another directory, only the data and policy directories move.
    let elsewhere = parse_str(STARTER_YAML, Path::new("/etc/aura/aura.yaml")).unwrap();
    assert_eq!(elsewhere.data_dir, PathBuf::from("/etc/aura/aura-data"));
    assert_eq!(elsewhere.policies.dir, PathBuf::from("/etc/aura/policies"));
    assert_eq!(
        Config {
            data_dir: PathBuf::from("./aura-data"),
            policies: PoliciesConfig {
                dir: PathBuf::from("./policies"),
                ..elsewhere.policies.clone()
            },
            ..elsewhere
        },
        Config::default()
    );
}

#[test]
fn starter_yaml_comments_every_line_it_sets() {
    let lines: Vec<&str> = STARTER_YAML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let setting = line.trim_start();
        if setting.is_empty() || setting.starts_with('#') || setting.ends_with(':') {
            continue;
        }
        let previous = lines[..i].last().map(|l| l.trim_start()).unwrap_or("");
        assert!(
            previous.starts_with('#'),
            "starter line {} `{line}` has no comment above it",
            i + 1
        );
    }
}

#[test]
fn every_key_is_documented_and_in_the_starter_file() {
    let docs = fs::read_to_string(DOCS).unwrap();
    // `audit.export` is absent by default: document it from a config that sets every key.
    let mut config = Config::default();
    config.audit.export = Some(AuditExportConfig {
        url: "s3://bucket/prefix".to_owned(),
        endpoint: Some("http://127.0.0.1:9000".to_owned()),
        region: "us-east-1".to_owned(),
        allow_http: true,
        interval_seconds: 3600,
        retention_days: Some(1),
    });
    // The optional keys of `discovery` and `cache` (issue 6) are unset by default: set them too.
    config.discovery.docker_host = Some("tcp://127.0.0.1:2375".to_owned());
    config.discovery.libvirt_uri = Some("qemu:///system".to_owned());
    config.discovery.kubernetes.kubeconfig = Some(PathBuf::from("/etc/aura/kubeconfig"));
    config.discovery.kubernetes.context = Some("prod".to_owned());
    config.discovery.kubernetes.label_selector = Some("app=web".to_owned());
    config.cache.redis_url = Some("redis://127.0.0.1:6379/0".to_owned());
    config.cache.cold = Some(aura_config::ColdTierConfig {
        url: "s3://aura-history/prod".to_owned(),
        endpoint: Some("http://127.0.0.1:9000".to_owned()),
        region: "us-east-1".to_owned(),
        allow_http: true,
    });
    let keys = leaf_keys(&serde_saphyr::to_string(&config).unwrap());
    // 25 before the context plane, + 20 in `context` (issue 5), + 6 in `mesh` (issue 7), + 9 in `proxy`/`mcp`
    // (issue 9), + 20 in `catalog`/`discovery`/`cache` (issue 6); `gateway` (issue 8) is optional and absent from
    // the defaults.
    assert_eq!(keys.len(), 81, "{keys:?}");
    for key in &keys {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/configuration.md does not document `{key}`"
        );
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            STARTER_YAML.contains(&format!("{leaf}:")),
            "STARTER_YAML lacks `{key}`"
        );
    }
}

#[test]
fn documented_full_example_loads() {
    let docs = fs::read_to_string(DOCS).unwrap();
    let mut blocks = docs
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap());
    let example = blocks
        .find(|block| block.contains("max_connections"))
        .expect("a full yaml example in the docs");
    let config = parse_str(example, Path::new("aura.yaml")).unwrap();
    assert_ne!(
        config,
        Config::default(),
        "the full example should show non-default values"
    );
}

#[test]
fn relative_paths_resolve_against_the_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aura.yaml");
    fs::write(
        &file,
        "data_dir: ./state\nstore:\n  url: sqlite://db/aura.db\npolicies:\n  dir: rules\n",
    )
    .unwrap();
    let loaded = load(Some(&file)).unwrap();
    assert_eq!(loaded.source.as_deref(), Some(file.as_path()));
    assert_eq!(loaded.config.data_dir, dir.path().join("state"));
    assert_eq!(loaded.config.policies.dir, dir.path().join("rules"));
    assert_eq!(
        loaded.config.store.url,
        Some(StoreUrl::Sqlite(dir.path().join("db/aura.db")))
    );

    fs::write(&file, "store:\n  url: sqlite:///var/lib/aura/aura.db\n").unwrap();
    let loaded = load(Some(&file)).unwrap();
    assert_eq!(
        loaded.config.data_dir,
        dir.path().join("aura-data"),
        "the default data_dir follows the file too"
    );
    assert_eq!(
        loaded.config.policies.dir,
        dir.path().join("policies"),
        "so does the default policies.dir"
    );
    assert_eq!(
        loaded.config.sqlite_path(),
        Some(PathBuf::from("/var/lib/aura/aura.db"))
    );

    fs::write(&file, "policies:\n  dir: /srv/policies\n").unwrap();
    let loaded = load(Some(&file)).unwrap();
    assert_eq!(loaded.config.policies.dir, PathBuf::from("/srv/policies"));
}

#[test]
fn sqlite_path_defaults_into_data_dir_and_postgres_has_none() {
    let config = parse_str("data_dir: /srv/aura\n", Path::new("aura.yaml")).unwrap();
    assert_eq!(
        config.sqlite_path(),
        Some(PathBuf::from("/srv/aura/aura.db"))
    );
    assert_eq!(
        config.effective_store_url(),
        StoreUrl::Sqlite(PathBuf::from("/srv/aura/aura.db"))
    );
    let pg = parse_str(
        "store:\n  url: postgres://aura@127.0.0.1/aura\n",
        Path::new("aura.yaml"),
    )
    .unwrap();
    assert_eq!(pg.sqlite_path(), None);
    assert_eq!(
        pg.effective_store_url(),
        StoreUrl::Postgres("postgres://aura@127.0.0.1/aura".to_owned())
    );
}

#[test]
fn overrides_replace_only_what_they_set() {
    let mut config = parse_str(
        "data_dir: /srv/aura\nlog:\n  level: debug\n",
        Path::new("aura.yaml"),
    )
    .unwrap();
    config.apply(Overrides::default());
    assert_eq!(config.data_dir, PathBuf::from("/srv/aura"));

    config.apply(Overrides {
        listen: Some("0.0.0.0:9000".parse().unwrap()),
        data_dir: Some(PathBuf::from("relative/dir")),
        log_format: Some(LogFormat::Json),
    });
    assert_eq!(
        config.server.listen,
        "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.data_dir,
        PathBuf::from("relative/dir"),
        "a flag's relative path stays as given"
    );
    assert_eq!(
        config.sqlite_path(),
        Some(PathBuf::from("relative/dir/aura.db"))
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "debug", "not overridden");
}

#[test]
fn redaction_masks_the_database_password() {
    let text = "store:\n  url: postgres://aura:s3cret@db.internal:5432/aura\n  schema: aura\n";
    let config = parse_str(text, Path::new("aura.yaml")).unwrap();
    let shown = config.redacted();
    assert_eq!(
        shown.store.url,
        Some(StoreUrl::Postgres(
            "postgres://aura:***@db.internal:5432/aura".to_owned()
        ))
    );
    assert!(!serde_saphyr::to_string(&shown).unwrap().contains("s3cret"));
    assert_eq!(
        Config {
            store: config.store.clone(),
            ..shown.clone()
        },
        config,
        "only the url changes"
    );
    // Nothing to hide: unchanged.
    assert_eq!(Config::default().redacted(), Config::default());
}

#[test]
fn serialized_config_parses_back_to_itself() {
    let configs = [
        Config::default(),
        parse_str(
            "server:\n  listen: \"[::1]:80\"\ndata_dir: /srv/a b\nstore:\n  url: postgres://h/db\n  schema: s\nlog:\n  format: json\n  level: warn,aura=trace\n",
            Path::new("aura.yaml"),
        )
        .unwrap(),
        parse_str("store:\n  url: sqlite:///var/aura.db\n", Path::new("aura.yaml")).unwrap(),
        parse_str(
            "audit:\n  export:\n    url: s3://bucket/a/b\n    endpoint: http://127.0.0.1:9000\n    allow_http: true\n    interval_seconds: 1\n    retention_days: 36500\n",
            Path::new("aura.yaml"),
        )
        .unwrap(),
        parse_str(
            "policies:\n  dir: /srv/p q\n  watch: false\n  allow_widening: true\naudit:\n  checkpoint_interval_ms: 1\n  segment_bytes: 4294967296\n  origin: \"example.com/log#1\"\ngovernance:\n  reservation_ttl_seconds: 86400\n  ledger: memory\n",
            Path::new("aura.yaml"),
        )
        .unwrap(),
    ];
    for config in configs {
        let yaml = serde_saphyr::to_string(&config).unwrap();
        assert_eq!(
            parse_str(&yaml, Path::new("aura.yaml")).unwrap(),
            config,
            "{yaml}"
        );
    }
    let yaml = serde_saphyr::to_string(&Config::default()).unwrap();
    assert!(
        yaml.contains("listen: 127.0.0.1:7470") && yaml.contains("format: text"),
        "{yaml}"
    );
    assert!(
        yaml.contains("watch: true") && yaml.contains("ledger: store"),
        "{yaml}"
    );
}

#[test]
fn audit_export_is_off_unless_its_section_names_a_url() {
    let path = Path::new("aura.yaml");
    assert_eq!(
        parse_str("audit:\n  export:\n", path).unwrap().audit.export,
        None
    );
    let export = parse_str("audit: {export: {url: s3://bucket}}\n", path)
        .unwrap()
        .audit
        .export
        .unwrap();
    assert_eq!(
        export,
        AuditExportConfig {
            url: "s3://bucket".to_owned(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            allow_http: false,
            interval_seconds: 3600,
            retention_days: None,
        }
    );
    let err = parse_str("audit:\n  export:\n    region: eu-west-1\n", path).unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
}

#[test]
fn booleans_and_ledger_kinds_parse() {
    let config = parse_str(
        "policies: {watch: FALSE, allow_widening: True}\ngovernance: {ledger: Memory}\n",
        Path::new("aura.yaml"),
    )
    .unwrap();
    assert!(!config.policies.watch);
    assert!(config.policies.allow_widening);
    assert_eq!(config.governance.ledger, LedgerKind::Memory);
    assert_eq!(LedgerKind::Memory.to_string(), "memory");
    assert_eq!(LedgerKind::Store.as_str(), "store");
    assert_eq!(LedgerKind::default(), LedgerKind::Store);
}

#[test]
fn missing_explicit_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nope.yaml");
    let err = load(Some(&file)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "`{}`: cannot read config file: file not found\n  hint: check the path given with --config or AURA_CONFIG; `aura init` writes a starter aura.yaml",
            file.display()
        )
    );
    let err = load(Some(dir.path())).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read config file: it is a directory"),
        "{err}"
    );
}

#[test]
fn errors_in_a_loaded_file_name_the_file_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aura.yaml");
    fs::write(&file, "log:\n  format: xml\n").unwrap();
    let err = load(Some(&file)).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid {
            file: file.clone(),
            line: 2,
            column: 11,
            message: "`log.format`: unknown log format `xml`".to_owned(),
            hint: "use one of: text, json".to_owned(),
        }
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2:11: ", file.display()))
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aura.yaml");
    fs::write(&file, b"log:\n  level: inf\xff\n").unwrap();
    let err = load(Some(&file)).unwrap_err();
    assert!(
        err.to_string().ends_with(
            ":2:13: the file is not valid UTF-8 text\n  hint: save the file with UTF-8 encoding"
        ),
        "{err}"
    );
}

#[test]
fn huge_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aura.yaml");
    fs::write(&file, format!("# {}\n", "x".repeat(2 * 1024 * 1024))).unwrap();
    let err = load(Some(&file)).unwrap_err();
    assert!(
        err.to_string().contains("the file is larger than 1 MiB"),
        "{err}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
    }
    let err = parse_str(&text, Path::new("bomb.yaml")).unwrap_err();
    assert!(err.to_string().starts_with("bomb.yaml:"), "{err}");
}

/// Dotted paths of the leaf keys of a block-style YAML mapping indented by two spaces.
fn leaf_keys(yaml: &str) -> Vec<String> {
    let mut parents: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
        let depth = (line.len() - line.trim_start().len()) / 2;
        parents.truncate(depth);
        let Some((key, value)) = line.trim_start().split_once(':') else {
            continue;
        };
        if value.trim().is_empty() {
            parents.push(key.to_owned());
        } else {
            keys.push(
                parents
                    .iter()
                    .chain([&key.to_owned()])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("."),
            );
        }
    }
    keys
}
