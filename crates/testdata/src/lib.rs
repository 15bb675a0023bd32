//! Test-only helpers: where the repository's fixtures and the project's shared data are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Every file and folder under `dir`: relative path → bytes; folders end in `/` with no bytes,
/// so that empty folders must match too.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
