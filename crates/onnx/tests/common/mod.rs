//! Helpers shared by the integration tests: fixture paths and reading models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use convlens_core::{Blob, Checkpoint, ConvNode};

/// `fixtures/<rel>` of the repository.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// `../shared/<rel>` beside the workspace, or `None` (with the SKIPPED line) when absent.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if !root.is_dir() {
        eprintln!("SKIPPED: ../shared not found");
        return None;
    }
    let p = root.join(rel);
    if !p.exists() {
        eprintln!("SKIPPED: ../shared/{rel} not found");
        return None;
    }
    Some(p)
}

/// Reads the ONNX file at `path` with its folder as the external-data base.
pub fn read_path(path: &Path) -> Checkpoint {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    convlens_onnx::read(Blob::from_vec(bytes), path.parent())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The convolution node called `name`.
pub fn conv<'a>(ck: &'a Checkpoint, name: &str) -> &'a ConvNode {
    ck.graph
        .as_ref()
        .expect("graph")
        .convs
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conv node {name:?}"))
}

/// max |w| of a tensor's elements rounded to f32.
pub fn max_abs(t: &convlens_core::RawTensor) -> f64 {
    t.to_f32().iter().fold(0f32, |m, x| m.max(x.abs())) as f64
}
