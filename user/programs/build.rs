//! Links every program with ../user.ld by absolute path, so the build works
//! whatever directory cargo runs from (a `-T` in .cargo/config.toml would be
//! relative to that directory).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=../user.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-T{dir}/../user.ld");

    // The static relocation model comes from user/.cargo/config.toml (or the
    // kernel workspace's config), which cargo reads only when started inside
    // /work/main. Without it rustc would make a position-independent ET_DYN
    // that the kernel's loader rejects; say so now instead.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // rustc obeys the last of repeated `-C` options, so check that one.
    let model = flags
        .split('\x1f')
        .rev()
        .find_map(|f| f.split_once("relocation-model="));
    if model.map(|(_, m)| m) != Some("static") {
        // `cargo::error` fails the build with just this message, no backtrace.
        println!(
            "cargo::error=user programs need `-C relocation-model=static`: run cargo from \
             the user/ directory (so user/.cargo/config.toml applies) and do not set \
             RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS; got flags {flags:?}"
        );
    }
}
