//! Link options of the `aura` binary.
//!
//! Relative relocations are packed (`DT_RELR`, `-z pack-relative-relocs`): the dynamic loader
//! reads a few kilobytes of bitmaps at startup instead of megabytes of `.rela.dyn` entries, so
//! every `aura` process (the `aura sensor` sidecar above all) starts faster and keeps several
//! megabytes less of the binary resident. It needs glibc ≥ 2.36 at run time; build with
//! `AURA_LINK_RELR=0` for older systems.

fn main() {
    println!("cargo:rerun-if-env-changed=AURA_LINK_RELR");
    let wanted = std::env::var("AURA_LINK_RELR").map_or(true, |v| v != "0");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if wanted && linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
