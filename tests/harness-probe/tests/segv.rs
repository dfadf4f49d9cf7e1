//! A segmentation fault: the binary dies by a signal, printing nothing.

#[test]
fn segfaults() {
    // Not null and aligned, so no debug check turns this into a panic; the
    // page is never mapped in a user process.
    let ptr = std::hint::black_box(0x10usize) as *const u8;
    // SAFETY: none; the crash is the point of this test.
    let _ = unsafe { ptr.read_volatile() };
}
