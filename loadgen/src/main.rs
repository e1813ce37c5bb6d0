//! `loadgen`: stub while the crate is written.
fn main() {}
