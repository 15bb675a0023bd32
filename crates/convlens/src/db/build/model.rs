//! Processing one model: read, extract, hash, measure, write its filter shards and make its
//! record (or say why it is not stored).

use super::hash::{file_blake3, mtime_ns};
use super::shards::{PendingShards, ShardSet};
use crate::db::record::{KernelShard, LayerRecord, ModelRecord};
use crate::db::FILTERS_DIR;
use crate::extract::{extract, KernelSelect};
use crate::numeric::Moments;
use crate::quality::analyse_checkpoint_with;
use crate::read::{entry_of, read_with, ReadOptions};
use std::collections::BTreeMap;
use std::path::Path;

/// Why a file is not stored.
pub(super) enum NotStored {
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

/// Extracts, measures and stores one model; returns its record.
pub(super) fn process_model(
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
