//! Helpers shared by the integration tests.
#![allow(dead_code)]

use convlens_core::{Blob, Checkpoint, NamedTensor};
use std::path::PathBuf;

/// Path of a repo fixture.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// Path of a file in ../shared, or `None` (after printing the skip line) when it is missing.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if !root.is_dir() {
        eprintln!("SKIPPED: ../shared not found");
        return None;
    }
    Some(root.join(rel))
}

pub fn read_path(p: &std::path::Path) -> Checkpoint {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    convlens_torch::read(Blob::from_vec(bytes)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn read_fixture(rel: &str) -> Checkpoint {
    read_path(&fixture(rel))
}

/// Key for natural sorting (`layers.10` after `layers.2`), as the oracle does.
pub fn natural_key(s: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() != digits && !cur.is_empty() {
            out.push(if digits {
                (cur.parse().unwrap_or(u64::MAX), String::new())
            } else {
                (u64::MAX, cur.clone())
            });
            cur.clear();
        }
        digits = c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(if digits {
            (cur.parse().unwrap_or(u64::MAX), String::new())
        } else {
            (u64::MAX, cur)
        });
    }
    out
}

/// A safetensors tensor: name, shape and little-endian f32 values.
pub struct StTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The f32 tensors of a safetensors file in natural key order.
pub fn safetensors_f32(p: &std::path::Path) -> Vec<StTensor> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort_by_key(|n| natural_key(n));
    names
        .into_iter()
        .filter_map(|name| {
            let t = st.tensor(&name).unwrap();
            if t.dtype() != safetensors::Dtype::F32 {
                return None;
            }
            let values = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(StTensor {
                name,
                shape: t.shape().to_vec(),
                values,
            })
        })
        .collect()
}

/// The 4-D tensors of a checkpoint, in order.
pub fn four_d(c: &Checkpoint) -> Vec<&NamedTensor> {
    c.tensors
        .iter()
        .filter(|t| t.tensor.shape().len() == 4)
        .collect()
}

/// max |w| in f32, as the oracle computes `layer_norm`.
pub fn max_abs(t: &NamedTensor) -> f64 {
    t.tensor.to_f32().iter().fold(0f32, |a, x| a.max(x.abs())) as f64
}
pub mod builder;
