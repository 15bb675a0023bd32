//! One model, end to end: read → extract → measure → aggregate by depth.

use crate::depth::{AggregateAcc, DepthAggregate, DepthBin, ALL_BINS};
use crate::extract::{extract, ConvLayer, KernelSelect, Skipped};
use crate::measure::{measure_layer, LayerMetrics, LayerShape};
use crate::read::{entry_of, read_with, ReadError, ReadOptions};
use convlens_core::{Checkpoint, KernelLayout};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why a model could not be analysed; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum AnalyseError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A layer's weights cannot be measured.
    #[error("{}: layer {layer:?}: {reason}", path.display())]
    BadLayer {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// The file holds no convolution layer at all.
    #[error("{}: no convolution layer found ({tensors} tensors{})", path.display(), if skipped.is_empty() { String::new() } else { format!("; skipped: {}", skipped.join("; ")) })]
    NoConvLayers {
        /// The file.
        path: PathBuf,
        /// Number of tensors in the file.
        tensors: usize,
        /// Skipped entries with reasons.
        skipped: Vec<String>,
    },
}

/// A layer with its metrics.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Weight tensor name.
    pub weight_name: String,
    /// Operator.
    pub op: &'static str,
    /// True for transposed convolutions.
    pub transposed: bool,
    /// Kernel size (kh, kw).
    pub kernel: [usize; 2],
    /// Weight shape as stored.
    pub shape: [usize; 4],
    /// Output channels.
    pub out_channels: usize,
    /// Input channels per group.
    pub in_channels: usize,
    /// Groups, where known.
    pub groups: Option<usize>,
    /// Number of 2-D filters.
    pub filters: usize,
    /// Strides, where known.
    pub strides: Option<Vec<i64>>,
    /// Dilations, where known.
    pub dilations: Option<Vec<i64>>,
    /// Pads, where known.
    pub pads: Option<Vec<i64>>,
    /// Graph depth or order index.
    pub depth: usize,
    /// Rank among the distinct convolution depths.
    pub conv_depth: Option<usize>,
    /// Normalised depth in [0, 1].
    pub conv_depth_norm: Option<f64>,
    /// Depth group (`first` or a decile label).
    pub depth_group: Option<DepthBin>,
    /// Largest |w| of the layer.
    pub layer_norm: f64,
    /// Share of sparse filters (paper rule: l∞ ≤ layer max / 100).
    pub sparsity: f64,
    /// Sparse filters.
    pub sparse_filters: usize,
    /// Non-sparse filters.
    pub nonsparse_filters: usize,
    /// Variance entropy of the l∞-scaled non-sparse filters (base 10).
    pub variance_entropy: f64,
    /// Orthogonality of the output channels.
    pub orthogonality: f64,
    /// Mean orthogonality within groups (grouped convolutions).
    pub orthogonality_per_group: Option<f64>,
    /// Σ|w|.
    pub l1_norm: f64,
    /// sqrt(Σw²).
    pub l2_norm: f64,
    /// Mean l2 norm of the 2-D filters.
    pub mean_filter_l2: f64,
    /// torchconvquality 0.3.0 variants.
    pub tcq: crate::measure::TcqMetrics,
    /// Count, Σx and Σxxᵀ of the l∞-scaled non-sparse filters (see
    /// [`LayerMetrics::basis_moments`]). Not serialised.
    #[serde(skip)]
    pub basis_moments: Option<crate::numeric::Moments>,
}

/// A depth group of one model with its aggregate metrics.
#[derive(Debug, Clone, Serialize)]
pub struct DepthGroupReport {
    /// Kernel size the group aggregates.
    pub kernel: [usize; 2],
    /// Depth group.
    pub group: DepthBin,
    /// Aggregates.
    #[serde(flatten)]
    pub agg: DepthAggregate,
}

/// Everything convlens knows about one model file.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The file as given.
    pub file: String,
    /// Container format.
    pub format: &'static str,
    /// The checkpoint entry the model was read from (PyTorch checkpoints whose model is an
    /// entry of the file), with the other candidates in `notes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Where depth comes from.
    pub depth_source: String,
    /// Distinct convolution depths.
    pub n_conv_depths: usize,
    /// Forward convolution layers (any kernel size) found.
    pub n_conv_layers: usize,
    /// Transposed convolution layers found (not ranked in depth).
    pub n_transposed_layers: usize,
    /// Analysed layers (the selected kernel sizes).
    pub layers: Vec<LayerReport>,
    /// Per-model aggregates by depth group.
    pub depth_groups: Vec<DepthGroupReport>,
    /// Entries not analysed, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks from the reader.
    pub notes: Vec<String>,
}

/// Checks that a layer's weights can be measured, returning them in OIHW order.
pub fn checked_weights(layer: &ConvLayer) -> Result<Vec<f32>, String> {
    check_nonempty(layer)?;
    let w = layer.weights_oihw();
    check_finite(&w)?;
    Ok(w)
}

