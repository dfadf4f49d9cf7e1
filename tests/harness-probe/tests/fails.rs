//! An ordinary assertion failure next to a pass: counted once, by name.

#[test]
fn passes() {}

#[test]
fn fails() {
    assert_eq!(1 + 1, 3, "deliberate failure (harness self-test)");
}
