//! Which model files a build reads: the files listed with `--files` resolved inside the zoo
//! folder, and the preference among several files of one model name.

use crate::db::DbError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Preference among several files of one model: full-precision safetensors first, then torch,
/// ONNX, NumPy; half-precision copies and exotic flavours last.
pub(crate) fn preference(path: &Path) -> (u8, usize, String, PathBuf) {
    let f = path
        .file_name()
        .map(|f| f.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let ext = f.rsplit('.').next().unwrap_or("");
    let mut rank = match ext {
        "safetensors" => 0,
        "pt" | "pth" | "bin" => 1,
        "ckpt" => 2,
        "onnx" => 3,
        "npz" | "npy" => 4,
        _ => 9,
    };
    for q in [
        ".fp16.",
        ".bf16.",
        ".half.",
        ".legacy.",
        ".torchscript.",
        ".module.",
        ".jit.",
    ] {
        if f.contains(q) {
            rank += 10;
        }
    }
    (rank, path.components().count(), f, path.to_path_buf())
}

/// The listed files as paths inside `zoo_dir` (`zoo_dir` joined with the normalised relative
/// path, as the folder search yields them), sorted, each once.
pub(super) fn resolve_listed(zoo_dir: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>, DbError> {
    let roots: Vec<PathBuf> = [
        Some(zoo_dir.to_path_buf()),
        std::path::absolute(zoo_dir).ok(),
        std::fs::canonicalize(zoo_dir).ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut out = BTreeSet::new();
    for f in files {
        let outside = || {
            DbError::Selection(format!(
                "--files: {}: not inside the zoo folder {} (list paths relative to it)",
                f.display(),
                zoo_dir.display()
            ))
        };
        let rel = if f.is_absolute() {
            roots
                .iter()
                .find_map(|r| f.strip_prefix(r).ok())
                .ok_or_else(outside)?
        } else {
            f.as_path()
        };
        let mut norm = PathBuf::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(x) => norm.push(x),
                std::path::Component::CurDir => {}
                _ => return Err(outside()),
            }
        }
        if norm.as_os_str().is_empty() {
            return Err(outside());
        }
        out.insert(zoo_dir.join(norm));
    }
    Ok(out.into_iter().collect())
}
