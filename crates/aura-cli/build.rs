//! Link options of the `aura` binary.
//!
//! Relative relocations are packed (`DT_RELR`, `-z pack-relative-relocs`): the dynamic loader
//! reads a few kilobytes of bitmaps at startup instead of megabytes of `.rela.dyn` entries, so
//! every `aura` process (the `aura sensor` sidecar above all) starts faster and keeps several
//! megabytes less of the binary resident. It needs glibc ≥ 2.36 at run time; build with
//! `AURA_LINK_RELR=0` for older systems.
//!
//! In release builds the functions `aura sensor` runs (section patterns in `sensor.ld`, written by
//! `scripts/sensor-symbol-order.sh` from a callgrind run) are placed first and together, in an
//! output section `.text.sensor` inserted before `.text` (a linker script with `INSERT`, which
//! augments the default layout). The kernel maps a binary's pages 64 KiB around every fault, so
//! scattered hot functions keep most of the 35 MB text resident in a long-running sensor; packed,
//! they keep about 1.7 MB. The patterns leave out the hashes in Rust symbol names, which change
//! whenever a dependency or a feature changes; a function renamed since is simply not moved. The
//! instances of generic functions share one name without its hash, so they are listed by exact
//! name in `sensor.order` (`--symbol-ordering-file`, an LLD option; rustc links with LLD on x86_64
//! Linux by default), which sorts them to the start of `.text`, next to `.text.sensor`; those go
//! stale with the hashes until the script is run again. `AURA_LINK_ORDER=0` turns both off.

fn main() {
    println!("cargo:rerun-if-env-changed=AURA_LINK_RELR");
    println!("cargo:rerun-if-env-changed=AURA_LINK_ORDER");
    println!("cargo:rerun-if-changed=sensor.ld");
    println!("cargo:rerun-if-changed=sensor.order");
    let wanted = std::env::var("AURA_LINK_RELR").map_or(true, |v| v != "0");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if wanted && linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let (script, order) = (dir.join("sensor.ld"), dir.join("sensor.order"));
    let ordered = std::env::var("AURA_LINK_ORDER").map_or(true, |v| v != "0");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // LLD is rustc's default linker only on x86_64 Linux; GNU ld has no --symbol-ordering-file.
    let lld = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    if ordered && release && linux_gnu && lld && script.is_file() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
    if ordered && release && linux_gnu && lld && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
