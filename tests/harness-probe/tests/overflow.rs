//! A stack overflow: the runtime prints a line and aborts the binary.

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    recurse(std::hint::black_box(&frame)[0] + 1) + 1
}

#[test]
fn overflows() {
    recurse(0);
}
