//! Links the kernel binary with boot/linker.ld, and builds the user
//! programs (the separate workspace in user/) so the kernel can embed them.
//! Both only for the bare-metal target: host tools never build this crate.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs user/programs builds, embedded under these names.
const PROGRAMS: &[&str] = &[
    "hello", "badptr", "bad", "spin", "sysbench", "blocker", "exhaust", "spawner", "fuzz", "sse",
    "threads", "hog",
];

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-T{}",
        dir.join("linker.ld").display()
    );
    let user = dir.join("../user");
    let target_dir = dir.join("../target/user");
    println!("cargo:rerun-if-changed={}", user.display());
    // The programs are built against the ABI crate too (its call list is
    // the fuzzer's): a change there must rebuild them.
    println!("cargo:rerun-if-changed={}", dir.join("../abi").display());
    build_user_programs(&user, &target_dir);
    write_program_table(&target_dir.join("x86_64-unknown-none/release"));
}

fn build_user_programs(user: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The outer build's flags are the kernel's (code-model=kernel, ...):
    // the user workspace brings its own.
    let status = Command::new(cargo)
        .current_dir(user)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "x86_64-unknown-none",
            "--target-dir",
        ])
        .arg(target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo for the user programs");
    assert!(
        status.success(),
        "building the user programs in {} failed",
        user.display()
    );
}

fn write_program_table(bin_dir: &Path) {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut table = String::from(
        "/// Embedded user programs: (name, ELF image).\npub static PROGRAMS: &[(&str, &[u8])] = &[\n",
    );
    for name in PROGRAMS {
        let path = bin_dir.join(name);
        assert!(
            path.exists(),
            "user program {} was not built",
            path.display()
        );
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out.join("programs.rs"), table).expect("writing programs.rs");
}
