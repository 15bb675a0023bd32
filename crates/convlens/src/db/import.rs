//! `db import-npy`: a filter database from the authors' published layout (CNN Filter DB,
//! `dataset.h5`) converted to `.npy` + CSV.
//!
//! convlens reads no HDF5 (the `/meta` table is a PyTables-pickled pandas frame, which only
//! pandas reads faithfully). Convert once with Python (streaming, any size):
//!
//! ```python
//! import h5py, numpy as np, pandas as pd
//! f = h5py.File("dataset.h5")["filter"]; out = np.lib.format.open_memmap("filters.npy", "w+", np.float32, (len(f), 3, 3))
//! for i in range(0, len(f), 10**8): out[i:i + 10**8] = f[i:i + 10**8].reshape(-1, 3, 3)
//! m = pd.read_hdf("dataset.h5", "meta").reset_index(); m["first_filter_id"] = m.filter_ids.map(min); m["last_filter_id"] = m.filter_ids.map(max)
//! m.drop(columns="filter_ids").to_csv("filterinfo.csv", index=False)
//! ```
//!
//! Each row of `filterinfo.csv` is one (model, conv depth) record with a contiguous range of
//! filter ids; its other columns are the model's meta data.

use super::record::{KernelShard, LayerRecord, ModelRecord};
use super::shard::write_npy_f32;
use super::{DbError, FILTERS_DIR, MODELS_DIR};
use crate::compare::basis::Moments;
use crate::depth::DepthBin;
use crate::measure::{basis_moments, entropy_base10, scale_filter, sparse_mask, variance_spectrum};
use convlens_core::Blob;
use std::collections::BTreeMap;
use std::path::Path;

/// Columns of `filterinfo.csv` that describe a record, not the model.
const RECORD_COLUMNS: &[&str] = &[
    "conv_depth",
    "conv_depth_norm",
    "filter_ids",
    "first_filter_id",
    "last_filter_id",
    "index",
    "Unnamed: 0",
];

fn bad(path: &Path, msg: String) -> DbError {
    DbError::Meta(format!("{}: {msg}", path.display()))
}

