//! Every case of the Java reference vectors, checked natively. The same checks run inside
//! headless Chromium from `tests/wasm.rs`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "common/vectors.rs"]
mod vectors;

vector_tests!(test);