fn check_nonempty(layer: &ConvLayer) -> Result<(), String> {
    if layer.n_filters == 0 || layer.kh == 0 || layer.kw == 0 {
        return Err(format!(
            "weight has zero elements (shape {:?})",
            layer.shape
        ));
    }
    Ok(())
}

fn check_finite(w: &[f32]) -> Result<(), String> {
    // blocks without early exit inside, so that the test vectorises
    if w.chunks(4096)
        .all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()))
    {
        return Ok(());
    }
    let bad = w.iter().filter(|x| !x.is_finite()).count();
    Err(format!(
        "weight has {bad} non-finite value(s) (NaN or ±inf) among {}",
        w.len()
    ))
}

fn measure(
    layer: &ConvLayer,
    after: &dyn Fn(&ConvLayer) -> Result<(), String>,
) -> Result<LayerMetrics, String> {
    check_nonempty(layer)?;
    // transposed convolutions are measured per output channel: OIHW view
    let (out, inpg) = if layer.transposed {
        (layer.shape[1], layer.shape[0])
    } else {
        (layer.out_channels, layer.in_per_group)
    };
    let shape = LayerShape {
        out_channels: out,
        in_per_group: inpg,
        kh: layer.kh,
        kw: layer.kw,
        groups: if layer.transposed {
            1
        } else {
            layer.groups.unwrap_or(1)
        },
    };
    // OIHW f32 weights straight from the file's bytes when they are stored exactly so (no
    // copy), otherwise converted. Either way the file pages of the weight are handed back as
    // soon as they are no longer read, so that a large model does not stay resident.
    match layer.weight.as_f32_slice() {
        Some(w) if layer.layout == KernelLayout::OIHW => {
            layer.weight.populate_storage();
            let result = check_finite(w)
                .map(|()| measure_layer(w, &shape))
                .and_then(|m| after(layer).map(|()| m));
            layer.weight.release_storage();
            result
        }
        _ => {
            let w = layer.weights_oihw();
            layer.weight.release_storage();
            check_finite(&w)
                .map(|()| measure_layer(&w, &shape))
                .and_then(|m| after(layer).map(|()| m))
        }
    }
}

/// Analyses an already-read checkpoint.
pub fn analyse_checkpoint(
    path: &Path,
    ckpt: &Checkpoint,
    kernel: KernelSelect,
) -> Result<ModelReport, AnalyseError> {
    analyse_checkpoint_with(path, ckpt, kernel, &|_, _| Ok(()))
}

/// A function called on every measured layer with its position among the selected layers
/// (the order of [`ModelReport::layers`]); an error fails the layer like a bad weight.
pub type LayerHook<'a> = dyn Fn(usize, &ConvLayer) -> Result<(), String> + Sync + 'a;

/// [`analyse_checkpoint`] calling `after(i, layer)` on each selected layer right after it is
/// measured, while its weights are still mapped in (e.g. to copy them elsewhere); layers are
/// measured in parallel, so the calls come in any order.
pub fn analyse_checkpoint_with(
    path: &Path,
    ckpt: &Checkpoint,
    kernel: KernelSelect,
    after: &LayerHook<'_>,
) -> Result<ModelReport, AnalyseError> {
    let ex = extract(ckpt);
    if ex.layers.is_empty() {
        return Err(AnalyseError::NoConvLayers {
            path: path.to_path_buf(),
            tensors: ckpt.tensors.len(),
            skipped: ex
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect(),
        });
    }
    let selected: Vec<&ConvLayer> = ex.selected(kernel).collect();
    let metrics: Vec<Result<LayerMetrics, String>> = selected
        .par_iter()
        .enumerate()
        .map(|(i, l)| measure(l, &|l| after(i, l)))
        .collect();
    let mut layers = Vec::with_capacity(selected.len());
    for (l, m) in selected.iter().zip(metrics) {
        let m = m.map_err(|reason| AnalyseError::BadLayer {
            path: path.to_path_buf(),
            layer: l.name.clone(),
            reason,
        })?;
        let depth_group = match (l.conv_depth, l.conv_depth_norm) {
            (Some(d), Some(n)) => DepthBin::of(d, n),
            _ => None,
        };
        layers.push(LayerReport {
            name: l.name.clone(),
            weight_name: l.weight_name.clone(),
            op: l.op,
            transposed: l.transposed,
            kernel: [l.kh, l.kw],
            shape: l.shape,
            out_channels: l.out_channels,
            in_channels: l.in_per_group,
            groups: l.groups,
            filters: l.n_filters,
            strides: l.strides.clone(),
            dilations: l.dilations.clone(),
            pads: l.pads.clone(),
            depth: l.depth,
            conv_depth: l.conv_depth,
            conv_depth_norm: l.conv_depth_norm,
            depth_group,
            layer_norm: m.layer_norm,
            sparsity: m.sparsity,
            sparse_filters: m.sparse_filters,
            nonsparse_filters: m.n_nonsparse,
            variance_entropy: m.variance_entropy,
            orthogonality: m.orthogonality,
            orthogonality_per_group: m.orthogonality_per_group,
            l1_norm: m.l1_norm,
            l2_norm: m.l2_norm,
            mean_filter_l2: m.mean_filter_l2,
            tcq: m.tcq,
            basis_moments: m.basis_moments,
        });
    }
    let depth_groups = aggregate_by_depth(&layers);
    Ok(ModelReport {
        file: path.display().to_string(),
        format: ckpt.format.name(),
        entry: entry_of(ckpt).filter(|e| !e.is_empty()).map(str::to_string),
        depth_source: ex.depth_source.clone(),
        n_conv_depths: ex.n_conv_depths,
        n_conv_layers: ex.layers.iter().filter(|l| !l.transposed).count(),
        n_transposed_layers: ex.layers.iter().filter(|l| l.transposed).count(),
        layers,
        depth_groups,
        skipped: ex.skipped,
        notes: ckpt.notes.clone(),
    })
}

