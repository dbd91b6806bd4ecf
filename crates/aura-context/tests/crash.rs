//! Crash test: `kill -9` a process in the middle of asset-file writes, many times; the file left
//! behind always parses, follows the schema and carries a matching checksum (at worst it is the
//! previous version). Also: concurrent writers of different sections never lose an update.
//!
//! Runs without the libtest harness: the binary re-executes itself (`AAV_CRASH_CHILD=<dir>`) as
//! the writer it kills.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aura_context::aav::{AssetKind, Document, SectionUpdate, Writer, WriterOptions};

fn main() {
    if let Ok(dir) = std::env::var("AAV_CRASH_CHILD") {
        child(Path::new(&dir));
        return;
    }
    kill_nine_never_tears_the_file();
    concurrent_section_writers_merge();
    println!("crash tests: ok");
}

fn child(dir: &Path) {
    let writer = Writer::new(
        dir,
        WriterOptions {
            backup_interval_ms: 0,
            history: true,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let mut i: u64 = 0;
    loop {
        let mut compute = toml::Table::new();
        compute.insert("cpu_percent".into(), ((i % 100) as f64).into());
        compute.insert("seq".into(), (i as i64).into());
        // A large section so a write spans several pages and a torn write would show.
        let blob: Vec<toml::Value> = (0..400)
            .map(|k| toml::Value::Integer((i + k) as i64))
            .collect();
        compute.insert("blob".into(), toml::Value::Array(blob));
        writer
            .update(
                &SectionUpdate::new("victim", AssetKind::Host, "victim")
                    .section("compute", compute),
            )
            .unwrap();
        i += 1;
    }
}

fn check(path: &Path) -> i64 {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = Document::parse(&text).unwrap_or_else(|e| panic!("torn file: {e}\n{text}"));
    assert!(
        doc.schema_problems().is_empty(),
        "{:?}",
        doc.schema_problems()
    );
    assert_eq!(
        doc.stored_checksum(),
        Some(doc.computed_checksum().as_str()),
        "checksum mismatch"
    );
    let seq = doc.get("compute.seq").unwrap().as_integer().unwrap();
    let blob = doc.get("compute.blob").unwrap().as_array().unwrap();
    assert_eq!(blob.len(), 400);
    assert_eq!(
        blob[399].as_integer(),
        Some(seq + 399),
        "sections from two versions"
    );
    seq
}

fn kill_nine_never_tears_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("victim.aav");
    let exe = std::env::current_exe().unwrap();
    let mut last_seq = -1;
    for round in 0..25u64 {
        let mut child = Command::new(&exe)
            .env("AAV_CRASH_CHILD", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Wait until this child has written at least once more, then kill it at a varying moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "child wrote nothing");
            if path.exists() && check(&path) > last_seq {
                break;
            }
            std::thread::yield_now();
        }
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros(300 * (round % 7)) {
            std::hint::spin_loop();
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        let seq = check(&path);
        assert!(seq >= last_seq, "went back in time: {seq} < {last_seq}");
        last_seq = seq;
    }
    assert!(last_seq > 0);
    // History survives the kills too (a torn last member is skipped, never an error).
    let history = aura_context::aav::read_history(dir.path(), "victim").unwrap();
    assert!(!history.is_empty());
}

fn concurrent_section_writers_merge() {
    let dir = tempfile::tempdir().unwrap();
    let sections = ["compute", "memory", "storage", "network"];
    std::thread::scope(|s| {
        for name in sections {
            let dir = dir.path().to_owned();
            s.spawn(move || {
                let w = Writer::new(&dir, WriterOptions::default()).unwrap();
                for i in 0..50i64 {
                    let mut t = toml::Table::new();
                    t.insert("n".into(), i.into());
                    w.update(
                        &SectionUpdate::new("shared", AssetKind::Host, "shared")
                            .section(name, t)
                            .status(name, "ok"),
                    )
                    .unwrap();
                }
            });
        }
    });
    let doc =
        Document::parse(&std::fs::read_to_string(dir.path().join("shared.aav")).unwrap()).unwrap();
    for name in sections {
        assert_eq!(
            doc.get(&format!("{name}.n")).and_then(|v| v.as_integer()),
            Some(49),
            "{name} lost an update"
        );
    }
    assert_eq!(doc.sensor_status().len(), 4);
}
