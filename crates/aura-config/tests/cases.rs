//! Data-driven error tests: every `tests/cases/<name>.yaml` is parsed with the origin
//! `<name>.yaml`; `<name>.err` holds the exact expected error text. `ok_*.yaml` files have no
//! `.err` file and must load.
//!
//! To (re)write the `.err` files after an intended change of wording, run
//! `UPDATE_EXPECT=1 cargo test -p aura-config --test cases` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn cases() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases"));
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    names.sort();
    let (mut errors, mut oks, mut failures) = (0, 0, Vec::new());
    for path in &names {
        let file_name = path.file_name().unwrap().to_str().unwrap();
        let text = fs::read_to_string(path).unwrap();
        let result = aura_config::parse_str(&text, Path::new(file_name));
        let expect_path = path.with_extension("err");
        if file_name.starts_with("ok_") {
            oks += 1;
            assert!(
                !expect_path.exists(),
                "{file_name}: ok_ cases have no .err file"
            );
            if let Err(err) = result {
                failures.push(format!("{file_name}: expected to load, got:\n{err}"));
            }
            continue;
        }
        errors += 1;
        let actual = match result {
            Err(err) => format!("{err}\n"),
            Ok(config) => format!("loaded without error: {config:?}\n"),
        };
        if update {
            fs::write(&expect_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expect_path).unwrap_or_else(|_| {
            format!(
                "(missing {}; run with UPDATE_EXPECT=1)\n",
                expect_path.display()
            )
        });
        if actual != expected {
            failures.push(format!(
                "{file_name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        errors >= 12 && oks >= 3,
        "too few cases: {errors} error cases, {oks} ok cases"
    );
}