/// Names usable as file names: anything but letters, digits, `-`, `_`, `.` becomes `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Imports `filters` (`N × 3 × 3` or `N × 9` float32 `.npy`) and `info` into a database in
/// `db_dir`; returns the number of models.
pub fn import_npy(filters: &Path, info: &Path, db_dir: &Path) -> Result<usize, DbError> {
    let file = std::fs::File::open(filters).map_err(|e| DbError::Io(filters.to_path_buf(), e))?;
    // SAFETY: read-only map of a file we only read
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DbError::Io(filters.to_path_buf(), e))?;
    let t = convlens_numpy::parse_npy(Blob::from_owner(map))
        .map_err(|e| bad(filters, e.to_string()))?;
    let n_total = match t.shape() {
        [n, 3, 3] | [n, 9] => *n,
        s => {
            return Err(bad(
                filters,
                format!("shape {s:?}: expected N×3×3 or N×9 filters"),
            ))
        }
    };
    if t.dtype() != convlens_core::DType::F32 || !t.is_c_contiguous() {
        return Err(bad(filters, "filters must be C-ordered float32".into()));
    }
    let data = t.storage().as_slice();
    let table =
        convlens_table::Table::read_csv(info, false).map_err(|e| bad(info, e.to_string()))?;
    let names: Vec<String> = table.names().map(str::to_string).collect();
    let col = |n: &str| table.column(n).and_then(|c| c.as_str());
    let model_col = col("model")
        .or_else(|| col("model_id"))
        .ok_or_else(|| bad(info, "needs a `model` or `model_id` column".into()))?;
    let req = |n: &str| col(n).ok_or_else(|| bad(info, format!("missing column `{n}`")));
    let (cd, cdn, first, last) = (
        req("conv_depth")?,
        req("conv_depth_norm")?,
        req("first_filter_id")?,
        req("last_filter_id")?,
    );
    let meta_cols: Vec<&String> = names
        .iter()
        .filter(|n| !RECORD_COLUMNS.contains(&n.as_str()))
        .collect();
    // group rows by model, in file order
    let mut by_model: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (r, m) in model_col.iter().enumerate() {
        by_model
            .entry(m.clone().unwrap_or_default())
            .or_default()
            .push(r);
    }
    let parse = |v: &Option<String>, what: &str, r: usize| -> Result<f64, DbError> {
        v.as_deref()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| bad(info, format!("row {}: `{what}` is not a number", r + 2)))
    };
    std::fs::create_dir_all(db_dir.join(MODELS_DIR))
        .map_err(|e| DbError::Io(db_dir.to_path_buf(), e))?;
    let dir = db_dir.join(FILTERS_DIR).join("3x3");
    std::fs::create_dir_all(&dir).map_err(|e| DbError::Io(dir.clone(), e))?;
    for (model, rows) in &by_model {
        let name = file_safe(model);
        let mut layers = Vec::new();
        let mut all: Vec<f32> = Vec::new();
        let mut moments = Moments::new(9);
        let mut n_sparse = 0u64;
        for &r in rows {
            let (a, b) = (
                parse(&first[r], "first_filter_id", r)?,
                parse(&last[r], "last_filter_id", r)?,
            );
            if a < 0.0 || b < a || b as usize >= n_total {
                return Err(bad(
                    info,
                    format!(
                        "row {}: filter ids {a}..={b} outside the {n_total} filters",
                        r + 2
                    ),
                ));
            }
            let (a, b) = (a as usize, b as usize + 1);
            let w: Vec<f32> = data[a * 36..b * 36]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let (layer_norm, mask) = sparse_mask(&w, 9);
            let mut scaled = Vec::new();
            let mut x = [0.0; 9];
            let mut sparse = 0;
            for (f, &s) in w.chunks_exact(9).zip(&mask) {
                if s {
                    sparse += 1;
                } else {
                    scale_filter(f, &mut x);
                    scaled.extend_from_slice(&x);
                }
            }
            // per layer, then merged: the same sums in the same order as `db build`
            if let Some(lm) = basis_moments(&w, 9) {
                moments.merge(&lm);
            }
            n_sparse += sparse as u64;
            let depth = parse(&cd[r], "conv_depth", r)? as usize;
            let norm = parse(&cdn[r], "conv_depth_norm", r)?;
            let start = (all.len() / 9) as u64;
            let n = b - a;
            layers.push(LayerRecord {
                name: format!("conv_depth_{depth}"),
                weight_name: format!("filters {a}..{}", b - 1),
                op: "Conv".into(),
                transposed: false,
                kernel: [3, 3],
                shape: [n, 1, 3, 3],
                out_channels: n,
                in_channels: 1,
                groups: None,
                depth,
                conv_depth: Some(depth),
                conv_depth_norm: Some(norm),
                depth_group: DepthBin::of(depth, norm).map(|b| b.label()),
                shard_start: start,
                shard_end: start + n as u64,
                layer_norm,
                sparse_filters: sparse,
                nonsparse_filters: n - sparse,
                sparsity: sparse as f64 / n as f64,
                variance_entropy: entropy_base10(&variance_spectrum(&scaled, 9)),
                // the published layout has no channel structure: not computable
                orthogonality: f64::NAN,
                l1_norm: w.iter().map(|v| f64::from(v.abs())).sum(),
                l2_norm: w
                    .iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>()
                    .sqrt(),
            });
            all.extend_from_slice(&w);
        }
        let n = all.len() / 9;
        let shard = format!("{FILTERS_DIR}/3x3/{name}.npy");
        write_npy_f32(&db_dir.join(&shard), &[n, 3, 3], &all)
            .map_err(|e| DbError::Io(db_dir.join(&shard), e))?;
        let first_row = rows[0];
        let meta = meta_cols
            .iter()
            .map(|c| {
                let v = col(c)
                    .and_then(|v| v[first_row].clone())
                    .unwrap_or_default();
                ((*c).clone(), v)
            })
            .collect();
        let rec = ModelRecord {
            name: name.clone(),
            file: filters.display().to_string(),
            format: "filter-db-npy".into(),
            size: 0,
            mtime_ns: 0,
            blake3: String::new(),
            meta,
            entry: None,
            entry_asked: None,
            n_conv_layers: rows.len(),
            n_conv_depths: rows.len(),
            depth_source: "conv_depth of the imported table".into(),
            kernels: vec![KernelShard {
                kernel: [3, 3],
                shard,
                n_filters: n as u64,
                n_sparse,
                moments,
            }],
            layers,
            skipped: Vec::new(),
            notes: vec!["imported from the CNN Filter DB layout: no channel structure, orthogonality not available".into()],
        };
        let text = serde_json::to_vec_pretty(&rec)
            .map_err(|e| DbError::Record(db_dir.to_path_buf(), e.to_string()))?;
        super::write_atomic(&db_dir.join(MODELS_DIR).join(format!("{name}.json")), &text)?;
    }
    let db = super::Db::open(db_dir)?;
    db.write_tables(&[])?;
    Ok(db.models.len())
}
