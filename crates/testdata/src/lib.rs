//! Test-only helpers: where the repository's fixtures and the project's shared data are.

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// `../shared` beside the checkout, or `None` after printing a clear `SKIPPED` line.
pub fn shared() -> Option<PathBuf> {
    let p = root().join("../shared");
    if p.join("README.md").exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: ../shared not found beside the checkout ({}); CI has it",
            p.display()
        );
        None
    }
}
