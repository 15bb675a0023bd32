//! Between stages 3 and 4 — the filter database: the conv filters of a whole model zoo, stored
//! so that every analysis can stream over them with memory independent of the number of
//! filters.
//!
//! Layout of a database folder:
//!
//! | path | content |
//! |---|---|
//! | `models/<name>.json` | one record per model: file, format, hash, meta-table row, layers with their metrics and shard ranges, per-kernel moments of the scaled filters |
//! | `filters/<kh>x<kw>/<name>.npy` | the model's filters of that kernel size, `N × kh × kw` float32 (numpy can `np.load(..., mmap_mode="r")` them) |
//! | `models.parquet`, `models.csv` | model table: meta columns, file, format, BLAKE3 hash, counts, global filter id ranges |
//! | `layers.parquet`, `layers.csv` | layer table: model, layer, kernel, shape, groups, depths, depth group, filter ids, sparse count, metrics |
//! | `status.csv` | every model and file with its outcome (added, unchanged, failed + reason, duplicate, missing file, no meta row, removed) |
//! | `build.json` | the settings the database was built with ([`BuildManifest`]): what partial databases must share to be merged |

pub mod build;
pub mod import;
pub mod merge;
pub mod record;
pub mod select;
pub mod shard;

use crate::numeric::Moments;
use convlens_table::{Column, Table};
use record::ModelRecord;
use std::path::{Path, PathBuf};

/// Folder of the per-model records.
pub const MODELS_DIR: &str = "models";
/// Folder of the filter shards.
pub const FILTERS_DIR: &str = "filters";
/// File of the build settings.
pub const MANIFEST_FILE: &str = "build.json";
/// Version of the database layout written by this convlens.
pub const DB_FORMAT: u32 = 1;

/// The settings a database was built with. Every database built by `db build` carries one; two
/// partial databases can be merged only if theirs are equal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildManifest {
    /// Layout version ([`DB_FORMAT`]).
    pub db_format: u32,
    /// Version of convlens that built it.
    pub convlens: String,
    /// Kernel sizes stored (`3x3`, `all`, ...).
    pub kernel: String,
    /// File extensions the build was restricted to (lowercase, sorted; empty = all).
    pub formats: Vec<String>,
    /// Meta-table column holding the model name.
    pub name_column: String,
    /// Meta-table columns in file order (empty without a meta table).
    pub meta_columns: Vec<String>,
    /// BLAKE3 of the meta table's bytes (empty without a meta table).
    pub meta_blake3: String,
}

impl BuildManifest {
    /// Reads `build.json` of a database folder.
    pub fn read(db_dir: &Path) -> Result<BuildManifest, DbError> {
        let p = db_dir.join(MANIFEST_FILE);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DbError::Merge(format!(
                    "{}: no {MANIFEST_FILE} (imported, or built by an older convlens); rebuild it with `convlens db build`",
                    db_dir.display()
                )))
            }
            Err(e) => return Err(DbError::Io(p, e)),
        };
        serde_json::from_slice(&text).map_err(|e| DbError::Record(p, e.to_string()))
    }

    /// The bytes of `build.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Fields that differ from `other`, as `name: ours vs theirs`.
    pub fn differences(&self, other: &BuildManifest) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name}: {a} vs {b}"));
            }
        };
        cmp(
            "db_format",
            self.db_format.to_string(),
            other.db_format.to_string(),
        );
        cmp(
            "convlens version",
            self.convlens.clone(),
            other.convlens.clone(),
        );
        cmp("kernel", self.kernel.clone(), other.kernel.clone());
        cmp(
            "formats",
            format!("{:?}", self.formats),
            format!("{:?}", other.formats),
        );
        cmp(
            "name column",
            self.name_column.clone(),
            other.name_column.clone(),
        );
        cmp(
            "meta columns",
            format!("{:?}", self.meta_columns),
            format!("{:?}", other.meta_columns),
        );
        cmp(
            "meta table (BLAKE3)",
            or_none(&self.meta_blake3),
            or_none(&other.meta_blake3),
        );
        d
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.to_string()
    }
}

