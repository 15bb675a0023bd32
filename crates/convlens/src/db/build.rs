//! `db build`: turns a folder of checkpoints plus a meta table into a filter database.

use super::record::{KernelShard, LayerRecord, ModelRecord};
use super::shard::npy_header;
use super::{DbError, FILTERS_DIR, MODELS_DIR};
use crate::extract::{extract, KernelSelect};
use crate::numeric::Moments;
use crate::quality::analyse_checkpoint_with;
use crate::read::{entry_of, find_models, model_name, read_with, ReadOptions};
use convlens_core::KernelLayout;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
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
fn resolve_listed(zoo_dir: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>, DbError> {
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

/// One shard being written: a temporary file, sized up front, that becomes the shard on
/// success; layers are written at their own offsets as soon as they are measured.
struct ShardOut {
    tmp: PathBuf,
    file: PathBuf,
    out: File,
    /// Bytes of the `.npy` header.
    header: u64,
    /// Filters announced in the header.
    n: u64,
    /// Filters written so far.
    written: std::sync::atomic::AtomicU64,
}

/// Where a selected layer goes: its kernel size and first filter in that kernel's shard.
#[derive(Clone, Copy)]
struct Slot {
    kernel: [usize; 2],
    start: u64,
}

/// Writes `bytes` at `offset` of `f` (positioned write: layers arrive from several threads).
fn write_at(f: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(bytes, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut bytes, mut offset) = (bytes, offset);
        while !bytes.is_empty() {
            let n = f.seek_write(bytes, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// Bytes per positioned write: the source stays in cache between the copy into the page cache
/// and the next piece.
const WRITE_PIECE: usize = 1 << 16;

/// Writes the f32 values `data` at `offset` of `f` as little-endian bytes (converted a piece at
/// a time and written by [`write_bytes_at`]).
fn write_f32s_at(f: &File, data: &[f32], offset: u64) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(WRITE_PIECE);
    let mut at = offset;
    for chunk in data.chunks(WRITE_PIECE / 4) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        write_bytes_at(f, &buf, at)?;
        at += buf.len() as u64;
    }
    Ok(())
}

/// Writes `bytes` at `offset` of `f` in pieces that end on multiples of [`WRITE_PIECE`] in the
/// file, so that every piece but the first and last covers whole pages of the page cache
/// (nothing to zero or read around it).
fn write_bytes_at(f: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    let mut rest = bytes;
    while !rest.is_empty() {
        let to_boundary = WRITE_PIECE - (at % WRITE_PIECE as u64) as usize;
        let (piece, tail) = rest.split_at(to_boundary.min(rest.len()));
        write_at(f, piece, at)?;
        at += piece.len() as u64;
        rest = tail;
    }
    Ok(())
}

/// The shards of one model being written.
struct ShardSet {
    shards: BTreeMap<[usize; 2], ShardOut>,
    slots: Vec<Slot>,
}

impl ShardSet {
    /// Creates one temporary shard per kernel size of `layers`, sized for all their filters.
    fn create(
        name: &str,
        db_dir: &Path,
        layers: &[&crate::extract::ConvLayer],
    ) -> Result<ShardSet, String> {
        let mut totals: BTreeMap<[usize; 2], u64> = BTreeMap::new();
        let mut slots = Vec::with_capacity(layers.len());
        for l in layers {
            let kernel = [l.kh, l.kw];
            let t = totals.entry(kernel).or_default();
            slots.push(Slot { kernel, start: *t });
            *t += l.n_filters as u64;
        }
        let mut set = ShardSet {
            shards: BTreeMap::new(),
            slots,
        };
        match set.create_files(name, db_dir, &totals) {
            Ok(()) => Ok(set),
            Err(e) => {
                set.remove();
                Err(e)
            }
        }
    }

    /// Creates the temporary shard files with their headers, `totals` filters each.
    fn create_files(
        &mut self,
        name: &str,
        db_dir: &Path,
        totals: &BTreeMap<[usize; 2], u64>,
    ) -> Result<(), String> {
        for (&kk, &n) in totals {
            let dir = db_dir
                .join(FILTERS_DIR)
                .join(format!("{}x{}", kk[0], kk[1]));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let file = dir.join(format!("{name}.npy"));
            let tmp = file.with_extension("npy.tmp");
            let out = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            // registered before anything else can fail, so that `remove` deletes it
            let header = npy_header(&[n as usize, kk[0], kk[1]]);
            self.shards.insert(
                kk,
                ShardOut {
                    tmp: tmp.clone(),
                    file,
                    out,
                    header: header.len() as u64,
                    n,
                    written: std::sync::atomic::AtomicU64::new(0),
                },
            );
            let Some(s) = self.shards.get(&kk) else {
                continue;
            };
            let bytes = n
                .checked_mul((kk[0] * kk[1]) as u64 * 4)
                .and_then(|b| b.checked_add(s.header));
            let Some(bytes) = bytes else {
                return Err(format!("{}: shard size overflows", tmp.display()));
            };
            s.out
                .set_len(bytes)
                .and_then(|()| write_at(&s.out, &header, 0))
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        Ok(())
    }

    /// Writes selected layer `i` (its filters in stored order) into its shard.
    fn write_layer(&self, i: usize, l: &crate::extract::ConvLayer) -> Result<(), String> {
        let Some(slot) = self.slots.get(i) else {
            return Err(format!("{}: layer {i} not planned", l.name));
        };
        let Some(out) = self.shards.get(&slot.kernel) else {
            return Err(format!("{}: no shard for {:?}", l.name, slot.kernel));
        };
        if [l.kh, l.kw] != slot.kernel {
            return Err(format!("{}: kernel differs from the plan", l.name));
        }
        let k = l.kh * l.kw;
        // a filter is `kh*kw` consecutive values only when the kernel's H and W are the last
        // two axes (OIHW, or IOHW of a transposed convolution); other layouts are stored in
        // OIHW order, the order the layer's metrics and basis sums were computed in
        let hw_last = matches!(l.layout, KernelLayout::OIHW | KernelLayout::IOHW);
        let owned;
        let filters: &[f32] = match l.weight.as_f32_slice() {
            Some(w) if hw_last => w,
            _ if hw_last => {
                owned = l.filters();
                &owned
            }
            _ => {
                owned = l.weights_oihw();
                &owned
            }
        };
        let n_layer = (filters.len() / k.max(1)) as u64;
        if n_layer != l.n_filters as u64 || slot.start + n_layer > out.n {
            return Err(format!(
                "{}: {n_layer} filters do not fit the shard",
                l.name
            ));
        }
        let offset = out.header + slot.start * k as u64 * 4;
        let whole = &filters[..n_layer as usize * k];
        let written =
            if cfg!(target_endian = "little") && hw_last && l.weight.as_f32_slice().is_some() {
                // the file's bytes already are little-endian float32 in this order
                let span = l.weight.byte_span();
                let bytes = l
                    .weight
                    .storage()
                    .as_slice()
                    .get(span.start..span.start + whole.len() * 4);
                match bytes {
                    Some(b) => write_bytes_at(&out.out, b, offset),
                    None => write_f32s_at(&out.out, whole, offset),
                }
            } else {
                write_f32s_at(&out.out, whole, offset)
            };
        written.map_err(|e| format!("{}: {e}", out.tmp.display()))?;
        out.written
            .fetch_add(n_layer, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the temporary files.
    fn remove(&self) {
        for s in self.shards.values() {
            let _ = std::fs::remove_file(&s.tmp);
        }
    }
}

/// Bytes read per block by [`file_blake3`].
const HASH_BLOCK: usize = 256 << 10;

/// BLAKE3 of a file (hex), read in blocks of [`HASH_BLOCK`] bytes (a copy that stays in the
/// cache is cheaper than mapping the pages in and out again).
fn file_blake3(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut h = blake3::Hasher::new();
    if len == 0 {
        return Ok(h.finalize().to_hex().to_string());
    }
    // read in blocks small enough to stay in the cache between the copy and the hash
    let mut file = file;
    let mut buf = vec![0u8; HASH_BLOCK];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Extracts, measures and stores one model; returns its record.
/// Why a file is not stored.
enum NotStored {
    /// It could not be read or analysed.
    Failed(String),
    /// It has no convolution layer of the selected kernel size.
    NoLayers(String),
}

impl From<String> for NotStored {
    fn from(s: String) -> Self {
        NotStored::Failed(s)
    }
}

fn process_model(
    name: &str,
    path: &Path,
    rel: &str,
    db_dir: &Path,
    kernel: KernelSelect,
    meta: Vec<(String, String)>,
    entry_asked: Option<String>,
) -> Result<(ModelRecord, PendingShards), NotStored> {
    let fmeta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ckpt =
        read_with(path, &ReadOptions::entry(entry_asked.as_deref())).map_err(|e| e.to_string())?;
    let ex = extract(&ckpt);
    // the analysed layers, in the same order as report.layers
    let layers: Vec<_> = ex.selected(kernel).collect();
    if layers.is_empty() {
        let mut sizes: Vec<String> = ex
            .layers
            .iter()
            .map(|l| format!("{}x{}", l.kh, l.kw))
            .collect();
        sizes.dedup();
        return Err(NotStored::NoLayers(format!(
            "no convolution layer of the stored kernel size (4-D weights found: {}); not a model for this database",
            if sizes.is_empty() { "none".to_string() } else { sizes.join(", ") }
        )));
    }
    // the hash of the bytes that are read (before anything is written)
    let blake3 = file_blake3(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // start reading the whole model from disk while the first layers are measured
    for l in &layers {
        l.weight.prefetch_storage();
    }
    let set = ShardSet::create(name, db_dir, &layers)?;
    let finish = || -> Result<_, NotStored> {
        let report = analyse_checkpoint_with(path, &ckpt, kernel, &|i, l| set.write_layer(i, l))
            .map_err(|e| e.to_string())?;
        if report.layers.len() != set.slots.len() {
            return Err(format!(
                "{} layers measured, {} planned",
                report.layers.len(),
                set.slots.len()
            )
            .into());
        }
        let mut records = Vec::with_capacity(layers.len());
        let mut per_kernel: BTreeMap<[usize; 2], (u64, Moments)> = BTreeMap::new();
        for (m, slot) in report.layers.iter().zip(&set.slots) {
            let k = slot.kernel[0] * slot.kernel[1];
            let entry = per_kernel
                .entry(slot.kernel)
                .or_insert_with(|| (0, Moments::new(k)));
            entry.0 += m.sparse_filters as u64;
            // transposed convolutions are stored but not part of the basis (no depth rank)
            match (&m.basis_moments, m.transposed) {
                (_, true) => {}
                (Some(lm), false) => entry.1.merge(lm),
                (None, false) => {
                    return Err(format!(
                        "{}: {}x{} kernels are too large for the filter basis (at most {} taps)",
                        m.name,
                        slot.kernel[0],
                        slot.kernel[1],
                        crate::measure::MAX_SPECTRUM_TAPS
                    )
                    .into())
                }
            }
            records.push(LayerRecord {
                name: m.name.clone(),
                weight_name: m.weight_name.clone(),
                op: m.op.to_string(),
                transposed: m.transposed,
                kernel: m.kernel,
                shape: m.shape,
                out_channels: m.out_channels,
                in_channels: m.in_channels,
                groups: m.groups,
                depth: m.depth,
                conv_depth: m.conv_depth,
                conv_depth_norm: m.conv_depth_norm,
                depth_group: m.depth_group.map(|b| b.label()),
                shard_start: slot.start,
                shard_end: slot.start + m.filters as u64,
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
        for (kk, s) in &set.shards {
            let written = s.written.load(std::sync::atomic::Ordering::Relaxed);
            if written != s.n {
                return Err(
                    format!("{}: wrote {written} of {} filters", s.file.display(), s.n).into(),
                );
            }
            let (n_sparse, moments) = per_kernel
                .remove(kk)
                .unwrap_or_else(|| (0, Moments::new(kk[0] * kk[1])));
            shards.push(KernelShard {
                kernel: *kk,
                shard: format!("{FILTERS_DIR}/{}x{}/{name}.npy", kk[0], kk[1]),
                n_filters: s.n,
                n_sparse,
                moments,
            });
        }
        Ok((report, records, shards))
    };
    let (report, records, shards) = match finish() {
        Ok(r) => r,
        Err(e) => {
            set.remove();
            return Err(e);
        }
    };
    let pending = PendingShards(set.shards.into_values().map(|s| (s.tmp, s.file)).collect());
    let record = ModelRecord {
        name: name.to_string(),
        file: rel.to_string(),
        format: ckpt.format.name().to_string(),
        size: fmeta.len(),
        mtime_ns: mtime_ns(&fmeta),
        blake3,
        meta,
        entry: entry_of(&ckpt)
            .filter(|e| !e.is_empty())
            .map(str::to_string),
        entry_asked,
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
    };
    Ok((record, pending))
}

/// Finished shards of a model still under their temporary names: they replace the model's
/// shards only together with its record (see [`PendingShards::commit`]).
struct PendingShards(Vec<(PathBuf, PathBuf)>);

impl PendingShards {
    /// Renames the temporary files to their final names; on a failure, deletes every file of
    /// the set (renamed or not) and returns the error.
    fn commit(mut self) -> std::io::Result<()> {
        let files = std::mem::take(&mut self.0);
        for (i, (tmp, file)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, file) {
                for (j, (t, f)) in files.iter().enumerate() {
                    let _ = std::fs::remove_file(if j < i { f } else { t });
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.display()),
                ));
            }
        }
        Ok(())
    }

    /// Deletes the temporary files.
    fn discard(self) {}
}

impl Drop for PendingShards {
    /// Deletes the temporary files that were not committed (also when a build stops early).
    fn drop(&mut self) {
        for (tmp, _) in &self.0 {
            let _ = std::fs::remove_file(tmp);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_is_blake3_of_the_bytes_over_several_blocks() {
        let dir = std::env::temp_dir().join(format!("convlens-b3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // the published BLAKE3 test value of the empty input
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            file_blake3(&empty).unwrap(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        // 2.5 blocks of pseudo-random bytes: the block-wise hash is the hash of the whole
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let bytes: Vec<u8> = (0..HASH_BLOCK * 5 / 2 + 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let big = dir.join("big");
        std::fs::write(&big, &bytes).unwrap();
        assert_eq!(
            file_blake3(&big).unwrap(),
            blake3::hash(&bytes).to_hex().to_string()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
