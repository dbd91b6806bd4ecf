//! The Guardian against a fixture of corrupted files: one case per corruption class it claims
//! to repair, each with the class it must report and the level that must repair it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Mutex;

use aura_context::aav::{AssetKind, Health, SectionUpdate, Writer, WriterOptions};
use aura_context::guardian::{self, GuardianOptions, IssueClass, SensorRestarter};
use aura_core::Timestamp;

const T0: i64 = 1_800_000_000_000;

/// Writes a valid `web-1.aav` (two versions, so one backup exists when `backup`), returns its text.
fn valid(dir: &Path, backup: bool) -> String {
    let w = Writer::new(
        dir,
        WriterOptions {
            backup_interval_ms: 0,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let versions = if backup { 2 } else { 1 };
    for i in 0..versions {
        let mut compute = toml::Table::new();
        compute.insert("cpu_percent".into(), (10.0 + f64::from(i)).into());
        compute.insert("load_1".into(), 0.5.into());
        let mut memory = toml::Table::new();
        memory.insert("used_percent".into(), 40.0.into());
        memory.insert("available_bytes".into(), 1_000_000i64.into());
        w.update(
            &SectionUpdate::new("web-1", AssetKind::Host, "web-1")
                .section("compute", compute)
                .section("memory", memory)
                .status("compute", "ok")
                .health(Health::Healthy)
                .at(Timestamp::from_millis(T0 + i64::from(i) * 1000)),
        )
        .unwrap();
    }
    std::fs::read_to_string(dir.join("web-1.aav")).unwrap()
}

struct Restarter(Mutex<Vec<String>>);

impl SensorRestarter for Restarter {
    fn restart(&self, asset_id: &str) -> bool {
        self.0.lock().unwrap().push(asset_id.to_owned());
        asset_id == "web-1"
    }
}

struct Case {
    name: &'static str,
    backup: bool,
    corrupt: fn(&str) -> Vec<u8>,
    class: IssueClass,
    level: u8,
}

fn opts() -> GuardianOptions {
    GuardianOptions {
        stale_after_ms: 0,
        leftover_after_ms: 0,
    }
}

const CASES: &[Case] = &[
    Case {
        name: "unterminated string",
        backup: true,
        class: IssueClass::Syntax,
        level: 1,
        corrupt: |t| {
            t.replacen("name = \"web-1\"", "name = \"web-1", 1)
                .into_bytes()
        },
    },
    Case {
        name: "unclosed section header",
        backup: true,
        class: IssueClass::Syntax,
        level: 1,
        corrupt: |t| t.replacen("[compute]", "[compute", 1).into_bytes(),
    },
    Case {
        name: "control bytes",
        backup: true,
        class: IssueClass::Syntax,
        level: 1,
        corrupt: |t| t.replacen("[memory]", "\u{0}\u{0}[memory]", 1).into_bytes(),
    },
    Case {
        name: "bad metadata, no backup",
        backup: false,
        class: IssueClass::Schema,
        level: 1,
        corrupt: |t| {
            t.replacen("kind = \"host\"", "kind = \"toaster\"", 1)
                .replacen("health = \"healthy\"\n", "", 1)
                .into_bytes()
        },
    },
    Case {
        name: "torn write (truncated) with a backup",
        backup: true,
        class: IssueClass::Checksum,
        level: 2,
        corrupt: |t| {
            let cut = t.find("used_percent").unwrap() + 16;
            t.as_bytes()[..cut].to_vec()
        },
    },
    Case {
        name: "edited value: checksum mismatch",
        backup: true,
        class: IssueClass::Checksum,
        level: 2,
        corrupt: |t| {
            t.replacen("cpu_percent = 11.0", "cpu_percent = 99.0", 1)
                .into_bytes()
        },
    },
    Case {
        name: "torn write mid-string with a backup",
        backup: true,
        class: IssueClass::Syntax,
        level: 2,
        corrupt: |t| {
            let cut = t.find("name = \"web").unwrap() + 9;
            t.as_bytes()[..cut].to_vec()
        },
    },
    Case {
        name: "binary garbage with a backup",
        backup: true,
        class: IssueClass::Syntax,
        level: 2,
        corrupt: |_| vec![0xff, 0xfe, 0x00, 0x13, 0x37],
    },
    Case {
        name: "empty file with a backup",
        backup: true,
        class: IssueClass::Schema,
        level: 2,
        corrupt: |_| Vec::new(),
    },
    Case {
        name: "one section beyond repair, no backup",
        backup: false,
        class: IssueClass::Syntax,
        level: 3,
        corrupt: |t| {
            t.replacen("used_percent = 40.0", "used_percent = 4@.0 ]]", 1)
                .into_bytes()
        },
    },
    Case {
        name: "checksum mismatch, no backup",
        backup: false,
        class: IssueClass::Checksum,
        level: 3,
        corrupt: |t| {
            t.replacen("cpu_percent = 10.0", "cpu_percent = 99.0", 1)
                .into_bytes()
        },
    },
    Case {
        name: "nothing recoverable, no backup",
        backup: false,
        class: IssueClass::Syntax,
        level: 4,
        corrupt: |_| b"\x01\x02 = = [[[ \n ]]] garbage".to_vec(),
    },
];

#[test]
fn every_corruption_class_is_detected_and_repaired_at_its_level() {
    let now = Timestamp::from_millis(T0 + 5000);
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let text = valid(dir.path(), case.backup);
        let path = dir.path().join("web-1.aav");
        std::fs::write(&path, (case.corrupt)(&text)).unwrap();
        let report = guardian::validate_file(&path, &opts(), now);
        if report.valid() || !report.issues.iter().any(|i| i.class == case.class) {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.class, report.issues
            ));
            continue;
        }
        let records = guardian::repair(&report, &opts(), 4, None, now);
        let last = records.last();
        if last.map(|r| (r.level, r.ok)) != Some((case.level, true)) {
            failures.push(format!(
                "{}: expected a level {} repair, got {records:#?}",
                case.name, case.level
            ));
            continue;
        }
        let after = guardian::validate_file(&path, &opts(), now);
        if !after.valid() {
            failures.push(format!(
                "{}: still invalid after repair: {:?}",
                case.name, after.issues
            ));
        }
        let q = std::fs::read_dir(dir.path().join(".quarantine"))
            .map(|d| d.count())
            .unwrap_or(0);
        if q == 0 {
            failures.push(format!("{}: the original was not kept", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn level_one_repairs_are_faithful_and_level_three_keeps_what_parses() {
    let now = Timestamp::from_millis(T0 + 5000);
    let dir = tempfile::tempdir().unwrap();
    let text = valid(dir.path(), false);
    let path = dir.path().join("web-1.aav");
    std::fs::write(
        &path,
        text.replacen("name = \"web-1\"", "name = \"web-1", 1),
    )
    .unwrap();
    let report = guardian::validate_file(&path, &opts(), now);
    guardian::repair(&report, &opts(), 5, None, now);
    // The fixed file is exactly the original (same checksum).
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    std::fs::write(
        &path,
        text.replacen("used_percent = 40.0", "used_percent = 4@.0 ]]", 1),
    )
    .unwrap();
    let report = guardian::validate_file(&path, &opts(), now);
    let records = guardian::repair(&report, &opts(), 5, None, now);
    assert!(
        records.last().unwrap().detail.contains("lost [memory]"),
        "{records:?}"
    );
    let doc = aura_context::aav::Document::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        doc.get("compute.cpu_percent").and_then(|v| v.as_float()),
        Some(10.0)
    );
}

#[test]
fn stale_files_need_a_sensor_restart() {
    let dir = tempfile::tempdir().unwrap();
    valid(dir.path(), false);
    let path = dir.path().join("web-1.aav");
    let stale = GuardianOptions {
        stale_after_ms: 60_000,
        leftover_after_ms: 0,
    };
    let now = Timestamp::from_millis(T0 + 3_600_000);
    let report = guardian::validate_file(&path, &stale, now);
    assert_eq!(report.issues[0].class, IssueClass::Stale);
    let without = guardian::repair(&report, &stale, 5, None, now);
    assert_eq!((without[0].level, without[0].ok), (5, false));
    let restarter = Restarter(Mutex::new(Vec::new()));
    let with = guardian::repair(&report, &stale, 5, Some(&restarter), now);
    assert_eq!((with[0].level, with[0].ok), (5, true));
    assert_eq!(*restarter.0.lock().unwrap(), vec!["web-1".to_owned()]);
    // Level 4 then 5: a skeleton, then the sensor rebuilds it.
    std::fs::write(&path, "garbage = = =").unwrap();
    let report = guardian::validate_file(&path, &opts(), now);
    let levels: Vec<u8> = guardian::repair(&report, &opts(), 5, Some(&restarter), now)
        .iter()
        .map(|r| r.level)
        .collect();
    assert_eq!(levels.last(), Some(&5));
    assert!(levels.contains(&4));
}

#[test]
fn leftovers_and_orphans_are_found_and_removed() {
    let now = Timestamp::from_millis(T0 + 5000);
    let dir = tempfile::tempdir().unwrap();
    valid(dir.path(), true);
    std::fs::write(dir.path().join(".web-1.aav.tmp.999.0"), "[meta").unwrap();
    std::fs::write(dir.path().join(".gone.aav.lock"), "").unwrap();
    std::fs::create_dir_all(dir.path().join(".backups/gone")).unwrap();
    std::fs::write(
        dir.path().join("mismatch.aav"),
        std::fs::read(dir.path().join("web-1.aav")).unwrap(),
    )
    .unwrap();
    let reports = guardian::scan(dir.path(), &opts(), now).unwrap();
    let classes: Vec<IssueClass> = reports
        .iter()
        .flat_map(|r| r.issues.iter().map(|i| i.class))
        .collect();
    for c in [
        IssueClass::LeftoverTemp,
        IssueClass::LeftoverLock,
        IssueClass::Orphan,
    ] {
        assert!(classes.contains(&c), "{c:?} not found in {classes:?}");
    }
    // The live asset's own lock file is not a leftover.
    assert!(!reports.iter().any(|r| r.path.ends_with(".web-1.aav.lock")));
    for r in reports.iter().filter(|r| !r.valid()) {
        let records = guardian::repair(r, &opts(), 4, None, now);
        assert!(records.iter().any(|x| x.ok), "{:?} → {records:?}", r.path);
    }
    let after = guardian::scan(dir.path(), &opts(), now).unwrap();
    assert!(after.iter().all(|r| r.valid()), "{after:#?}");
}
