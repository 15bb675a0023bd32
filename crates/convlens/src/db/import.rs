//! `db import-h5` and `db import-npy`: a filter database from the authors' published layout
//! (CNN Filter DB): the filters (`dataset.h5`, an `N × 3 × 3` or `N × 9` float array called
//! `filters` or `filter`; or the same array converted to `.npy`) plus `filterinfo.csv`, one row
//! per (model, conv depth) record with a contiguous range of filter ids, and optionally a meta
//! CSV with one row per model.
//!
//! The filters are read one model at a time (HDF5: windows of rows through `convlens-hdf5`;
//! `.npy`: a memory map), so memory grows with the largest model, not with N.

use super::record::{KernelShard, LayerRecord, ModelRecord};
use super::shard::write_npy_f32;
use super::{DbError, FILTERS_DIR, MODELS_DIR};
use crate::depth::DepthBin;
use crate::measure::{basis_moments, entropy_base10, scale_filter, sparse_mask, variance_spectrum};
use crate::numeric::Moments;
use convlens_core::Blob;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Where imported filters come from: `n()` filters of 9 f32 values, read by ranges.
trait FilterSource {
    /// Number of filters.
    fn n(&self) -> usize;
    /// Filters `a..b` (`9 · (b − a)` values).
    fn read(&self, a: usize, b: usize) -> Result<Vec<f32>, DbError>;
    /// The `format` recorded for imported models.
    fn format(&self) -> &'static str;
}

struct NpySource<'a> {
    data: &'a [u8],
    n: usize,
}

impl FilterSource for NpySource<'_> {
    fn n(&self) -> usize {
        self.n
    }
    fn read(&self, a: usize, b: usize) -> Result<Vec<f32>, DbError> {
        Ok(self.data[a * 36..b * 36]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn format(&self) -> &'static str {
        "filter-db-npy"
    }
}

struct H5Source(convlens_hdf5::FilterDataset);

impl FilterSource for H5Source {
    fn n(&self) -> usize {
        usize::try_from(self.0.len()).unwrap_or(usize::MAX)
    }
    fn read(&self, a: usize, b: usize) -> Result<Vec<f32>, DbError> {
        Ok(self.0.read(a as u64, b as u64)?)
    }
    fn format(&self) -> &'static str {
        "filter-db-h5"
    }
}

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
    let src = NpySource {
        data: t.storage().as_slice(),
        n: n_total,
    };
    import(&src, filters, info, None, db_dir)
}

/// Imports the `filters` (or `filter`) dataset of the HDF5 file `h5` (`N × 3 × 3` or `N × 9`,
/// float32 or float64, contiguous or chunked) with `info` and, when given, the per-model `meta`
/// table (joined on the model column) into a database in `db_dir`; returns the number of
/// models. The filters are streamed one model at a time.
pub fn import_h5(
    h5: &Path,
    info: &Path,
    meta: Option<&Path>,
    db_dir: &Path,
) -> Result<usize, DbError> {
    let ds = convlens_hdf5::FilterDataset::open(h5, &["filters", "filter"])?;
    import(&H5Source(ds), h5, info, meta, db_dir)
}

/// Per-model meta data: model name → (column, value) in column order.
type MetaRows = HashMap<String, Vec<(String, String)>>;

/// Model meta data from a per-model CSV.
fn read_meta(meta: &Path) -> Result<MetaRows, DbError> {
    let table =
        convlens_table::Table::read_csv(meta, false).map_err(|e| bad(meta, e.to_string()))?;
    let names: Vec<String> = table.names().map(str::to_string).collect();
    let key = ["model", "model_id", "Name"]
        .into_iter()
        .find(|k| names.iter().any(|n| n == k))
        .ok_or_else(|| bad(meta, "needs a `model`, `model_id` or `Name` column".into()))?;
    let keys = table
        .column(key)
        .and_then(|c| c.as_str())
        .ok_or_else(|| bad(meta, format!("column `{key}` is not text")))?;
    let cols: Vec<String> = names.iter().filter(|n| *n != key).cloned().collect();
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (r, k) in keys.iter().enumerate() {
        let k = k.clone().unwrap_or_default();
        if out.contains_key(&k) {
            return Err(bad(
                meta,
                format!("model {k:?} appears twice (row {})", r + 2),
            ));
        }
        let row = cols
            .iter()
            .map(|c| {
                let v = table
                    .column(c)
                    .and_then(|c| c.as_str())
                    .and_then(|v| v[r].clone())
                    .unwrap_or_default();
                (c.clone(), v)
            })
            .collect();
        out.insert(k, row);
    }
    Ok(out)
}

fn import(
    src: &dyn FilterSource,
    filters: &Path,
    info: &Path,
    meta: Option<&Path>,
    db_dir: &Path,
) -> Result<usize, DbError> {
    let n_total = src.n();
    let meta = meta.map(read_meta).transpose()?;
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
            let w = src.read(a, b)?;
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
        let mut meta_row: Vec<(String, String)> = meta_cols
            .iter()
            .map(|c| {
                let v = col(c)
                    .and_then(|v| v[first_row].clone())
                    .unwrap_or_default();
                ((*c).clone(), v)
            })
            .collect();
        if let Some(by_model) = &meta {
            let row = by_model.get(model).ok_or_else(|| {
                bad(
                    info,
                    format!("model {model:?} has no row in the meta table"),
                )
            })?;
            for (c, v) in row {
                match meta_row.iter_mut().find(|(k, _)| k == c) {
                    Some(slot) => slot.1 = v.clone(),
                    None => meta_row.push((c.clone(), v.clone())),
                }
            }
        }
        let rec = ModelRecord {
            name: name.clone(),
            file: filters.display().to_string(),
            format: src.format().into(),
            size: 0,
            mtime_ns: 0,
            blake3: String::new(),
            meta: meta_row,
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
