//! The reference-vector checks of `tests/vectors.rs`, run on wasm32 inside headless Chromium
//! (`wasm-pack test --headless --chrome protocol`, see `scripts/test.sh`), plus checks of what
//! the browser build must do on its own: RSA-encrypt a handshake and decode a split stream.
#![cfg(target_arch = "wasm32")]

#[path = "common/vectors.rs"]
mod vectors;

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

vector_tests!(wasm_bindgen_test);

/// The test really runs in a browser page, not in Node.
#[wasm_bindgen_test]
fn runs_in_a_browser() {
    let global = js_sys::global();
    let has_window = js_sys::Reflect::has(&global, &"document".into()).unwrap_or(false);
    assert!(has_window, "expected a browser window global");
}
