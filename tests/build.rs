//! Test kernels link exactly like the real kernel.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-tests=-T{dir}/../boot/linker.ld");
    }
    println!("cargo:rerun-if-changed=../boot/linker.ld");
}