/// Per-model aggregates by (kernel size, depth group), in kernel then depth order.
pub fn aggregate_by_depth(layers: &[LayerReport]) -> Vec<DepthGroupReport> {
    let mut kernels: Vec<[usize; 2]> = layers.iter().map(|l| l.kernel).collect();
    kernels.sort();
    kernels.dedup();
    let mut out = Vec::new();
    for k in kernels {
        for bin in ALL_BINS {
            let mut acc = AggregateAcc::default();
            let mut any = false;
            for l in layers
                .iter()
                .filter(|l| l.kernel == k && l.depth_group == Some(bin))
            {
                any = true;
                acc.add(
                    l.filters,
                    l.sparse_filters,
                    l.nonsparse_filters,
                    l.variance_entropy,
                    l.orthogonality,
                    l.out_channels,
                );
            }
            if any {
                out.push(DepthGroupReport {
                    kernel: k,
                    group: bin,
                    agg: acc.finish(),
                });
            }
        }
    }
    out
}

/// Reads and analyses one model file.
pub fn analyse_file(path: &Path, kernel: KernelSelect) -> Result<ModelReport, AnalyseError> {
    analyse_file_with(path, kernel, &ReadOptions::default())
}

/// [`analyse_file`] with read options (which checkpoint entry holds the model).
pub fn analyse_file_with(
    path: &Path,
    kernel: KernelSelect,
    opts: &ReadOptions,
) -> Result<ModelReport, AnalyseError> {
    let ckpt = read_with(path, opts)?;
    analyse_checkpoint(path, &ckpt, kernel)
}

/// Layer count and filter count of one kernel size.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTotal {
    /// Kernel size (kh, kw).
    pub kernel: [usize; 2],
    /// Layers with this kernel size.
    pub layers: usize,
    /// 2-D filters with this kernel size.
    pub filters: usize,
}

/// The convolution layers of one model file, without metrics.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The file as given.
    pub file: String,
    /// Container format.
    pub format: &'static str,
    /// The checkpoint entry the model was read from (PyTorch checkpoints whose model is an
    /// entry of the file), with the other candidates in `notes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Where depth comes from.
    pub depth_source: String,
    /// Distinct convolution depths.
    pub n_conv_depths: usize,
    /// The selected layers.
    pub layers: Vec<ConvLayer>,
    /// Totals per kernel size (of the selected layers).
    pub totals: Vec<KernelTotal>,
    /// Entries not analysed, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks from the reader.
    pub notes: Vec<String>,
}

/// Lists the convolution layers of an already-read checkpoint.
pub fn inspect_checkpoint(path: &Path, ckpt: &Checkpoint, kernel: KernelSelect) -> InspectReport {
    let ex = extract(ckpt);
    let layers: Vec<ConvLayer> = ex.selected(kernel).cloned().collect();
    let mut totals: Vec<KernelTotal> = Vec::new();
    for l in &layers {
        let k = [l.kh, l.kw];
        match totals.iter_mut().find(|t| t.kernel == k) {
            Some(t) => {
                t.layers += 1;
                t.filters += l.n_filters;
            }
            None => totals.push(KernelTotal {
                kernel: k,
                layers: 1,
                filters: l.n_filters,
            }),
        }
    }
    totals.sort_by_key(|t| t.kernel);
    InspectReport {
        file: path.display().to_string(),
        format: ckpt.format.name(),
        entry: entry_of(ckpt).filter(|e| !e.is_empty()).map(str::to_string),
        depth_source: ex.depth_source,
        n_conv_depths: ex.n_conv_depths,
        layers,
        totals,
        skipped: ex.skipped,
        notes: ckpt.notes.clone(),
    }
}

/// Reads a model file and lists its convolution layers.
pub fn inspect_file(path: &Path, kernel: KernelSelect) -> Result<InspectReport, ReadError> {
    inspect_file_with(path, kernel, &ReadOptions::default())
}

/// [`inspect_file`] with read options (which checkpoint entry holds the model).
pub fn inspect_file_with(
    path: &Path,
    kernel: KernelSelect,
    opts: &ReadOptions,
) -> Result<InspectReport, ReadError> {
    let ckpt = read_with(path, opts)?;
    Ok(inspect_checkpoint(path, &ckpt, kernel))
}
