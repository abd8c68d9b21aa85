//! Every case of the Java reference vectors, checked natively. The same checks run inside
//! headless Chromium from `tests/wasm.rs`.

#[path = "common/vectors.rs"]
mod vectors;

vector_tests!(test);
