//! `db merge`: combines partial databases (built from disjoint sets of models, anywhere) into
//! one database, byte-identical to a single `db build` of all their files.
//!
//! Everything in a database is either per model (record, shards, status rows) or derived from
//! the name-sorted list of models (model and layer tables, global filter ids), so a merge copies
//! the per-model parts and derives the rest exactly as a build does. The only status rows that
//! depend on the whole set of files are the meta-table rows without a file: a merged database
//! keeps those that every input reports.

use super::build::{preference, Outcome, StatusEntry};
use super::record::ModelRecord;
use super::shard::read_header;
use super::{BuildManifest, Db, DbError, FILTERS_DIR, MANIFEST_FILE, MODELS_DIR};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Result of a merge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    /// Models in the merged database.
    pub models: usize,
    /// Models found in more than one input with identical contents (stored once).
    pub deduplicated: Vec<String>,
    /// Filters per kernel size.
    pub filters: Vec<([usize; 2], u64)>,
    /// The merged status rows.
    pub status: Vec<StatusEntry>,
}

/// One input database, read.
struct Input {
    dir: PathBuf,
    models: Vec<ModelRecord>,
    status: Vec<StatusEntry>,
}

/// Reads the `status.csv` of a database.
pub fn read_status(db_dir: &Path) -> Result<Vec<StatusEntry>, DbError> {
    let p = db_dir.join("status.csv");
    let t =
        convlens_table::Table::read_csv(&p, false).map_err(|e| DbError::Table(e.to_string()))?;
    let col = |name: &str| -> Result<&[Option<String>], DbError> {
        t.column(name).and_then(|c| c.as_str()).ok_or_else(|| {
            DbError::Record(p.clone(), format!("status table has no {name:?} column"))
        })
    };
    let (model, file, outcome, detail) =
        (col("model")?, col("file")?, col("outcome")?, col("detail")?);
    let cell = |c: &[Option<String>], r: usize| c[r].clone().unwrap_or_default();
    (0..t.n_rows())
        .map(|r| {
            let label = cell(outcome, r);
            Ok(StatusEntry {
                model: cell(model, r),
                file: cell(file, r),
                outcome: Outcome::from_label(&label).ok_or_else(|| {
                    DbError::Record(
                        p.clone(),
                        format!("row {}: unknown outcome {label:?}", r + 2),
                    )
                })?,
                detail: cell(detail, r),
            })
        })
        .collect()
}

/// True for a status row that claims the model for its database (its chosen file, whatever
/// became of it).
fn claims(e: &StatusEntry) -> bool {
    matches!(
        e.outcome,
        Outcome::Added
            | Outcome::Unchanged
            | Outcome::NoMetaRow
            | Outcome::Failed
            | Outcome::Skipped
    )
}

/// A model name usable as a file name inside the database.
fn check_name(dir: &Path, rec: &ModelRecord) -> Result<(), DbError> {
    let n = &rec.name;
    if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\']) {
        return Err(DbError::Record(
            dir.join(MODELS_DIR),
            format!("model name {n:?} is not a file name"),
        ));
    }
    for k in &rec.kernels {
        let want = format!("{FILTERS_DIR}/{}x{}/{n}.npy", k.kernel[0], k.kernel[1]);
        if k.shard != want {
            return Err(DbError::Record(
                dir.join(MODELS_DIR).join(format!("{n}.json")),
                format!("shard path {:?} is not {want:?}", k.shard),
            ));
        }
    }
    Ok(())
}

/// How the shards of the inputs get into the merged database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardTransfer {
    /// Copied (the inputs can be deleted afterwards).
    #[default]
    Copy,
    /// Hard-linked: no data is moved (the inputs must be on the merged database's file system).
    /// Builds replace shards by renaming new files, never by writing into them, so a later
    /// rebuild of an input does not change the merged database.
    HardLink,
}

/// Merges the databases `inputs` into the new database `out` (absent or an empty folder),
/// copying the shards.
///
/// Refuses inputs built with different settings ([`BuildManifest`]) and a model in several
/// inputs unless every copy was stored from a file with the same BLAKE3 hash (then it is kept
/// once, from the file a single build would have chosen).
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeReport, DbError> {
    merge_with(inputs, out, ShardTransfer::Copy)
}

