//! `load(None)` reads `./aura.yaml` from the current directory, or falls back to the defaults.
//! This is the only test in its binary because it changes the process's current directory.

use std::fs;
use std::path::{Path, PathBuf};

use aura_config::{Config, DEFAULT_CONFIG_FILE, load};

#[test]
fn without_a_flag_aura_yaml_in_the_current_directory_is_used_if_present() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();

    let loaded = load(None).unwrap();
    assert_eq!(loaded.config.policies.dir, PathBuf::from("./policies"));
    assert_eq!((loaded.config, loaded.source), (Config::default(), None));

    fs::write(
        dir.path().join(DEFAULT_CONFIG_FILE),
        "data_dir: state\nlog:\n  format: json\n",
    )
    .unwrap();
    let loaded = load(None).unwrap();
    assert_eq!(loaded.source, Some(PathBuf::from("aura.yaml")));
    assert_eq!(loaded.config.data_dir, PathBuf::from("state"));
    assert_eq!(
        loaded.config.policies.dir,
        PathBuf::from("./policies"),
        "like data_dir, relative to the current directory when the file is there"
    );

    fs::write(
        dir.path().join(DEFAULT_CONFIG_FILE),
        "log:\n  format: xml\n",
    )
    .unwrap();
    let err = load(None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("aura.yaml:2:11: `log.format`: unknown log format `xml`"),
        "{err}"
    );

    std::env::set_current_dir(Path::new("/")).unwrap();
}
