//! Helpers shared by the integration tests: fixture paths and tolerant comparisons.
#![allow(dead_code, unused_imports)]

use serde_json::Value;
use std::path::PathBuf;

pub use convlens_testdata::{fixture, root, shared, tree};

/// A zoo model: the repo copy when there is one, else the shared copy, else `None` (with a
/// message saying what is skipped).
pub fn zoo_file(name: &str) -> Option<PathBuf> {
    let p = fixture(&format!("zoo/cifar10-mini/{name}"));
    if p.exists() {
        return Some(p);
    }
    let p = shared()?.join("zoo/cifar10-mini").join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {name} not found in fixtures or ../shared");
        None
    }
}

/// A third-party model (path relative to `third_party/`), like [`zoo_file`].
pub fn third_party_file(rel: &str) -> Option<PathBuf> {
    let p = fixture(&format!("third_party/{rel}"));
    if p.exists() {
        return Some(p);
    }
    let p = shared()?.join("third_party").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {rel} not found in fixtures or ../shared");
        None
    }
}

/// The oracle's output for a file.
pub fn expected(name: &str) -> Value {
    let p = fixture(&format!("expected/{name}"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Asserts `actual` ≈ `expected` (JSON number or null = NaN) to 1e-6 relative, 1e-9 absolute
/// near zero.
pub fn assert_close(what: &str, actual: f64, expected: &Value) {
    assert_close_tol(what, actual, expected, 1e-6);
}

/// Like [`assert_close`] with a chosen relative tolerance.
pub fn assert_close_tol(what: &str, actual: f64, expected: &Value, rel: f64) {
    match expected.as_f64() {
        None => assert!(actual.is_nan(), "{what}: expected null (NaN), got {actual}"),
        Some(e) => {
            let ok = if e.abs() < 1e-9 {
                (actual - e).abs() <= 1e-9
            } else {
                ((actual - e) / e).abs() <= rel
            };
            assert!(ok, "{what}: expected {e}, got {actual}");
        }
    }
}
