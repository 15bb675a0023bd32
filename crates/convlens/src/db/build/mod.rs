//! `db build`: turns a folder of checkpoints plus a meta table into a filter database.
//!
//! [`build`] lists the zoo's model files (all of them, or the `--files`/`--part` selection),
//! keeps one file per model name (`preference`), joins the meta table ([`MetaTable`]), reuses
//! the records of unchanged files, processes the others in parallel (`model`: read, extract,
//! measure, write the shards of `shards`) and writes the records, tables and status.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`build`], [`BuildOptions`], [`BuildReport`], [`Outcome`], [`StatusEntry`] |
//! | `files.rs` | the files listed with `--files`, the preference among files of one model |
//! | `meta.rs` | [`MetaTable`] |
//! | `hash.rs` | a file's BLAKE3 hash and modification time (what makes a file unchanged) |
//! | `model.rs` | processing one model into its record and shards |
//! | `shards.rs` | the shards of one model being written, committed with its record |

mod files;
mod hash;
mod meta;
mod model;
mod shards;

pub(crate) use files::preference;
pub use meta::MetaTable;

use super::record::ModelRecord;
use super::{DbError, FILTERS_DIR, MODELS_DIR};
use crate::extract::KernelSelect;
use crate::read::{find_models, model_name};
use files::resolve_listed;
use hash::{file_blake3, mtime_ns};
use model::{process_model, NotStored};
use rayon::prelude::*;
use shards::PendingShards;
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
    /// Only these files instead of every model file found in the zoo folder: paths relative to
    /// the zoo folder (absolute ones must lie inside it). A partial database of just these models.
    pub files: Vec<PathBuf>,
    /// Only part `i` of `n` (`0 ≤ i < n`): the models at positions `i, i + n, i + 2n, …` of the
    /// name-sorted model list (every file of a model goes to the same part). A partial database.
    pub part: Option<(usize, usize)>,
    /// The checkpoint entry to read from files whose meta row has no [`ENTRY_COLUMN`] cell;
    /// `None`: each file's default entry.
    pub entry: Option<String>,
}