/// Errors of the database commands; all name the file or say what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A file could not be read or written.
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    /// A model record is damaged.
    #[error("{}: damaged model record: {}", .0.display(), .1)]
    Record(PathBuf, String),
    /// The meta table is unusable.
    #[error("meta table: {0}")]
    Meta(String),
    /// A table could not be written.
    #[error("{0}")]
    Table(String),
    /// Not a database folder.
    #[error("{}: not a convlens database (no {MODELS_DIR}/ folder); create one with `convlens db build`", .0.display())]
    NotADb(PathBuf),
    /// The selection of models is unusable.
    #[error("{0}")]
    Selection(String),
    /// Databases that cannot be merged.
    #[error("db merge: {0}")]
    Merge(String),
    /// An HDF5 filter file could not be read.
    #[error(transparent)]
    Hdf5(#[from] convlens_hdf5::H5Error),
}

/// Writes a file atomically (temp file + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DbError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| DbError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| DbError::Io(path.to_path_buf(), e))
}

/// Loads every model record of a database folder, sorted by name.
pub fn load_records(db_dir: &Path) -> Result<Vec<ModelRecord>, DbError> {
    let dir = db_dir.join(MODELS_DIR);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(DbError::Io(dir, e)),
    };
    for e in entries {
        let p = e.map_err(|e| DbError::Io(dir.clone(), e))?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read(&p).map_err(|e| DbError::Io(p.clone(), e))?;
        let rec: ModelRecord =
            serde_json::from_slice(&text).map_err(|e| DbError::Record(p.clone(), e.to_string()))?;
        check_record(&rec).map_err(|e| DbError::Record(p.clone(), e))?;
        out.push(rec);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The sizes in a model record that the analyses index with: kernel sizes that fit the filter
/// basis, moments of matching dimension, layers inside their shard.
fn check_record(rec: &ModelRecord) -> Result<(), String> {
    let taps = |k: [usize; 2]| {
        k[0].checked_mul(k[1])
            .filter(|&t| t > 0 && t <= crate::measure::MAX_SPECTRUM_TAPS)
            .ok_or_else(|| format!("kernel {}x{} out of range", k[0], k[1]))
    };
    for s in &rec.kernels {
        let t = taps(s.kernel)?;
        let m = &s.moments;
        if m.dim != t || m.sum.len() != t || m.outer.len() != t * t {
            return Err(format!(
                "moments of the {}x{} shard do not match its kernel",
                s.kernel[0], s.kernel[1]
            ));
        }
    }
    for l in &rec.layers {
        taps(l.kernel)?;
        let n = rec
            .kernels
            .iter()
            .find(|s| s.kernel == l.kernel)
            .map(|s| s.n_filters)
            .ok_or_else(|| format!("layer {:?} has no shard", l.name))?;
        if l.shard_start > l.shard_end || l.shard_end > n {
            return Err(format!(
                "layer {:?}: filters {}..{} outside its shard of {n}",
                l.name, l.shard_start, l.shard_end
            ));
        }
    }
    Ok(())
}

/// An opened filter database.
#[derive(Debug, Clone)]
pub struct Db {
    /// Its folder.
    pub dir: PathBuf,
    /// Models, sorted by name.
    pub models: Vec<ModelRecord>,
}

impl Db {
    /// Opens the database in `dir`.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        if !dir.join(MODELS_DIR).is_dir() {
            return Err(DbError::NotADb(dir.to_path_buf()));
        }
        Ok(Db {
            dir: dir.to_path_buf(),
            models: load_records(dir)?,
        })
    }

    /// Index of a model by name.
    pub fn model(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// Names of the meta columns, in order of first appearance.
    pub fn meta_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for m in &self.models {
            for (k, _) in &m.meta {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        cols
    }

    /// Kernel sizes present, sorted.
    pub fn kernels(&self) -> Vec<[usize; 2]> {
        let mut k: Vec<[usize; 2]> = self
            .models
            .iter()
            .flat_map(|m| m.kernels.iter().map(|s| s.kernel))
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// Moments of the scaled non-sparse filters of the given models (in the given order).
    pub fn moments(&self, models: &[usize], kernel: [usize; 2]) -> Moments {
        let mut m = Moments::new(kernel[0] * kernel[1]);
        for &i in models {
            if let Some(k) = self.models[i].kernel(kernel) {
                m.merge(&k.moments);
            }
        }
        m
    }

    /// Writes `models.{csv,parquet}`, `layers.{csv,parquet}` and `status.csv`.
    pub fn write_tables(&self, status: &[build::StatusEntry]) -> Result<(), DbError> {
        let terr = |e: convlens_table::TableError| DbError::Table(e.to_string());
        // model table: meta columns as strings, then typed through CSV inference
        let meta_cols = self.meta_columns();
        let mut t = Table::new();
        let s = |f: &dyn Fn(&ModelRecord) -> String| {
            Column::Str(self.models.iter().map(|m| Some(f(m))).collect())
        };
        t.push_column("model", s(&|m| m.name.clone()))
            .map_err(terr)?;
        for c in &meta_cols {
            if c == "model" {
                continue;
            }
            t.push_column(c, s(&|m| m.meta(c).unwrap_or("").to_string()))
                .map_err(terr)?;
        }
        t.push_column("file", s(&|m| m.file.clone()))
            .map_err(terr)?;
        t.push_column("format", s(&|m| m.format.clone()))
            .map_err(terr)?;
        if self.models.iter().any(|m| m.entry.is_some()) {
            t.push_column("entry", s(&|m| m.entry.clone().unwrap_or_default()))
                .map_err(terr)?;
        }
        t.push_column("size", s(&|m| m.size.to_string()))
            .map_err(terr)?;
        t.push_column("blake3", s(&|m| m.blake3.clone()))
            .map_err(terr)?;
        t.push_column("conv_layers", s(&|m| m.n_conv_layers.to_string()))
            .map_err(terr)?;
        t.push_column("conv_depths", s(&|m| m.n_conv_depths.to_string()))
            .map_err(terr)?;
        for k in self.kernels() {
            let mut start = 0u64;
            let mut firsts = Vec::new();
            let mut ns = Vec::new();
            let mut sparse = Vec::new();
            for m in &self.models {
                let n = m.kernel(k).map_or(0, |s| s.n_filters);
                firsts.push(Some(start.to_string()));
                ns.push(Some(n.to_string()));
                sparse.push(Some(m.kernel(k).map_or(0, |s| s.n_sparse).to_string()));
                start += n;
            }
            let tag = format!("{}x{}", k[0], k[1]);
            t.push_column(&format!("filters_{tag}"), Column::Str(ns))
                .map_err(terr)?;
            t.push_column(&format!("sparse_{tag}"), Column::Str(sparse))
                .map_err(terr)?;
            t.push_column(&format!("first_filter_id_{tag}"), Column::Str(firsts))
                .map_err(terr)?;
        }
        let typed = Table::from_csv_bytes(&t.to_csv_bytes().map_err(terr)?, true).map_err(terr)?;
        typed
            .write_csv(&self.dir.join("models.csv"))
            .map_err(terr)?;
        typed
            .write_parquet(&self.dir.join("models.parquet"))
            .map_err(terr)?;
        self.layer_table()
            .map_err(terr)?
            .write_csv(&self.dir.join("layers.csv"))
            .map_err(terr)?;
        self.layer_table()
            .map_err(terr)?
            .write_parquet(&self.dir.join("layers.parquet"))
            .map_err(terr)?;
        let mut st = Table::new();
        let col = |f: &dyn Fn(&build::StatusEntry) -> String| {
            Column::Str(status.iter().map(|e| Some(f(e))).collect())
        };
        st.push_column("model", col(&|e| e.model.clone()))
            .map_err(terr)?;
        st.push_column("file", col(&|e| e.file.clone()))
            .map_err(terr)?;
        st.push_column("outcome", col(&|e| e.outcome.label().to_string()))
            .map_err(terr)?;
        st.push_column("detail", col(&|e| e.detail.clone()))
            .map_err(terr)?;
        st.write_csv(&self.dir.join("status.csv")).map_err(terr)?;
        Ok(())
    }

    /// The layer table (one row per stored layer).
    pub fn layer_table(&self) -> Result<Table, convlens_table::TableError> {
        let mut model = Vec::new();
        let mut name = Vec::new();
        let mut weight = Vec::new();
        let mut op = Vec::new();
        let mut kh = Vec::new();
        let mut kw = Vec::new();
        let mut shape = Vec::new();
        let mut out_c = Vec::new();
        let mut in_c = Vec::new();
        let mut groups = Vec::new();
        let mut depth = Vec::new();
        let mut conv_depth = Vec::new();
        let mut norm = Vec::new();
        let mut group = Vec::new();
        let mut first = Vec::new();
        let mut last = Vec::new();
        let mut nf = Vec::new();
        let mut sparse = Vec::new();
        let mut sparsity = Vec::new();
        let mut entropy = Vec::new();
        let mut ortho = Vec::new();
        let mut lnorm = Vec::new();
        let mut l2 = Vec::new();
        let mut offsets: std::collections::BTreeMap<[usize; 2], u64> = Default::default();
        for m in &self.models {
            for l in &m.layers {
                let base = *offsets.get(&l.kernel).unwrap_or(&0);
                model.push(Some(m.name.clone()));
                name.push(Some(l.name.clone()));
                weight.push(Some(l.weight_name.clone()));
                op.push(Some(l.op.clone()));
                kh.push(Some(l.kernel[0] as i64));
                kw.push(Some(l.kernel[1] as i64));
                shape.push(Some(
                    l.shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x"),
                ));
                out_c.push(Some(l.out_channels as i64));
                in_c.push(Some(l.in_channels as i64));
                groups.push(l.groups.map(|g| g as i64));
                depth.push(Some(l.depth as i64));
                conv_depth.push(l.conv_depth.map(|d| d as i64));
                norm.push(l.conv_depth_norm);
                group.push(l.depth_group.clone());
                first.push(Some((base + l.shard_start) as i64));
                last.push(Some((base + l.shard_end) as i64 - 1));
                nf.push(Some((l.shard_end - l.shard_start) as i64));
                sparse.push(Some(l.sparse_filters as i64));
                sparsity.push(Some(l.sparsity));
                entropy.push(Some(l.variance_entropy));
                ortho.push(Some(l.orthogonality));
                lnorm.push(Some(l.layer_norm));
                l2.push(Some(l.l2_norm));
            }
            for k in &m.kernels {
                *offsets.entry(k.kernel).or_default() += k.n_filters;
            }
        }
        let mut t = Table::new();
        t.push_column("model", Column::Str(model))?;
        t.push_column("layer", Column::Str(name))?;
        t.push_column("weight_name", Column::Str(weight))?;
        t.push_column("op", Column::Str(op))?;
        t.push_column("kh", Column::I64(kh))?;
        t.push_column("kw", Column::I64(kw))?;
        t.push_column("shape", Column::Str(shape))?;
        t.push_column("out_channels", Column::I64(out_c))?;
        t.push_column("in_channels", Column::I64(in_c))?;
        t.push_column("groups", Column::I64(groups))?;
        t.push_column("depth", Column::I64(depth))?;
        t.push_column("conv_depth", Column::I64(conv_depth))?;
        t.push_column("conv_depth_norm", Column::F64(norm))?;
        t.push_column("depth_group", Column::Str(group))?;
        t.push_column("first_filter_id", Column::I64(first))?;
        t.push_column("last_filter_id", Column::I64(last))?;
        t.push_column("filters", Column::I64(nf))?;
        t.push_column("sparse_filters", Column::I64(sparse))?;
        t.push_column("sparsity", Column::F64(sparsity))?;
        t.push_column("variance_entropy", Column::F64(entropy))?;
        t.push_column("orthogonality", Column::F64(ortho))?;
        t.push_column("layer_norm", Column::F64(lnorm))?;
        t.push_column("l2_norm", Column::F64(l2))?;
        Ok(t)
    }
}
