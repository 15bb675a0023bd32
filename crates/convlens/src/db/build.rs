//! `db build`: turns a folder of checkpoints plus a meta table into a filter database.

use super::record::{KernelShard, LayerRecord, ModelRecord};
use super::shard::write_npy_f32;
use super::{DbError, FILTERS_DIR, MODELS_DIR};
use crate::compare::basis::Moments;
use crate::extract::{extract, KernelSelect};
use crate::measure::{scale_filter, sparse_mask};
use crate::quality::analyse_checkpoint;
use crate::read::{find_models, model_name, read};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of `db build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Meta table (CSV) with one row per model; `None` builds without meta data.
    pub meta: Option<PathBuf>,
    /// Column of the meta table holding the model name.
    pub name_column: String,
    /// Only files with these extensions (lowercase, without dot); empty = every supported one.
    pub formats: Vec<String>,
    /// Kernel sizes stored.
    pub kernel: KernelSelect,
    /// Re-read every file even if unchanged.
    pub force: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            meta: None,
            name_column: "Name".to_string(),
            formats: Vec::new(),
            kernel: KernelSelect::DEFAULT,
            force: false,
        }
    }
}

/// What happened to one model or file during a build.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Outcome {
    /// Read and stored.
    Added,
    /// Unchanged since the last build; reused.
    Unchanged,
    /// Could not be analysed; not in the database.
    Failed,
    /// Another file of the same model name was used instead.
    Duplicate,
    /// A meta-table row with no file.
    MissingFile,
    /// In the database but without a meta-table row.
    NoMetaRow,
    /// Was in the database, its file is gone: removed.
    Removed,
}

impl Outcome {
    /// Lowercase label used in `status.csv`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Added => "added",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Duplicate => "duplicate",
            Outcome::MissingFile => "missing-file",
            Outcome::NoMetaRow => "no-meta-row",
            Outcome::Removed => "removed",
        }
    }

    /// True for outcomes that leave the model in the database.
    pub fn in_db(&self) -> bool {
        matches!(
            self,
            Outcome::Added | Outcome::Unchanged | Outcome::NoMetaRow
        )
    }
}

/// One line of the build status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusEntry {
    /// Model name.
    pub model: String,
    /// File (relative to the zoo folder), empty for a meta row without file.
    pub file: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Reason or detail.
    pub detail: String,
}

/// Result of a build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// Every model and file with its outcome.
    pub status: Vec<StatusEntry>,
    /// Models now in the database.
    pub models_in_db: usize,
    /// Filters now in the database, per kernel size.
    pub filters: Vec<([usize; 2], u64)>,
}

impl BuildReport {
    /// Entries with a given outcome.
    pub fn with(&self, o: Outcome) -> impl Iterator<Item = &StatusEntry> {
        self.status.iter().filter(move |s| s.outcome == o)
    }
}

/// Preference among several files of one model: full-precision safetensors first, then torch,
/// ONNX, NumPy; half-precision copies and exotic flavours last.
fn preference(path: &Path) -> (u8, usize, String) {
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
    (rank, path.components().count(), f)
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A meta table held as strings: column names and one row per model name.
pub struct MetaTable {
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Rows by model name (first row wins on duplicates).
    pub rows: BTreeMap<String, Vec<String>>,
    /// Names that appear in more than one row.
    pub duplicate_names: Vec<String>,
}

impl MetaTable {
    /// Reads a meta CSV; `name_column` identifies models.
    pub fn read(path: &Path, name_column: &str) -> Result<MetaTable, DbError> {
        let t = convlens_table::Table::read_csv(path, false)
            .map_err(|e| DbError::Meta(e.to_string()))?;
        let columns: Vec<String> = t.names().map(str::to_string).collect();
        let name_idx = columns
            .iter()
            .position(|c| c == name_column)
            .ok_or_else(|| {
                DbError::Meta(format!(
                    "{}: no column {name_column:?} (columns: {}); choose one with --name-col",
                    path.display(),
                    columns.join(", ")
                ))
            })?;
        let cols: Vec<&[Option<String>]> = t
            .columns()
            .map(|(_, c)| c.as_str().unwrap_or(&[]))
            .collect();
        let mut rows = BTreeMap::new();
        let mut duplicate_names = Vec::new();
        for r in 0..t.n_rows() {
            let row: Vec<String> = cols
                .iter()
                .map(|c| c.get(r).cloned().flatten().unwrap_or_default())
                .collect();
            let name = row[name_idx].trim().to_string();
            if name.is_empty() {
                continue;
            }
            match rows.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    duplicate_names.push(e.key().clone())
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(row);
                }
            }
        }
        Ok(MetaTable {
            columns,
            rows,
            duplicate_names,
        })
    }
}

/// Extracts, measures and stores one model; returns its record.
fn process_model(
    name: &str,
    path: &Path,
    rel: &str,
    db_dir: &Path,
    kernel: KernelSelect,
    meta: Vec<(String, String)>,
) -> Result<ModelRecord, String> {
    let fmeta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ckpt = read(path).map_err(|e| e.to_string())?;
    let report = analyse_checkpoint(path, &ckpt, kernel).map_err(|e| e.to_string())?;
    let ex = extract(&ckpt);
    // the analysed layers, in the same order as report.layers
    let layers: Vec<_> = ex.selected(kernel).collect();
    let mut kernels: BTreeMap<[usize; 2], (Vec<f32>, u64, Moments)> = BTreeMap::new();
    let mut records = Vec::with_capacity(layers.len());
    for (l, m) in layers.iter().zip(&report.layers) {
        let kk = [l.kh, l.kw];
        let k = l.kh * l.kw;
        let entry = kernels
            .entry(kk)
            .or_insert_with(|| (Vec::new(), 0, Moments::new(k)));
        let filters = l.filters();
        let (_, mask) = sparse_mask(&filters, k);
        let start = (entry.0.len() / k) as u64;
        let mut scaled = vec![0.0f64; k];
        for (f, &sparse) in filters.chunks_exact(k).zip(&mask) {
            if sparse {
                entry.1 += 1;
            } else if !l.transposed {
                // transposed convolutions are stored but not part of the basis (no depth rank)
                scale_filter(f, &mut scaled);
                entry.2.add(&scaled);
            }
        }
        entry.0.extend_from_slice(&filters);
        records.push(LayerRecord {
            name: l.name.clone(),
            weight_name: l.weight_name.clone(),
            op: l.op.to_string(),
            transposed: l.transposed,
            kernel: kk,
            shape: l.shape,
            out_channels: l.out_channels,
            in_channels: l.in_per_group,
            groups: l.groups,
            depth: l.depth,
            conv_depth: l.conv_depth,
            conv_depth_norm: l.conv_depth_norm,
            depth_group: m.depth_group.map(|b| b.label()),
            shard_start: start,
            shard_end: start + l.n_filters as u64,
            layer_norm: m.layer_norm,
            sparse_filters: m.sparse_filters,
            nonsparse_filters: m.nonsparse_filters,
            sparsity: m.sparsity,
            variance_entropy: m.variance_entropy,
            orthogonality: m.orthogonality,
            l1_norm: m.l1_norm,
            l2_norm: m.l2_norm,
        });
    }
    let mut shards = Vec::new();
    for (kk, (data, n_sparse, moments)) in kernels {
        let k = kk[0] * kk[1];
        let n = data.len() / k;
        let dir = db_dir
            .join(FILTERS_DIR)
            .join(format!("{}x{}", kk[0], kk[1]));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!("{name}.npy"));
        write_npy_f32(&file, &[n, kk[0], kk[1]], &data)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        shards.push(KernelShard {
            kernel: kk,
            shard: format!("{FILTERS_DIR}/{}x{}/{name}.npy", kk[0], kk[1]),
            n_filters: n as u64,
            n_sparse,
            moments,
        });
    }
    let sha256 = {
        let mut h = Sha256::new();
        // the reader mapped the file already; hash it through a fresh map
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: read-only map of a file we only read
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| e.to_string())?;
        h.update(&map[..]);
        format!("{:x}", h.finalize())
    };
    Ok(ModelRecord {
        name: name.to_string(),
        file: rel.to_string(),
        format: ckpt.format.name().to_string(),
        size: fmeta.len(),
        mtime_ns: mtime_ns(&fmeta),
        sha256,
        meta,
        n_conv_layers: report.n_conv_layers,
        n_conv_depths: report.n_conv_depths,
        depth_source: report.depth_source,
        kernels: shards,
        layers: records,
        skipped: report
            .skipped
            .iter()
            .map(|s| (s.name.clone(), s.reason.clone()))
            .collect(),
        notes: report.notes,
    })
}

/// Builds or updates the database in `db_dir` from the checkpoints under `zoo_dir`.
///
/// `progress` is called once per processed model with (done, total, model name).
pub fn build(
    zoo_dir: &Path,
    db_dir: &Path,
    opts: &BuildOptions,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<BuildReport, DbError> {
    let meta = match &opts.meta {
        Some(p) => Some(MetaTable::read(p, &opts.name_column)?),
        None => None,
    };
    let files = find_models(zoo_dir).map_err(|e| DbError::Io(zoo_dir.to_path_buf(), e))?;
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| {
            opts.formats.is_empty()
                || p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| opts.formats.iter().any(|f| f.eq_ignore_ascii_case(e)))
        })
        .collect();
    // group files by model name, pick one
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        by_name.entry(model_name(&f)).or_default().push(f);
    }
    let rel = |p: &Path| {
        p.strip_prefix(zoo_dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut status = Vec::new();
    let mut chosen: Vec<(String, PathBuf)> = Vec::new();
    for (name, mut paths) in by_name {
        paths.sort_by_key(|p| preference(p));
        let first = paths.remove(0);
        for other in paths {
            status.push(StatusEntry {
                model: name.clone(),
                file: rel(&other),
                outcome: Outcome::Duplicate,
                detail: format!("same model name as {}, which is used", rel(&first)),
            });
        }
        chosen.push((name, first));
    }
    if let Some(m) = &meta {
        let have: BTreeSet<&str> = chosen.iter().map(|(n, _)| n.as_str()).collect();
        for name in m.rows.keys() {
            if !have.contains(name.as_str()) {
                status.push(StatusEntry {
                    model: name.clone(),
                    file: String::new(),
                    outcome: Outcome::MissingFile,
                    detail: "meta table row without a model file in the zoo folder".into(),
                });
            }
        }
        for name in &m.duplicate_names {
            status.push(StatusEntry {
                model: name.clone(),
                file: String::new(),
                outcome: Outcome::Duplicate,
                detail: "the meta table has several rows with this name; the first is used".into(),
            });
        }
    }
    // existing records
    let models_dir = db_dir.join(MODELS_DIR);
    std::fs::create_dir_all(&models_dir).map_err(|e| DbError::Io(models_dir.clone(), e))?;
    let existing = super::load_records(db_dir)?;
    let existing: BTreeMap<String, ModelRecord> =
        existing.into_iter().map(|r| (r.name.clone(), r)).collect();
    let total = chosen.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // (name, file, record and whether it was freshly read, or the failure)
    type Processed = (String, PathBuf, Result<(ModelRecord, bool), String>);
    let results: Vec<Processed> = chosen
        .par_iter()
        .map(|(name, path)| {
            let meta_row: Vec<(String, String)> = meta
                .as_ref()
                .and_then(|m| {
                    m.rows
                        .get(name)
                        .map(|r| m.columns.iter().cloned().zip(r.iter().cloned()).collect())
                })
                .unwrap_or_default();
            let r = rel(path);
            let reuse = existing.get(name).filter(|old| {
                !opts.force
                    && old.file == r
                    && std::fs::metadata(path)
                        .map(|m| m.len() == old.size && mtime_ns(&m) == old.mtime_ns)
                        .unwrap_or(false)
                    && old.kernels.iter().all(|k| db_dir.join(&k.shard).exists())
                    && old
                        .kernels
                        .iter()
                        .all(|k| opts.kernel.accepts(k.kernel[0], k.kernel[1]))
            });
            let res = match reuse {
                Some(old) => {
                    let mut rec = old.clone();
                    rec.meta = meta_row;
                    Ok((rec, false))
                }
                None => process_model(name, path, &r, db_dir, opts.kernel, meta_row)
                    .map(|rec| (rec, true)),
            };
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(d, total, name);
            (name.clone(), path.clone(), res)
        })
        .collect();
    let mut in_db: BTreeSet<String> = BTreeSet::new();
    for (name, path, res) in results {
        match res {
            Ok((rec, fresh)) => {
                let file = models_dir.join(format!("{name}.json"));
                if fresh {
                    let text = serde_json::to_vec_pretty(&rec)
                        .map_err(|e| DbError::Io(file.clone(), e.into()))?;
                    super::write_atomic(&file, &text)?;
                } else {
                    // meta may have changed: rewrite only if different
                    let text = serde_json::to_vec_pretty(&rec)
                        .map_err(|e| DbError::Io(file.clone(), e.into()))?;
                    if std::fs::read(&file).ok().as_deref() != Some(&text[..]) {
                        super::write_atomic(&file, &text)?;
                    }
                }
                let no_meta = meta.is_some() && rec.meta.is_empty();
                status.push(StatusEntry {
                    model: name.clone(),
                    file: rel(&path),
                    outcome: if no_meta {
                        Outcome::NoMetaRow
                    } else if fresh {
                        Outcome::Added
                    } else {
                        Outcome::Unchanged
                    },
                    detail: if no_meta {
                        format!(
                            "stored, but the meta table has no row named {name:?} (it belongs to no group)"
                        )
                    } else {
                        format!(
                            "{} layers, {} filters",
                            rec.layers.len(),
                            rec.kernels.iter().map(|k| k.n_filters).sum::<u64>()
                        )
                    },
                });
                in_db.insert(name);
            }
            Err(reason) => {
                // a failed model must not linger from an earlier build
                remove_model(db_dir, existing.get(&name));
                status.push(StatusEntry {
                    model: name.clone(),
                    file: rel(&path),
                    outcome: Outcome::Failed,
                    detail: reason,
                });
            }
        }
    }
    for (name, old) in &existing {
        if !in_db.contains(name)
            && !status
                .iter()
                .any(|s| &s.model == name && s.outcome == Outcome::Failed)
        {
            remove_model(db_dir, Some(old));
            status.push(StatusEntry {
                model: name.clone(),
                file: old.file.clone(),
                outcome: Outcome::Removed,
                detail: "its file is no longer in the zoo folder".into(),
            });
        }
    }
    status.sort_by(|a, b| (&a.model, &a.outcome, &a.file).cmp(&(&b.model, &b.outcome, &b.file)));
    let db = super::Db::open(db_dir)?;
    db.write_tables(&status)?;
    let mut filters: BTreeMap<[usize; 2], u64> = BTreeMap::new();
    for m in &db.models {
        for k in &m.kernels {
            *filters.entry(k.kernel).or_default() += k.n_filters;
        }
    }
    Ok(BuildReport {
        status,
        models_in_db: db.models.len(),
        filters: filters.into_iter().collect(),
    })
}

fn remove_model(db_dir: &Path, rec: Option<&ModelRecord>) {
    if let Some(rec) = rec {
        for k in &rec.kernels {
            let _ = std::fs::remove_file(db_dir.join(&k.shard));
        }
        let _ = std::fs::remove_file(db_dir.join(MODELS_DIR).join(format!("{}.json", rec.name)));
    }
}