/// Meta column naming the checkpoint entry that holds a model (`model_ema`, `D`, ...); empty
/// cells take the default entry.
pub const ENTRY_COLUMN: &str = "Entry";

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            meta: None,
            name_column: "Name".to_string(),
            formats: Vec::new(),
            kernel: KernelSelect::DEFAULT,
            force: false,
            files: Vec::new(),
            part: None,
            entry: None,
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
    /// Read, but it holds no convolution layer of the stored kernel size (e.g. an image
    /// archive beside the models): not a model for this database.
    Skipped,
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
            Outcome::Skipped => "skipped",
        }
    }

    /// The outcome of a `status.csv` label.
    pub fn from_label(label: &str) -> Option<Outcome> {
        [
            Outcome::Added,
            Outcome::Unchanged,
            Outcome::Failed,
            Outcome::Duplicate,
            Outcome::MissingFile,
            Outcome::NoMetaRow,
            Outcome::Removed,
            Outcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.label() == label)
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
    if let Some((i, n)) = opts.part {
        if n == 0 || i >= n {
            return Err(DbError::Selection(format!(
                "--part {i}/{n}: expected I/N with 0 <= I < N"
            )));
        }
    }
    let partial = !opts.files.is_empty() || opts.part.is_some();
    let files = if opts.files.is_empty() {
        find_models(zoo_dir).map_err(|e| DbError::Io(zoo_dir.to_path_buf(), e))?
    } else {
        resolve_listed(zoo_dir, &opts.files)?
    };
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
    if let Some((i, n)) = opts.part {
        by_name = by_name
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, e)| e)
            .collect();
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
                    detail: "meta table row without a model file among the files built".into(),
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
    let manifest = super::BuildManifest {
        db_format: super::DB_FORMAT,
        convlens: env!("CARGO_PKG_VERSION").to_string(),
        kernel: opts.kernel.to_string(),
        formats: {
            let mut f: Vec<String> = opts
                .formats
                .iter()
                .map(|f| f.to_ascii_lowercase())
                .collect();
            f.sort();
            f.dedup();
            f
        },
        name_column: if meta.is_some() {
            opts.name_column.clone()
        } else {
            String::new()
        },
        meta_columns: meta.as_ref().map(|m| m.columns.clone()).unwrap_or_default(),
        meta_blake3: match &opts.meta {
            Some(p) => file_blake3(p).map_err(|e| DbError::Io(p.clone(), e))?,
            None => String::new(),
        },
    };
    // records of a database built with other kernel sizes or another layout are not reused
    let same_settings = match super::BuildManifest::read(db_dir) {
        Ok(old) => old.kernel == manifest.kernel && old.db_format == manifest.db_format,
        Err(_) => true,
    };
    let existing = super::load_records(db_dir)?;
    let existing: BTreeMap<String, ModelRecord> =
        existing.into_iter().map(|r| (r.name.clone(), r)).collect();
    let total = chosen.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // (name, file, record with the new shards when it was freshly read, or the failure)
    type Processed = (
        String,
        PathBuf,
        Result<(ModelRecord, Option<PendingShards>), NotStored>,
    );
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
            let entry_asked = meta_row
                .iter()
                .find(|(k, v)| k == ENTRY_COLUMN && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_string())
                .or_else(|| opts.entry.clone());
            let reuse = existing.get(name).filter(|old| {
                !opts.force
                    && same_settings
                    && old.entry_asked == entry_asked
                    && old.file == r
                    && !old.blake3.is_empty()
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
                    Ok((rec, None))
                }
                None => process_model(name, path, &r, db_dir, opts.kernel, meta_row, entry_asked)
                    .map(|(rec, pending)| (rec, Some(pending))),
            };
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(d, total, name);
            (name.clone(), path.clone(), res)
        })
        .collect();
    let mut in_db: BTreeSet<String> = BTreeSet::new();
    for (name, path, res) in results {
        match res {
            Ok((rec, pending)) => {
                let file = models_dir.join(format!("{name}.json"));
                let fresh = pending.is_some();
                if let Some(pending) = pending {
                    let text = match serde_json::to_vec_pretty(&rec) {
                        Ok(t) => t,
                        Err(e) => {
                            pending.discard();
                            return Err(DbError::Io(file.clone(), e.into()));
                        }
                    };
                    // the new shards and the record replace the old ones one right after the
                    // other; shards of kernel sizes the model no longer has are deleted
                    pending.commit().map_err(|e| DbError::Io(file.clone(), e))?;
                    super::write_atomic(&file, &text)?;
                    if let Some(old) = existing.get(&name) {
                        for k in &old.kernels {
                            if !rec.kernels.iter().any(|n| n.shard == k.shard) {
                                let _ = std::fs::remove_file(db_dir.join(&k.shard));
                            }
                        }
                    }
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
            Err(e) => {
                // a failed model must not linger from an earlier build
                remove_model(db_dir, existing.get(&name));
                let (outcome, detail) = match e {
                    NotStored::Failed(r) => (Outcome::Failed, r),
                    NotStored::NoLayers(r) => (Outcome::Skipped, r),
                };
                // the reason names the file as the database does (relative to the zoo
                // folder), so that it does not depend on where the zoo was mounted
                let full = path.to_string_lossy();
                let detail = if full.is_empty() {
                    detail
                } else {
                    detail.replace(full.as_ref(), &rel(&path))
                };
                status.push(StatusEntry {
                    model: name.clone(),
                    file: rel(&path),
                    outcome,
                    detail,
                });
            }
        }
    }
    for (name, old) in &existing {
        if !in_db.contains(name)
            && !status.iter().any(|s| {
                &s.model == name && matches!(s.outcome, Outcome::Failed | Outcome::Skipped)
            })
        {
            remove_model(db_dir, Some(old));
            status.push(StatusEntry {
                model: name.clone(),
                file: old.file.clone(),
                outcome: Outcome::Removed,
                detail: if partial {
                    "its file is not among the files of this build".into()
                } else {
                    "its file is no longer in the zoo folder".into()
                },
            });
        }
    }
    status.sort_by(|a, b| (&a.model, &a.outcome, &a.file).cmp(&(&b.model, &b.outcome, &b.file)));
    remove_empty_kernel_dirs(db_dir);
    let db = super::Db::open(db_dir)?;
    db.write_tables(&status)?;
    super::write_atomic(&db_dir.join(super::MANIFEST_FILE), &manifest.to_bytes())?;
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

/// Deletes kernel folders of `filters/` left empty (by models that failed after their shards
/// were created), so that the folder only depends on the stored models.
pub(crate) fn remove_empty_kernel_dirs(db_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(db_dir.join(FILTERS_DIR)) {
        for e in entries.flatten() {
            // succeeds only for an empty folder
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

fn remove_model(db_dir: &Path, rec: Option<&ModelRecord>) {
    if let Some(rec) = rec {
        for k in &rec.kernels {
            let _ = std::fs::remove_file(db_dir.join(&k.shard));
        }
        let _ = std::fs::remove_file(db_dir.join(MODELS_DIR).join(format!("{}.json", rec.name)));
    }
}