/// [`merge`], with the shards copied or hard-linked.
pub fn merge_with(
    inputs: &[PathBuf],
    out: &Path,
    transfer: ShardTransfer,
) -> Result<MergeReport, DbError> {
    if inputs.is_empty() {
        return Err(DbError::Merge("no input databases".into()));
    }
    match std::fs::read_dir(out) {
        Ok(mut e) => {
            if e.next().is_some() {
                return Err(DbError::Merge(format!(
                    "{}: output folder exists and is not empty; choose a new one",
                    out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DbError::Io(out.to_path_buf(), e)),
    }
    // settings
    let manifest = BuildManifest::read(&inputs[0])?;
    for dir in &inputs[1..] {
        let m = BuildManifest::read(dir)?;
        let d = manifest.differences(&m);
        if !d.is_empty() {
            return Err(DbError::Merge(format!(
                "{} and {} were built with different settings ({}); rebuild one with the other's",
                inputs[0].display(),
                dir.display(),
                d.join("; ")
            )));
        }
    }
    let mut read = Vec::with_capacity(inputs.len());
    for dir in inputs {
        let db = Db::open(dir)?;
        for r in &db.models {
            check_name(dir, r)?;
        }
        if let Some(w) = db.models.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(DbError::Record(
                dir.join(MODELS_DIR),
                format!("two records of model {:?}", w[0].name),
            ));
        }
        read.push(Input {
            dir: dir.clone(),
            models: db.models,
            status: read_status(dir)?,
        });
    }
    // every stored model must be claimed by its own status table
    for inp in &read {
        let listed: BTreeSet<&str> = inp
            .status
            .iter()
            .filter(|e| e.outcome.in_db())
            .map(|e| e.model.as_str())
            .collect();
        for r in &inp.models {
            if !listed.contains(r.name.as_str()) {
                return Err(DbError::Record(
                    inp.dir.join("status.csv"),
                    format!(
                        "model {:?} is stored but not listed as in the database (rebuild it)",
                        r.name
                    ),
                ));
            }
        }
    }
    // which input claims which model
    let mut claimed: BTreeMap<&str, Vec<(usize, &StatusEntry)>> = BTreeMap::new();
    for (i, inp) in read.iter().enumerate() {
        for e in inp.status.iter().filter(|e| claims(e)) {
            claimed.entry(e.model.as_str()).or_default().push((i, e));
        }
    }
    // (records are sorted by name)
    let stored = |i: usize, name: &str| {
        let models = &read[i].models;
        models
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|k| &models[k])
    };
    // the kept copy of every stored model: (input, record)
    let mut kept: BTreeMap<String, (usize, &ModelRecord)> = BTreeMap::new();
    let mut dropped_rows: BTreeSet<(String, String)> = BTreeSet::new();
    let mut extra_rows = Vec::new();
    let mut deduplicated = Vec::new();
    for (name, claims) in &claimed {
        let mut inputs_of: Vec<usize> = claims.iter().map(|c| c.0).collect();
        inputs_of.dedup();
        if inputs_of.len() == 1 {
            if let Some(r) = stored(inputs_of[0], name) {
                kept.insert(name.to_string(), (inputs_of[0], r));
            }
            continue;
        }
        let describe = |&(i, e): &(usize, &StatusEntry)| {
            let hash = stored(i, name).map(|r| r.blake3.as_str()).unwrap_or("");
            format!(
                "{}: {} {}{}",
                read[i].dir.display(),
                e.outcome.label(),
                e.file,
                if hash.is_empty() {
                    String::new()
                } else {
                    format!(" (BLAKE3 {hash})")
                }
            )
        };
        let copies: Vec<(usize, &ModelRecord)> = inputs_of
            .iter()
            .filter_map(|&i| stored(i, name).map(|r| (i, r)))
            .collect();
        let same_content = copies.len() == inputs_of.len()
            && !copies[0].1.blake3.is_empty()
            && copies.iter().all(|(_, r)| r.blake3 == copies[0].1.blake3);
        let same_failure = copies.is_empty()
            && claims.iter().all(|(_, e)| {
                (&e.file, &e.outcome, &e.detail)
                    == (&claims[0].1.file, &claims[0].1.outcome, &claims[0].1.detail)
            });
        if same_failure {
            continue;
        }
        if !same_content {
            return Err(DbError::Merge(format!(
                "model {name:?} is in several inputs with different contents ({}); build each model in one partial database only",
                claims.iter().map(describe).collect::<Vec<_>>().join("; ")
            )));
        }
        // identical contents: keep the file a single build would choose
        let best = copies
            .iter()
            .min_by(|a, b| {
                (preference(Path::new(&a.1.file)), a.1.mtime_ns, a.0).cmp(&(
                    preference(Path::new(&b.1.file)),
                    b.1.mtime_ns,
                    b.0,
                ))
            })
            .copied()
            .ok_or_else(|| DbError::Merge(format!("model {name:?}: no stored copy")))?;
        let mut files_seen = BTreeSet::new();
        for (_, r) in &copies {
            if r.file != best.1.file && files_seen.insert(r.file.clone()) {
                dropped_rows.insert((name.to_string(), r.file.clone()));
                extra_rows.push(StatusEntry {
                    model: name.to_string(),
                    file: r.file.clone(),
                    outcome: Outcome::Duplicate,
                    detail: format!("same model name as {}, which is used", best.1.file),
                });
            }
        }
        deduplicated.push(name.to_string());
        kept.insert(name.to_string(), best);
    }
    // status: meta rows without a file that every input reports, every other row once
    let mut missing: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut rows: BTreeSet<(String, Outcome, String, String)> = BTreeSet::new();
    for inp in &read {
        for e in &inp.status {
            if e.outcome == Outcome::MissingFile {
                *missing
                    .entry((e.model.clone(), e.detail.clone()))
                    .or_default() += 1;
            } else if !(claims(e) && dropped_rows.contains(&(e.model.clone(), e.file.clone()))) {
                rows.insert((
                    e.model.clone(),
                    e.outcome.clone(),
                    e.file.clone(),
                    e.detail.clone(),
                ));
            }
        }
    }
    for ((model, detail), n) in missing {
        if n == read.len() && !claimed.contains_key(model.as_str()) {
            rows.insert((model, Outcome::MissingFile, String::new(), detail));
        }
    }
    for e in extra_rows {
        rows.insert((e.model, e.outcome, e.file, e.detail));
    }
    let status: Vec<StatusEntry> = rows
        .into_iter()
        .map(|(model, outcome, file, detail)| StatusEntry {
            model,
            file,
            outcome,
            detail,
        })
        .collect();
    // write: records and shards, then the settings and the tables
    let models_dir = out.join(MODELS_DIR);
    std::fs::create_dir_all(&models_dir).map_err(|e| DbError::Io(models_dir.clone(), e))?;
    let kept: Vec<(usize, &ModelRecord)> = kept.into_values().collect();
    let mut kernel_dirs = BTreeSet::new();
    for (_, r) in &kept {
        for k in &r.kernels {
            kernel_dirs.insert(k.kernel);
        }
    }
    for k in kernel_dirs {
        let d = out.join(FILTERS_DIR).join(format!("{}x{}", k[0], k[1]));
        std::fs::create_dir_all(&d).map_err(|e| DbError::Io(d.clone(), e))?;
    }
    kept.par_iter()
        .try_for_each(|(i, r)| copy_model(&read[*i].dir, out, r, transfer))?;
    super::write_atomic(&out.join(MANIFEST_FILE), &manifest.to_bytes())?;
    let db = Db::open(out)?;
    db.write_tables(&status)?;
    let mut filters: BTreeMap<[usize; 2], u64> = BTreeMap::new();
    for m in &db.models {
        for k in &m.kernels {
            *filters.entry(k.kernel).or_default() += k.n_filters;
        }
    }
    Ok(MergeReport {
        models: db.models.len(),
        deduplicated,
        filters: filters.into_iter().collect(),
        status,
    })
}

/// Copies a model's record (its bytes as stored) and shards, checking each shard's header and
/// size against the record.
fn copy_model(
    from: &Path,
    to: &Path,
    rec: &ModelRecord,
    transfer: ShardTransfer,
) -> Result<(), DbError> {
    for k in &rec.kernels {
        let src = from.join(&k.shard);
        let bad = |what: String| DbError::Record(src.clone(), what);
        let mut f = std::fs::File::open(&src).map_err(|e| DbError::Io(src.clone(), e))?;
        let taps = read_header(&mut f, &src, k.n_filters, k.kernel[0], k.kernel[1])
            .map_err(|e| DbError::Io(src.clone(), e))?;
        let header = super::shard::npy_header(&[k.n_filters as usize, k.kernel[0], k.kernel[1]])
            .len() as u64;
        let want = k
            .n_filters
            .checked_mul(taps as u64 * 4)
            .and_then(|b| b.checked_add(header))
            .ok_or_else(|| bad("shard size overflows".into()))?;
        let len = f.metadata().map_err(|e| DbError::Io(src.clone(), e))?.len();
        if len != want {
            return Err(bad(format!(
                "shard is {len} bytes, its record says {want} (rebuild that database)"
            )));
        }
        drop(f);
        let dst = to.join(&k.shard);
        match transfer {
            ShardTransfer::Copy => std::fs::copy(&src, &dst).map(|_| ()),
            ShardTransfer::HardLink => std::fs::hard_link(&src, &dst),
        }
        .map_err(|e| DbError::Io(dst.clone(), e))?;
    }
    let name = format!("{}.json", rec.name);
    let src = from.join(MODELS_DIR).join(&name);
    let dst = to.join(MODELS_DIR).join(&name);
    std::fs::copy(&src, &dst).map_err(|e| DbError::Io(dst.clone(), e))?;
    Ok(())
}
