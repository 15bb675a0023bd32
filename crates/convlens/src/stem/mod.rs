//! First-layer (stem) perturbation analysis: does the first convolution, with the ReLU after
//! it, remove an input perturbation?
//!
//! Gavrikov & Keuper observe that the first layer of adversarially robust models holds many
//! nearly identical filters whose weight sits in the centre tap (≈ 1×1 convolutions) and that,
//! with its ReLU, this layer removes much of an adversarial perturbation. This module measures
//! that for any model, without a deep-learning runtime:
//!
//! - [`StemModel::load`] finds the first layer of a checkpoint (the plain `Conv` reading the
//!   graph input for ONNX, see [`StemModel::from_checkpoint`] for files without a graph), folds
//!   the BatchNorm that follows it and records what was done in [`StemInfo`];
//! - [`StemModel::forward`] runs conv + ReLU; [`StemModel::perturbation`] measures, per filter
//!   and in total, how much a perturbation changes the activation before and after the ReLU;
//! - [`StemModel::filter_shapes`] measures the filters themselves (centre-tap share, pairwise
//!   cosine similarity, near-duplicates);
//! - [`StemModel::worst_case_gain`] finds the L∞-bounded perturbation that changes the stem's
//!   output most (projected gradient ascent on the stem alone);
//! - [`analyse`] and [`analyse_zoo`] put it together per model and per zoo, with the data of the
//!   figure (filter, clean activation, perturbed activation, difference) and a robust-vs-normal
//!   summary ([`zoo_summary`]).
//!
//! All sums are accumulated in `f64` in a fixed order: results do not depend on the number of
//! threads.

use crate::extract::{extract, ConvLayer};
use crate::read::{model_name, read_bytes_with, ReadError, ReadOptions};
use convlens_core::{Blob, Checkpoint, DType, GraphNode, RawTensor};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Largest kernel side of a stem.
pub const MAX_KERNEL: usize = 64;
/// Largest stride.
pub const MAX_STRIDE: usize = 64;
/// Largest dilation.
pub const MAX_DILATION: usize = 64;
/// Largest padding on one side.
pub const MAX_PAD: usize = 1024;
/// Largest number of input channels of a stem (and of images).
pub const MAX_IN_CHANNELS: usize = 4096;
/// Largest number of output channels of a stem.
pub const MAX_OUT_CHANNELS: usize = 1 << 16;
/// Largest image side.
pub const MAX_IMAGE_SIDE: usize = 1 << 14;
/// Largest number of activation values one call produces (images × channels × positions).
pub const MAX_ACTIVATIONS: usize = 1 << 27;
/// Largest number of projected-gradient steps.
pub const MAX_STEPS: usize = 100_000;
/// BatchNorm epsilon assumed when the file does not say (PyTorch's default).
pub const DEFAULT_BN_EPS: f64 = 1e-5;

/// Why a stem could not be analysed. Messages say what is wrong; the caller adds the file.
#[derive(Debug, thiserror::Error)]
pub enum StemError {
    /// The model file could not be read (the message names it).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file could not be opened.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The checkpoint holds no convolution weight at all.
    #[error("no convolution layer found ({0})")]
    NoConv(String),
    /// The first layer of the model is not a plain convolution.
    #[error("the first layer is not a plain convolution: {0}")]
    NotPlainConv(String),
    /// The first convolution cannot be analysed (shape, attributes, weights).
    #[error("unsupported first layer {layer:?}: {reason}")]
    Unsupported {
        /// Layer name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// The requested BatchNorm cannot be used.
    #[error("batch norm {name:?}: {reason}")]
    BatchNorm {
        /// Name prefix of the BatchNorm.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Images, perturbations or normalisation are unusable.
    #[error("images: {0}")]
    Images(String),
    /// An analysis option is out of range.
    #[error("invalid option: {0}")]
    Options(String),
}

fn unsupported(layer: &str, reason: impl Into<String>) -> StemError {
    StemError::Unsupported {
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

fn images_err(msg: impl Into<String>) -> StemError {
    StemError::Images(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Which BatchNorm to fold into the stem of a file without a graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BnChoice {
    /// Find it by the documented rules (see [`StemModel::from_checkpoint`]).
    #[default]
    Auto,
    /// Fold none.
    Off,
    /// Fold the BatchNorm whose tensors are `NAME.running_mean`, `NAME.running_var` and,
    /// optionally, `NAME.weight`, `NAME.bias`.
    Named(String),
}

/// How to load a stem.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Stride of the stem (files without a graph: default 1; with a graph: overrides it).
    pub stride: Option<usize>,
    /// Symmetric zero padding (files without a graph: default `k / 2`; with a graph: overrides
    /// it).
    pub padding: Option<usize>,
    /// Use the convolution whose layer or weight name is this instead of the first layer.
    pub layer: Option<String>,
    /// BatchNorm folding.
    pub bn: BnChoice,
    /// The checkpoint entry holding the model (PyTorch checkpoints with several models);
    /// `None`: the default entry.
    pub entry: Option<String>,
}

/// What was used as the stem and how it was set up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemInfo {
    /// Layer name (node name, or the weight name without `.weight`).
    pub layer: String,
    /// Name of the weight tensor.
    pub weight_name: String,
    /// Output channels (filters).
    pub out_channels: usize,
    /// Input channels of the layer (image channels).
    pub in_channels: usize,
    /// Groups.
    pub groups: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Zero padding (top, left, bottom, right).
    pub pads: [usize; 4],
    /// Dilation (vertical, horizontal).
    pub dilation: [usize; 2],
    /// Where stride and padding come from (graph attributes, options, or assumed).
    pub geometry: String,
    /// True when the layer has its own bias.
    pub has_bias: bool,
    /// The BatchNorm folded into the weights and bias, if any.
    pub batch_norm: Option<String>,
    /// How the BatchNorm was found, or why none was folded.
    pub batch_norm_rule: String,
    /// Operator(s) applied to the stem's output in the graph (after the folded BatchNorm), when
    /// the file has a graph.
    pub followed_by: Option<String>,
    /// Remarks (assumptions, other consumers of the input, ...).
    pub notes: Vec<String>,
}

/// The first convolution of a model, with any BatchNorm folded in, ready to run.
#[derive(Debug, Clone)]
pub struct StemModel {
    /// Model name (file name without format suffixes).
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// What was used and how.
    pub info: StemInfo,
    /// Effective weights (BatchNorm folded), OIHW (out, in/groups, kh, kw), C-contiguous.
    weight: Vec<f64>,
    /// Effective bias per output channel.
    bias: Vec<f64>,
}

/// BatchNorm parameters of one BatchNorm.
struct BnParams {
    scale: Vec<f64>,
    shift: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f64,
}

fn vec1(ckpt: &Checkpoint, name: &str, len: usize) -> Result<Option<Vec<f64>>, String> {
    let Some(t) = ckpt.tensor(name) else {
        return Ok(None);
    };
    if !t.dtype().is_float() {
        return Err(format!(
            "{name} has type {}, not floating point",
            t.dtype().name()
        ));
    }
    if t.shape() != [len] {
        return Err(format!(
            "{name} has shape {:?}, expected [{len}] (one value per output channel)",
            t.shape()
        ));
    }
    let v = t.to_f64();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(format!("{name} holds NaN or infinite values"));
    }
    Ok(Some(v))
}

/// The BatchNorm `prefix` for `len` channels: `prefix.running_mean` and `.running_var` are
/// required, `.weight` (1) and `.bias` (0) optional.
fn bn_group(ckpt: &Checkpoint, prefix: &str, len: usize, eps: f64) -> Result<BnParams, String> {
    let mean = vec1(ckpt, &format!("{prefix}.running_mean"), len)?
        .ok_or_else(|| format!("no tensor {prefix}.running_mean"))?;
    let var = vec1(ckpt, &format!("{prefix}.running_var"), len)?
        .ok_or_else(|| format!("no tensor {prefix}.running_var"))?;
    let scale = vec1(ckpt, &format!("{prefix}.weight"), len)?.unwrap_or_else(|| vec![1.0; len]);
    let shift = vec1(ckpt, &format!("{prefix}.bias"), len)?.unwrap_or_else(|| vec![0.0; len]);
    check_bn(mean, var, scale, shift, eps)
}

fn check_bn(
    mean: Vec<f64>,
    var: Vec<f64>,
    scale: Vec<f64>,
    shift: Vec<f64>,
    eps: f64,
) -> Result<BnParams, String> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(format!("epsilon {eps} is not a non-negative number"));
    }
    if let Some(v) = var.iter().find(|&&v| v + eps <= 0.0) {
        return Err(format!(
            "running variance {v} + epsilon {eps} is not positive"
        ));
    }
    Ok(BnParams {
        scale,
        shift,
        mean,
        var,
        eps,
    })
}

/// A complete BatchNorm group of `len` channels, or `None` (wrong size, incomplete, invalid).
fn try_bn(ckpt: &Checkpoint, prefix: &str, len: usize) -> Option<BnParams> {
    bn_group(ckpt, prefix, len, DEFAULT_BN_EPS).ok()
}

/// The BatchNorm names rule (a) tries for a layer: `P.(N+1)` for `P.N`, and `P.bnS` / `P.normS`
/// for `P.convS`.
fn sibling_names(layer: &str) -> Vec<String> {
    let (prefix, last) = match layer.rsplit_once('.') {
        Some((p, l)) => (format!("{p}."), l),
        None => (String::new(), layer),
    };
    let mut out = Vec::new();
    if let Ok(n) = last.parse::<u64>() {
        if let Some(m) = n.checked_add(1) {
            out.push(format!("{prefix}{m}"));
        }
    }
    if last.contains("conv") {
        out.push(format!("{prefix}{}", last.replacen("conv", "bn", 1)));
        out.push(format!("{prefix}{}", last.replacen("conv", "norm", 1)));
    }
    out
}

/// Finds the BatchNorm after the stem of a file without a graph. Returns the name, its
/// parameters and the rule that found it (or why none was found).
fn find_bn_graphless(
    ckpt: &Checkpoint,
    layer: &ConvLayer,
    has_bias: bool,
) -> (Option<(String, BnParams)>, String) {
    let out = layer.out_channels;
    // (a) by name
    for cand in sibling_names(&layer.name) {
        if let Some(p) = try_bn(ckpt, &cand, out) {
            return (
                Some((cand.clone(), p)),
                format!("found by name ({} → {cand})", layer.name),
            );
        }
    }
    // (b) the next BatchNorm after the weight in file order, before any other 4-D weight
    for t in ckpt.tensors.iter().skip(layer.order.saturating_add(1)) {
        if t.tensor.shape().len() == 4 && t.tensor.dtype().is_float() {
            break;
        }
        if let Some(prefix) = t.name.strip_suffix(".running_mean") {
            if t.tensor.shape().len() == 1 {
                if let Some(p) = try_bn(ckpt, prefix, out) {
                    return (
                        Some((prefix.to_string(), p)),
                        format!(
                            "the first BatchNorm after {} in file order ({})",
                            layer.weight_name, ckpt.order_source
                        ),
                    );
                }
                break;
            }
        }
    }
    // (c) names sorted alphabetically: the first BatchNorm of the stem's width, for a stem
    // without bias (a bias-free convolution is followed by a normalisation)
    if ckpt.order_source == convlens_safetensors::ORDER_NATURAL && !has_bias {
        for t in &ckpt.tensors {
            if let Some(prefix) = t.name.strip_suffix(".running_mean") {
                if let Some(p) = try_bn(ckpt, prefix, out) {
                    return (
                        Some((prefix.to_string(), p)),
                        format!(
                            "assumed: the first BatchNorm of {out} channels in the file (tensor names are sorted, so module order is unknown; the stem has no bias)"
                        ),
                    );
                }
            }
        }
    }
    (
        None,
        "none found (no BatchNorm named after the layer, none right after it in file order)"
            .to_string(),
    )
}

/// Ops that read a tensor's shape only: they do not transform the image.
fn shape_only(op: &str) -> bool {
    matches!(op, "Shape" | "Size")
}

fn geometry_usize(
    v: &[i64],
    n: usize,
    what: &str,
    lo: usize,
    hi: usize,
) -> Result<Vec<usize>, String> {
    if v.len() != n {
        return Err(format!("{what} {v:?} should have {n} values"));
    }
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|x| (lo..=hi).contains(x))
                .ok_or_else(|| format!("{what} {v:?} outside {lo}..={hi}"))
        })
        .collect()
}

impl StemModel {
    /// Reads a model file and sets up its stem (see [`StemModel::from_checkpoint`]).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<StemModel, StemError> {
        let bytes = std::fs::read(path).map_err(|source| StemError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let ckpt = read_bytes_with(
            path,
            Blob::from_vec(bytes),
            &ReadOptions::entry(opts.entry.as_deref()),
        )?;
        let mut m = Self::from_checkpoint(&model_name(path), &ckpt, opts)?;
        m.file = path.to_path_buf();
        Ok(m)
    }

    /// Sets up the stem of a parsed checkpoint (its graph, when it has one, tells which nodes
    /// read the input and follow the stem).
    ///
    /// **Which layer.** With a graph: the `Conv` node that reads a graph input directly;
    /// the analysis is refused, naming the operator, when no convolution reads the input (e.g.
    /// a `MaxPool` or normalising `Sub` comes first) or when it is a `ConvTranspose`,
    /// `ConvInteger` or `QLinearConv`. Without a graph: the first 4-D floating-point weight in
    /// file order; when the tensor names were sorted alphabetically (safetensors without
    /// `key_order`), the one with the fewest name components among those with 1, 3 or 4 input
    /// channels (image-like), ties in file order. `opts.layer` picks a layer by name.
    ///
    /// **Geometry.** With a graph: the node's `strides`, `pads`, `dilations` and `auto_pad`.
    /// Without one: stride 1, padding `k / 2` on every side and dilation 1 are assumed (the
    /// CIFAR convention), unless `opts.stride` / `opts.padding` say otherwise.
    ///
    /// **BatchNorm.** With a graph: a `BatchNormalization` node that is the only consumer of
    /// the conv's output is folded with its `epsilon` (exporters usually fold it already).
    /// Without a graph (epsilon 1e-5 assumed), the first rule that finds a complete BatchNorm
    /// (`running_mean`, `running_var`, optional `weight`, `bias`) of the stem's width wins:
    /// (a) by name: `P.(N+1)` for a layer `P.N` (`nn.Sequential`), `P.bnS` or `P.normS` for
    /// `P.convS`; (b) the first BatchNorm after the weight in file order, with no other 4-D
    /// weight between them; (c) only for alphabetically sorted names and a stem without bias:
    /// the first BatchNorm of the stem's width in the file (marked "assumed"). `opts.bn`
    /// disables folding or names the BatchNorm.
    pub fn from_checkpoint(
        name: &str,
        ckpt: &Checkpoint,
        opts: &LoadOptions,
    ) -> Result<StemModel, StemError> {
        let ex = extract(ckpt);
        let mut notes = Vec::new();
        let mut followed_by = None;
        let mut graph_bn: Option<(String, BnParams)> = None;
        let mut bn_rule = String::new();
        let layer: &ConvLayer = if let Some(wanted) = &opts.layer {
            if ckpt.graph.is_some() {
                bn_rule = "not looked for in the graph (layer chosen by name)".to_string();
            }
            ex.layers
                .iter()
                .find(|l| &l.name == wanted || &l.weight_name == wanted)
                .ok_or_else(|| {
                    StemError::NoConv(format!(
                        "no convolution named {wanted:?}; layers: {}",
                        ex.layers
                            .iter()
                            .take(8)
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?
        } else if let Some(graph) = &ckpt.graph {
            let nodes = (!graph.nodes.is_empty()).then_some(&graph.nodes);
            let feeds: Vec<&str> = graph.inputs.iter().map(String::as_str).collect();
            let reads_input = |n: &GraphNode| n.inputs.iter().any(|x| feeds.contains(&x.as_str()));
            match &nodes {
                Some(nodes) => {
                    let readers: Vec<(usize, &GraphNode)> = nodes
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| reads_input(n) && !shape_only(&n.op_type))
                        .collect();
                    let conv_reader = readers.iter().find(|(i, n)| {
                        graph.convs.iter().any(|c| c.node_index == *i)
                            && n.inputs
                                .first()
                                .is_some_and(|x| feeds.contains(&x.as_str()))
                    });
                    let Some(&(index, node)) = conv_reader else {
                        let found = if readers.is_empty() {
                            "no operator".to_string()
                        } else {
                            readers
                                .iter()
                                .map(|(i, n)| n.label(*i))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        return Err(StemError::NotPlainConv(format!(
                            "the graph input ({}) is read by {found}, not by a convolution; convlens stem needs the first layer to be a plain Conv",
                            graph.inputs.join(", ")
                        )));
                    };
                    if node.op_type != "Conv" {
                        return Err(StemError::NotPlainConv(format!(
                            "the input is read by {}; only a plain Conv can be analysed",
                            node.label(index)
                        )));
                    }
                    for (i, n) in &readers {
                        if *i != index {
                            notes.push(format!(
                                "the input is also read by {}, which is ignored",
                                n.label(*i)
                            ));
                        }
                    }
                    let layer = ex.layers.iter().find(|l| l.order == index).ok_or_else(|| {
                        let why = ex
                            .skipped
                            .iter()
                            .find(|s| s.name == node.name)
                            .map(|s| s.reason.clone())
                            .unwrap_or_else(|| "its weight could not be resolved".to_string());
                        unsupported(&node.name, why)
                    })?;
                    // what follows the conv
                    let consumers = |t: &str| -> Vec<(usize, &GraphNode)> {
                        nodes
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| n.inputs.iter().any(|x| x == t))
                            .collect()
                    };
                    let out_name = node.outputs.first().cloned().unwrap_or_default();
                    let mut after = consumers(&out_name);
                    let bns: Vec<(usize, &GraphNode)> = after
                        .iter()
                        .copied()
                        .filter(|(_, n)| n.op_type == "BatchNormalization")
                        .collect();
                    if let [(bi, bn)] = bns.as_slice() {
                        let others: Vec<String> = after
                            .iter()
                            .filter(|(i, _)| i != bi)
                            .map(|(i, n)| n.label(*i))
                            .collect();
                        if !others.is_empty() {
                            notes.push(format!(
                                "the stem's output also feeds {} without the BatchNorm (e.g. a pre-activation shortcut)",
                                others.join(", ")
                            ));
                        }
                        {
                            let eps = f64::from(
                                bn.float_attr("epsilon").unwrap_or(DEFAULT_BN_EPS as f32),
                            );
                            let label = bn.label(*bi);
                            if opts.bn == BnChoice::Off {
                                bn_rule =
                                    format!("{label} follows the stem; not folded (turned off)");
                            } else {
                                let p = (|| {
                                    let get = |k: usize| -> Result<Vec<f64>, String> {
                                        let n = bn.inputs.get(k).ok_or("missing input")?;
                                        vec1(ckpt, n, layer.out_channels)?
                                            .ok_or_else(|| format!("{n} is not a constant"))
                                    };
                                    check_bn(get(3)?, get(4)?, get(1)?, get(2)?, eps)
                                })();
                                match p {
                                    Ok(p) => {
                                        bn_rule = format!(
                                            "{label} reads the stem's output (epsilon {eps:e})"
                                        );
                                        graph_bn = Some((
                                            if bn.name.is_empty() {
                                                format!("node {bi}")
                                            } else {
                                                bn.name.clone()
                                            },
                                            p,
                                        ));
                                        let o = bn.outputs.first().cloned().unwrap_or_default();
                                        after = consumers(&o);
                                    }
                                    Err(e) => {
                                        bn_rule = format!(
                                            "{label} follows the stem but cannot be folded: {e}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                    let ops: Vec<&str> = after.iter().map(|(_, n)| n.op_type.as_str()).collect();
                    followed_by = Some(if ops.is_empty() {
                        "nothing".to_string()
                    } else {
                        ops.join(" + ")
                    });
                    if ops != ["Relu"] {
                        notes.push(format!(
                            "the network applies {} to the stem's output; the analysis uses a ReLU",
                            followed_by.as_deref().unwrap_or("?")
                        ));
                    }
                    layer
                }
                None => {
                    // cannot see the nodes: fall back to the reader's summary
                    notes.push("the graph's node list could not be read again: the first layer is the conv at the smallest graph depth".into());
                    if let Some(op) = graph
                        .first_ops
                        .iter()
                        .find(|o| !shape_only(o) && *o != "Conv")
                    {
                        return Err(StemError::NotPlainConv(format!(
                            "the graph input is read by {op}; convlens stem needs the first layer to be a plain Conv"
                        )));
                    }
                    ex.layers
                        .first()
                        .ok_or_else(|| StemError::NoConv(ex.depth_source.clone()))?
                }
            }
        } else {
            let image_like = |l: &&ConvLayer| matches!(l.in_per_group, 1 | 3 | 4);
            let chosen = if ckpt.order_source == convlens_safetensors::ORDER_NATURAL {
                let best = ex
                    .layers
                    .iter()
                    .filter(image_like)
                    .min_by_key(|l| (l.name.matches('.').count(), l.order));
                if best.is_some() {
                    notes.push("tensor names are sorted alphabetically: the stem is the image-like convolution (1, 3 or 4 input channels) with the shortest name path".into());
                }
                best.or(ex.layers.first())
            } else {
                ex.layers.first()
            };
            chosen.ok_or_else(|| {
                StemError::NoConv(format!(
                    "no 4-D floating-point weight in {} tensors",
                    ckpt.tensors.len()
                ))
            })?
        };
        Self::from_layer(
            name,
            ckpt,
            layer,
            opts,
            notes,
            followed_by,
            graph_bn,
            bn_rule,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn from_layer(
        name: &str,
        ckpt: &Checkpoint,
        layer: &ConvLayer,
        opts: &LoadOptions,
        mut notes: Vec<String>,
        followed_by: Option<String>,
        graph_bn: Option<(String, BnParams)>,
        mut bn_rule: String,
    ) -> Result<StemModel, StemError> {
        let lname = layer.name.as_str();
        if layer.op != "Conv" || layer.transposed {
            return Err(StemError::NotPlainConv(format!(
                "{lname} is a {}; only a plain Conv can be analysed",
                layer.op
            )));
        }
        let groups = layer.groups.unwrap_or(1).max(1);
        let (out, ipg, kh, kw) = (layer.out_channels, layer.in_per_group, layer.kh, layer.kw);
        if out == 0 || out > MAX_OUT_CHANNELS || out % groups != 0 {
            return Err(unsupported(
                lname,
                format!("{out} output channels in {groups} groups"),
            ));
        }
        let in_ch = ipg.saturating_mul(groups);
        if ipg == 0 || in_ch > MAX_IN_CHANNELS {
            return Err(unsupported(lname, format!("{in_ch} input channels")));
        }
        if kh == 0 || kw == 0 || kh > MAX_KERNEL || kw > MAX_KERNEL {
            return Err(unsupported(
                lname,
                format!("kernel {kh}x{kw} is outside 1..={MAX_KERNEL}"),
            ));
        }
        let mut weight: Vec<f64> = layer.weights_oihw().into_iter().map(f64::from).collect();
        if weight.iter().any(|w| !w.is_finite()) {
            return Err(unsupported(
                lname,
                "the weight holds NaN or infinite values",
            ));
        }
        let mut bias = match &layer.bias {
            Some(b) => {
                if !b.dtype().is_float() || b.numel() != out {
                    return Err(unsupported(
                        lname,
                        format!("bias of shape {:?} for {out} channels", b.shape()),
                    ));
                }
                let v = b.to_f64();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(unsupported(lname, "the bias holds NaN or infinite values"));
                }
                v
            }
            None => vec![0.0; out],
        };
        let has_bias = layer.bias.is_some();

        // geometry
        let graph = layer.strides.is_some();
        let (mut stride, mut pads, dilation, mut geometry) = if graph {
            let node = ckpt
                .graph
                .as_ref()
                .and_then(|g| g.convs.iter().find(|c| c.node_index == layer.order));
            let bad = |e: String| unsupported(lname, e);
            let strides = layer.strides.clone().unwrap_or_default();
            let stride = if strides.is_empty() {
                vec![1, 1]
            } else {
                geometry_usize(&strides, 2, "strides", 1, MAX_STRIDE).map_err(bad)?
            };
            let dil = layer.dilations.clone().unwrap_or_default();
            let dilation = if dil.is_empty() {
                vec![1, 1]
            } else {
                geometry_usize(&dil, 2, "dilations", 1, MAX_DILATION).map_err(bad)?
            };
            let auto = node.and_then(|n| n.auto_pad.clone()).unwrap_or_default();
            let p = layer.pads.clone().unwrap_or_default();
            let pads = match auto.as_str() {
                "" | "NOTSET" => {
                    if p.is_empty() {
                        vec![0; 4]
                    } else {
                        geometry_usize(&p, 4, "pads", 0, MAX_PAD).map_err(bad)?
                    }
                }
                "VALID" => vec![0; 4],
                "SAME_UPPER" | "SAME_LOWER" => Vec::new(), // resolved per image size
                other => return Err(unsupported(lname, format!("auto_pad {other:?}"))),
            };
            let pads4 = if pads.is_empty() {
                notes.push(format!(
                    "auto_pad {auto}: padding depends on the image size; computed for each input"
                ));
                [usize::MAX; 4]
            } else {
                [pads[0], pads[1], pads[2], pads[3]]
            };
            (
                [stride[0], stride[1]],
                pads4,
                [dilation[0], dilation[1]],
                "graph attributes".to_string(),
            )
        } else {
            (
                [1, 1],
                [kh / 2, kw / 2, kh / 2, kw / 2],
                [1, 1],
                format!(
                    "assumed (no graph): stride 1, padding {}x{} (k/2), dilation 1",
                    kh / 2,
                    kw / 2
                ),
            )
        };
        if let Some(s) = opts.stride {
            if s == 0 || s > MAX_STRIDE {
                return Err(StemError::Options(format!(
                    "stride {s} is outside 1..={MAX_STRIDE}"
                )));
            }
            stride = [s, s];
        }
        if let Some(p) = opts.padding {
            if p > MAX_PAD {
                return Err(StemError::Options(format!(
                    "padding {p} is outside 0..={MAX_PAD}"
                )));
            }
            pads = [p; 4];
        }
        if opts.stride.is_some() || opts.padding.is_some() {
            let what = if graph {
                "options (overriding the graph's attributes)".to_string()
            } else {
                "options".to_string()
            };
            geometry = format!(
                "{what}: stride {}, padding {}{}",
                stride[0],
                if pads[0] == usize::MAX {
                    "auto".to_string()
                } else {
                    pads[0].to_string()
                },
                if graph {
                    String::new()
                } else {
                    ", dilation 1".to_string()
                }
            );
        }

        // batch norm
        let bn: Option<(String, BnParams)> = match &opts.bn {
            BnChoice::Off => {
                if bn_rule.is_empty() {
                    bn_rule = "not folded (turned off)".to_string();
                }
                None
            }
            BnChoice::Named(prefix) => {
                let p = bn_group(ckpt, prefix, out, DEFAULT_BN_EPS).map_err(|reason| {
                    StemError::BatchNorm {
                        name: prefix.clone(),
                        reason,
                    }
                })?;
                bn_rule = "named in the options (epsilon 1e-5 assumed)".to_string();
                Some((prefix.clone(), p))
            }
            BnChoice::Auto if graph => {
                if bn_rule.is_empty() {
                    bn_rule = "none after the stem in the graph (an exporter may have folded it into the weights)".to_string();
                }
                graph_bn
            }
            BnChoice::Auto => {
                let (found, rule) = find_bn_graphless(ckpt, layer, has_bias);
                bn_rule = if found.is_some() {
                    format!("{rule}; epsilon 1e-5 assumed")
                } else {
                    rule
                };
                found
            }
        };
        if let Some((_, p)) = &bn {
            let per = weight.len() / out;
            for o in 0..out {
                let s = p.scale[o] / (p.var[o] + p.eps).sqrt();
                for w in &mut weight[o * per..(o + 1) * per] {
                    *w *= s;
                }
                bias[o] = (bias[o] - p.mean[o]) * s + p.shift[o];
            }
        }
        Ok(StemModel {
            name: name.to_string(),
            file: PathBuf::new(),
            info: StemInfo {
                layer: layer.name.clone(),
                weight_name: layer.weight_name.clone(),
                out_channels: out,
                in_channels: in_ch,
                groups,
                kh,
                kw,
                stride,
                pads,
                dilation,
                geometry,
                has_bias,
                batch_norm: bn.map(|(n, _)| n),
                batch_norm_rule: bn_rule,
                followed_by,
                notes,
            },
            weight,
            bias,
        })
    }

    /// A stem from explicit effective weights (OIHW, `out × in/groups × kh × kw`) and bias, for
    /// hand-built cases. Padding `(top, left, bottom, right)`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_weights(
        name: &str,
        weight: Vec<f64>,
        bias: Vec<f64>,
        shape: [usize; 4],
        groups: usize,
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
    ) -> Result<StemModel, StemError> {
        let [out, ipg, kh, kw] = shape;
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let ok = groups >= 1
            && (1..=MAX_OUT_CHANNELS).contains(&out)
            && out % groups == 0
            && ipg >= 1
            && ipg.saturating_mul(groups) <= MAX_IN_CHANNELS
            && (1..=MAX_KERNEL).contains(&kh)
            && (1..=MAX_KERNEL).contains(&kw)
            && n == Some(weight.len())
            && bias.len() == out
            && stride.iter().all(|s| (1..=MAX_STRIDE).contains(s))
            && dilation.iter().all(|d| (1..=MAX_DILATION).contains(d))
            && pads.iter().all(|p| *p <= MAX_PAD)
            && weight.iter().chain(&bias).all(|v| v.is_finite());
        if !ok {
            return Err(StemError::Options(format!(
                "inconsistent stem: shape {shape:?}, groups {groups}, {} weights, {} biases, stride {stride:?}, pads {pads:?}, dilation {dilation:?}",
                weight.len(),
                bias.len()
            )));
        }
        Ok(StemModel {
            name: name.to_string(),
            file: PathBuf::new(),
            info: StemInfo {
                layer: name.to_string(),
                weight_name: String::new(),
                out_channels: out,
                in_channels: ipg * groups,
                groups,
                kh,
                kw,
                stride,
                pads,
                dilation,
                geometry: "given".to_string(),
                has_bias: true,
                batch_norm: None,
                batch_norm_rule: "given".to_string(),
                followed_by: None,
                notes: Vec::new(),
            },
            weight,
            bias,
        })
    }

    /// Effective weights (BatchNorm folded), OIHW, C-contiguous.
    pub fn weights(&self) -> &[f64] {
        &self.weight
    }

    /// Effective bias per output channel.
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }

    /// Padding `(top, left, bottom, right)` for an `h × w` input (resolves `auto_pad`).
    pub fn pads_for(&self, h: usize, w: usize) -> [usize; 4] {
        if self.info.pads[0] != usize::MAX {
            return self.info.pads;
        }
        let same = |size: usize, s: usize, d: usize, k: usize| -> (usize, usize) {
            let out = size.div_ceil(s);
            let need = (out.saturating_sub(1) * s + d * (k - 1) + 1).saturating_sub(size);
            (need / 2, need - need / 2)
        };
        let (t, b) = same(h, self.info.stride[0], self.info.dilation[0], self.info.kh);
        let (l, r) = same(w, self.info.stride[1], self.info.dilation[1], self.info.kw);
        // SAME_UPPER puts the extra pixel at the end (the only flavour exporters write)
        [t, l, b, r]
    }

    /// Output size `(ho, wo)` for an `h × w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize), StemError> {
        let p = self.pads_for(h, w);
        let i = &self.info;
        let o = |size: usize, a: usize, b: usize, d: usize, k: usize, s: usize| -> Option<usize> {
            let padded = size.checked_add(a)?.checked_add(b)?;
            let span = d.checked_mul(k - 1)?.checked_add(1)?;
            padded.checked_sub(span).map(|x| x / s + 1)
        };
        match (
            o(h, p[0], p[2], i.dilation[0], i.kh, i.stride[0]),
            o(w, p[1], p[3], i.dilation[1], i.kw, i.stride[1]),
        ) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(images_err(format!(
                "a {h}x{w} image is smaller than the {}x{} kernel (padding {p:?}, dilation {:?})",
                i.kh, i.kw, i.dilation
            ))),
        }
    }

    fn check_batch(&self, b: &Batch<'_>) -> Result<Geometry, StemError> {
        // the fields are public: check them again
        Batch::new(b.data, b.n, b.c, b.h, b.w)?;
        if b.c != self.info.in_channels {
            return Err(images_err(format!(
                "the images have {} channel(s) but the stem {} expects {}",
                b.c, self.info.layer, self.info.in_channels
            )));
        }
        let (ho, wo) = self.output_size(b.h, b.w)?;
        let per = self
            .info
            .out_channels
            .checked_mul(ho)
            .and_then(|x| x.checked_mul(wo));
        match per.and_then(|p| p.checked_mul(b.n)) {
            Some(t) if t <= MAX_ACTIVATIONS => {}
            _ => {
                return Err(images_err(format!(
                    "{} images give more than {MAX_ACTIVATIONS} activation values",
                    b.n
                )))
            }
        }
        Ok(Geometry {
            h: b.h,
            w: b.w,
            ho,
            wo,
            pads: self.pads_for(b.h, b.w),
        })
    }

    /// Pre-activation of one normalised image (`c × h × w`) into `out` (`O × ho × wo`).
    fn conv_image(&self, g: &Geometry, x: &[f64], out: &mut [f64]) {
        let i = &self.info;
        let (o_n, groups) = (i.out_channels, i.groups);
        let (opg, ipg) = (o_n / groups, i.in_channels / groups);
        let (kh, kw, sx) = (i.kh, i.kw, i.stride[1]);
        let plane = g.ho * g.wo;
        let ranges: Vec<(usize, usize, usize)> = (0..kw).map(|kx| g.x_range(i, kx)).collect();
        for o in 0..o_n {
            let c0 = (o / opg) * ipg;
            let wo_ = &self.weight[o * ipg * kh * kw..(o + 1) * ipg * kh * kw];
            let dst = &mut out[o * plane..(o + 1) * plane];
            dst.fill(self.bias[o]);
            for ci in 0..ipg {
                let src = &x[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
                for ky in 0..kh {
                    for oy in 0..g.ho {
                        let Some(iy) = g.in_y(i, oy, ky) else {
                            continue;
                        };
                        let row = &src[iy * g.w..(iy + 1) * g.w];
                        let drow = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                        for (kx, &(lo, hi, first)) in ranges.iter().enumerate() {
                            let wv = wo_[(ci * kh + ky) * kw + kx];
                            if wv == 0.0 || lo >= hi {
                                continue;
                            }
                            let d = &mut drow[lo..hi];
                            if sx == 1 {
                                for (d, &v) in d.iter_mut().zip(&row[first..first + (hi - lo)]) {
                                    *d += wv * v;
                                }
                            } else {
                                for (j, d) in d.iter_mut().enumerate() {
                                    *d += wv * row[first + j * sx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Gradient with respect to the normalised input of `Σ gz · conv(x)` (a transposed
    /// convolution without bias), into `gx` (`c × h × w`).
    fn conv_transpose_image(&self, g: &Geometry, gz: &[f64], gx: &mut [f64]) {
        let i = &self.info;
        let (o_n, groups) = (i.out_channels, i.groups);
        let (opg, ipg) = (o_n / groups, i.in_channels / groups);
        let (kh, kw, sx) = (i.kh, i.kw, i.stride[1]);
        let plane = g.ho * g.wo;
        let ranges: Vec<(usize, usize, usize)> = (0..kw).map(|kx| g.x_range(i, kx)).collect();
        gx.fill(0.0);
        for o in 0..o_n {
            let c0 = (o / opg) * ipg;
            let wo_ = &self.weight[o * ipg * kh * kw..(o + 1) * ipg * kh * kw];
            let src = &gz[o * plane..(o + 1) * plane];
            for ci in 0..ipg {
                let dst = &mut gx[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
                for ky in 0..kh {
                    for oy in 0..g.ho {
                        let Some(iy) = g.in_y(i, oy, ky) else {
                            continue;
                        };
                        let srow = &src[oy * g.wo..(oy + 1) * g.wo];
                        let drow = &mut dst[iy * g.w..(iy + 1) * g.w];
                        for (kx, &(lo, hi, first)) in ranges.iter().enumerate() {
                            let wv = wo_[(ci * kh + ky) * kw + kx];
                            if wv == 0.0 || lo >= hi {
                                continue;
                            }
                            let s = &srow[lo..hi];
                            if sx == 1 {
                                for (d, &v) in drow[first..first + (hi - lo)].iter_mut().zip(s) {
                                    *d += wv * v;
                                }
                            } else {
                                for (j, &v) in s.iter().enumerate() {
                                    drow[first + j * sx] += wv * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs the stem (conv with bias, BatchNorm folded) and a ReLU on network inputs (already
    /// normalised), `n × c × h × w`. Activations are computed in `f64` and returned as `f32`.
    pub fn forward(&self, x: &Batch<'_>) -> Result<Activations, StemError> {
        let g = self.check_batch(x)?;
        let per = self.info.out_channels * g.ho * g.wo;
        let pre: Vec<Vec<f32>> = (0..x.n)
            .into_par_iter()
            .map(|k| {
                let img: Vec<f64> = x.image(k).iter().map(|&v| f64::from(v)).collect();
                let mut z = vec![0.0; per];
                self.conv_image(&g, &img, &mut z);
                z.into_iter().map(|v| v as f32).collect()
            })
            .collect();
        let pre: Vec<f32> = pre.concat();
        let post = pre.iter().map(|&v| v.max(0.0)).collect();
        Ok(Activations {
            n: x.n,
            channels: self.info.out_channels,
            h: g.ho,
            w: g.wo,
            pre,
            post,
        })
    }

    /// Shape of the filters: centre-tap share and pairwise cosine similarity (effective
    /// weights), with `threshold` the cosine from which two filters count as near-duplicates.
    pub fn filter_shapes(&self, threshold: f64) -> Vec<FilterShape> {
        let i = &self.info;
        let per = self.weight.len() / i.out_channels;
        let (ys, xs) = (centre(i.kh), centre(i.kw));
        let norms: Vec<f64> = self
            .weight
            .chunks(per)
            .map(|f| f.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect();
        (0..i.out_channels)
            .into_par_iter()
            .map(|o| {
                let f = &self.weight[o * per..(o + 1) * per];
                let total: f64 = f.iter().map(|v| v * v).sum();
                let mut centre_e = 0.0;
                for c in 0..per / (i.kh * i.kw) {
                    for &y in &ys {
                        for &x in &xs {
                            let v = f[(c * i.kh + y) * i.kw + x];
                            centre_e += v * v;
                        }
                    }
                }
                let mut best: Option<(usize, f64)> = None;
                let mut dups = 0;
                for p in 0..i.out_channels {
                    if p == o || norms[o] == 0.0 || norms[p] == 0.0 {
                        continue;
                    }
                    let g = &self.weight[p * per..(p + 1) * per];
                    let dot: f64 = f.iter().zip(g).map(|(a, b)| a * b).sum();
                    let cos = dot / (norms[o] * norms[p]);
                    if cos >= threshold {
                        dups += 1;
                    }
                    if best.is_none_or(|(_, b)| cos > b) {
                        best = Some((p, cos));
                    }
                }
                FilterShape {
                    channel: o,
                    norm: norms[o],
                    centre_share: (total > 0.0).then(|| centre_e / total),
                    max_similarity: best.map(|b| b.1),
                    most_similar: best.map(|b| b.0),
                    near_duplicates: dups,
                }
            })
            .collect()
    }

    /// Per-filter sums of one image pair (clean, perturbed), both normalised network inputs.
    fn pair_sums(&self, g: &Geometry, clean: &[f64], pert: &[f64]) -> Vec<ChannelSums> {
        let per = self.info.out_channels * g.ho * g.wo;
        let mut z = vec![0.0; per];
        let mut zp = vec![0.0; per];
        self.conv_image(g, clean, &mut z);
        self.conv_image(g, pert, &mut zp);
        channel_sums(&z, &zp, self.info.out_channels)
    }

    /// How much a perturbation changes the stem's activation, per filter and in total.
    /// `clean` and `perturbed` are images in [0, 1] (same shape); `norm` turns them into network
    /// inputs.
    pub fn perturbation(
        &self,
        clean: &Batch<'_>,
        perturbed: &Batch<'_>,
        norm: &Normalization,
    ) -> Result<Perturbation, StemError> {
        if (clean.n, clean.c, clean.h, clean.w)
            != (perturbed.n, perturbed.c, perturbed.h, perturbed.w)
        {
            return Err(images_err(format!(
                "clean images are {}x{}x{}x{} but perturbed ones {}x{}x{}x{}",
                clean.n,
                clean.c,
                clean.h,
                clean.w,
                perturbed.n,
                perturbed.c,
                perturbed.h,
                perturbed.w
            )));
        }
        let g = self.check_batch(clean)?;
        self.check_batch(perturbed)?;
        norm.check(clean.c)?;
        let sums: Vec<Vec<ChannelSums>> = (0..clean.n)
            .into_par_iter()
            .map(|k| {
                let a = norm.apply(clean.image(k));
                let b = norm.apply(perturbed.image(k));
                self.pair_sums(&g, &a, &b)
            })
            .collect();
        Ok(Perturbation::from_sums(&sums, self.info.out_channels))
    }

    /// The worst case for the stem alone: the perturbation δ with ‖δ‖∞ ≤ ε (and `x + δ` in
    /// [0, 1]) that maximises `Σ_images ‖relu(conv(x + δ)) − relu(conv(x))‖²`, found by
    /// projected gradient ascent with sign steps, separately for each image.
    ///
    /// Start: δ uniform in [−ε, ε] from a SplitMix64 generator seeded with `seed` and the
    /// image index (the gradient vanishes at δ = 0), projected; then `steps` steps of
    /// `step_size · sign(∇)`, each followed by the projection. The best δ seen (start
    /// included) is kept per image. Deterministic for a given seed, whatever the thread count;
    /// ε = 0 gives δ = 0 and a gain of 0. The objective is convex in the pre-activation, so the
    /// ascent ends in a local maximum: the gain is a lower bound of the true worst case.
    pub fn worst_case_gain(
        &self,
        clean: &Batch<'_>,
        norm: &Normalization,
        pgd: &PgdOptions,
    ) -> Result<WorstCase, StemError> {
        pgd.check()?;
        let g = self.check_batch(clean)?;
        norm.check(clean.c)?;
        let step = pgd.step_size();
        let per = self.info.out_channels * g.ho * g.wo;
        let results: Vec<(Vec<f32>, Vec<ChannelSums>)> = (0..clean.n)
            .into_par_iter()
            .map(|k| {
                let x = clean.image(k);
                let xn = norm.apply(x);
                let mut z = vec![0.0; per];
                self.conv_image(&g, &xn, &mut z);
                let mut rng = crate::numeric::Rng::new(
                    pgd.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let mut delta: Vec<f64> = x
                    .iter()
                    .map(|&xv| {
                        let d = (rng.next_f64() * 2.0 - 1.0) * pgd.eps;
                        project(f64::from(xv), d, pgd.eps)
                    })
                    .collect();
                let mut zp = vec![0.0; per];
                let mut gz = vec![0.0; per];
                let mut gx = vec![0.0; x.len()];
                let mut best = (-1.0f64, delta.clone());
                for t in 0..=pgd.steps {
                    let xpn = norm.apply_f64(x, &delta);
                    self.conv_image(&g, &xpn, &mut zp);
                    let mut loss = 0.0;
                    for ((gzv, &zv), &zpv) in gz.iter_mut().zip(&z).zip(&zp) {
                        let r = zpv.max(0.0) - zv.max(0.0);
                        loss += r * r;
                        *gzv = if zpv > 0.0 { 2.0 * r } else { 0.0 };
                    }
                    if loss > best.0 {
                        best = (loss, delta.clone());
                    }
                    if t == pgd.steps {
                        break;
                    }
                    self.conv_transpose_image(&g, &gz, &mut gx);
                    let hw = g.h * g.w;
                    for (idx, d) in delta.iter_mut().enumerate() {
                        let grad = gx[idx] / norm.std_of(idx / hw);
                        let s = if grad > 0.0 {
                            1.0
                        } else if grad < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        *d = project(f64::from(x[idx]), *d + step * s, pgd.eps);
                    }
                }
                let delta = best.1;
                let xpn = norm.apply_f64(x, &delta);
                self.conv_image(&g, &xpn, &mut zp);
                let sums = channel_sums(&z, &zp, self.info.out_channels);
                (delta.into_iter().map(|d| d as f32).collect(), sums)
            })
            .collect();
        let (deltas, sums): (Vec<Vec<f32>>, Vec<Vec<ChannelSums>>) = results.into_iter().unzip();
        let p = Perturbation::from_sums(&sums, self.info.out_channels);
        Ok(WorstCase {
            eps: pgd.eps,
            steps: pgd.steps,
            step_size: step,
            seed: pgd.seed,
            gain: p.total.post_change,
            perturbation: p,
            delta: deltas.concat(),
        })
    }
}

/// The centre rows (or columns) of a kernel side: the middle one for odd sizes, the middle two
/// for even sizes.
fn centre(k: usize) -> Vec<usize> {
    if k % 2 == 1 {
        vec![k / 2]
    } else {
        vec![k / 2 - 1, k / 2]
    }
}

/// `x + d` kept in [0, 1] and `d` in [−ε, ε]: the projected perturbation.
fn project(x: f64, d: f64, eps: f64) -> f64 {
    let d = d.clamp(-eps, eps);
    (x + d).clamp(0.0, 1.0) - x
}

/// Size information of one convolution call.
struct Geometry {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    pads: [usize; 4],
}

impl Geometry {
    #[inline]
    fn in_y(&self, i: &StemInfo, oy: usize, ky: usize) -> Option<usize> {
        (oy * i.stride[0] + ky * i.dilation[0])
            .checked_sub(self.pads[0])
            .filter(|&y| y < self.h)
    }
    /// The output columns `lo..hi` whose input column for kernel column `kx` lies inside the
    /// image, and the input column of `lo`.
    fn x_range(&self, i: &StemInfo, kx: usize) -> (usize, usize, usize) {
        let s = i.stride[1];
        let off = kx * i.dilation[1];
        let pl = self.pads[1];
        // ox·s + off − pl ∈ [0, w)
        let lo = pl.saturating_sub(off).div_ceil(s);
        let hi = (pl + self.w).saturating_sub(off).div_ceil(s).min(self.wo);
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, lo * s + off - pl)
    }
}

/// Sums of one filter over positions (and images): `Σz²`, `Σ(Δz)²`, `Σa²`, `Σ(Δa)²`, active
/// positions and positions.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelSums {
    z2: f64,
    dz2: f64,
    a2: f64,
    da2: f64,
    active: u64,
    count: u64,
}

fn channel_sums(z: &[f64], zp: &[f64], channels: usize) -> Vec<ChannelSums> {
    let plane = z.len() / channels.max(1);
    (0..channels)
        .map(|o| {
            let mut s = ChannelSums::default();
            for (&a, &b) in z[o * plane..(o + 1) * plane]
                .iter()
                .zip(&zp[o * plane..(o + 1) * plane])
            {
                let (ra, rb) = (a.max(0.0), b.max(0.0));
                s.z2 += a * a;
                s.dz2 += (b - a) * (b - a);
                s.a2 += ra * ra;
                s.da2 += (rb - ra) * (rb - ra);
                s.active += u64::from(a > 0.0);
                s.count += 1;
            }
            s
        })
        .collect()
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| (num / den).sqrt())
}

fn removed(da2: f64, dz2: f64) -> Option<f64> {
    (dz2 > 0.0).then(|| 1.0 - da2 / dz2)
}

// ---------------------------------------------------------------------------------------------
// Public data
// ---------------------------------------------------------------------------------------------

/// A batch of images or network inputs, `n × c × h × w`, C-contiguous.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl<'a> Batch<'a> {
    /// A batch view; checks that `data` holds `n·c·h·w` values within the caps.
    pub fn new(data: &'a [f32], n: usize, c: usize, h: usize, w: usize) -> Result<Self, StemError> {
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(images_err(format!("empty batch {n}x{c}x{h}x{w}")));
        }
        if c > MAX_IN_CHANNELS || h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
            return Err(images_err(format!(
                "batch {n}x{c}x{h}x{w} exceeds the caps ({MAX_IN_CHANNELS} channels, {MAX_IMAGE_SIDE} pixels per side)"
            )));
        }
        let len = [n, c, h, w]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(images_err(format!(
                "batch {n}x{c}x{h}x{w} needs {} values, got {}",
                len.map_or("too many".to_string(), |l| l.to_string()),
                data.len()
            )));
        }
        Ok(Batch { data, n, c, h, w })
    }

    /// Image `k` (`c × h × w` values).
    pub fn image(&self, k: usize) -> &'a [f32] {
        let per = self.c * self.h * self.w;
        &self.data[k * per..(k + 1) * per]
    }
}

/// Input normalisation `(x − mean[c]) / std[c]`, applied to images in [0, 1] before the stem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f64>,
    /// Standard deviation per channel.
    pub std: Vec<f64>,
    /// Where it comes from (options, meta table, image file, none).
    pub source: String,
}

impl Normalization {
    /// A normalisation; one value is broadcast to every channel later. Checks values.
    pub fn new(mean: Vec<f64>, std: Vec<f64>, source: &str) -> Result<Self, StemError> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(StemError::Options(format!(
                "mean has {} values and std {} (need the same number, one per channel)",
                mean.len(),
                std.len()
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(StemError::Options(format!(
                "mean {mean:?} / std {std:?}: means must be finite and stds positive"
            )));
        }
        Ok(Normalization {
            mean,
            std,
            source: source.to_string(),
        })
    }

    /// No normalisation (`mean 0, std 1`) for `c` channels.
    pub fn none(c: usize) -> Self {
        Normalization {
            mean: vec![0.0; c.max(1)],
            std: vec![1.0; c.max(1)],
            source: "none (images used as they are)".to_string(),
        }
    }

    /// Broadcasts a single value to `c` channels; errors when the count does not fit.
    fn check(&self, c: usize) -> Result<(), StemError> {
        if self.mean.len() != self.std.len()
            || self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(images_err(format!(
                "normalisation mean {:?} / std {:?} is not usable",
                self.mean, self.std
            )));
        }
        if self.mean.len() == c || self.mean.len() == 1 {
            Ok(())
        } else {
            Err(images_err(format!(
                "normalisation has {} values but the images have {c} channels",
                self.mean.len()
            )))
        }
    }

    fn at(&self, c: usize) -> (f64, f64) {
        let i = if self.mean.len() == 1 { 0 } else { c };
        (self.mean[i], self.std[i])
    }

    /// Normalises one image (`c × h × w`), channels given by position.
    fn apply(&self, img: &[f32]) -> Vec<f64> {
        self.apply_f64(img, &[])
    }

    /// Normalises `img + delta` (delta empty = 0).
    fn apply_f64(&self, img: &[f32], delta: &[f64]) -> Vec<f64> {
        let c = if self.mean.len() == 1 {
            1
        } else {
            self.mean.len()
        };
        let hw = img.len() / c;
        img.iter()
            .enumerate()
            .map(|(i, &v)| {
                let (m, s) = self.at(if c == 1 { 0 } else { i / hw });
                let d = delta.get(i).copied().unwrap_or(0.0);
                (f64::from(v) + d - m) / s
            })
            .collect()
    }

    /// Normalised copy of a batch (network inputs for [`StemModel::forward`]).
    pub fn apply_batch(&self, b: &Batch<'_>) -> Result<Vec<f32>, StemError> {
        self.check(b.c)?;
        Ok((0..b.n)
            .flat_map(|k| self.apply(b.image(k)).into_iter().map(|v| v as f32))
            .collect())
    }

    /// The standard deviation of channel `c`.
    fn std_of(&self, c: usize) -> f64 {
        self.at(c).1
    }
}

/// Pre- and post-ReLU activations of a batch, `n × channels × h × w`.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    /// Images.
    pub n: usize,
    /// Output channels.
    pub channels: usize,
    /// Output height.
    pub h: usize,
    /// Output width.
    pub w: usize,
    /// conv(x) + bias.
    pub pre: Vec<f32>,
    /// relu(pre).
    pub post: Vec<f32>,
}

/// Shape of one stem filter (effective weights).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FilterShape {
    /// Output channel.
    pub channel: usize,
    /// L2 norm of the filter.
    pub norm: f64,
    /// Share of the filter's energy (squared weights, all input channels) in its centre tap
    /// (the middle 2×2 for even sides): 1 for a 1×1-like filter. `None` for a zero filter.
    pub centre_share: Option<f64>,
    /// Largest cosine similarity to another filter of the stem.
    pub max_similarity: Option<f64>,
    /// The channel of that filter.
    pub most_similar: Option<usize>,
    /// Other filters with cosine similarity ≥ the threshold.
    pub near_duplicates: usize,
}

/// Change of one filter's activation (or of the whole stem) under a perturbation. Norms are
/// over all images and positions.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Change {
    /// ‖conv(x+δ) − conv(x)‖ / ‖conv(x)‖ (pre-ReLU, bias included in conv).
    pub pre_change: Option<f64>,
    /// ‖relu(conv(x+δ)) − relu(conv(x))‖ / ‖relu(conv(x))‖.
    pub post_change: Option<f64>,
    /// Share of the perturbation's energy the ReLU removes:
    /// `1 − ‖Δ post‖² / ‖Δ pre‖²` (in [0, 1]; the ReLU is 1-Lipschitz).
    pub relu_removed: Option<f64>,
    /// ‖Δ post‖² per image.
    pub post_energy: f64,
    /// Share of positive pre-activations on the clean images.
    pub active_share: Option<f64>,
}

impl Change {
    fn from(s: &ChannelSums, n: usize) -> Change {
        Change {
            pre_change: ratio(s.dz2, s.z2),
            post_change: ratio(s.da2, s.a2),
            relu_removed: removed(s.da2, s.dz2),
            post_energy: s.da2 / n.max(1) as f64,
            active_share: (s.count > 0).then(|| s.active as f64 / s.count as f64),
        }
    }
}

/// Activation change under a perturbation: per filter and for the whole stem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Perturbation {
    /// Per output channel.
    pub filters: Vec<Change>,
    /// All channels together.
    pub total: Change,
}

impl Perturbation {
    fn from_sums(sums: &[Vec<ChannelSums>], channels: usize) -> Perturbation {
        let mut per = vec![ChannelSums::default(); channels];
        for img in sums {
            for (acc, s) in per.iter_mut().zip(img) {
                acc.z2 += s.z2;
                acc.dz2 += s.dz2;
                acc.a2 += s.a2;
                acc.da2 += s.da2;
                acc.active += s.active;
                acc.count += s.count;
            }
        }
        let mut tot = ChannelSums::default();
        for s in &per {
            tot.z2 += s.z2;
            tot.dz2 += s.dz2;
            tot.a2 += s.a2;
            tot.da2 += s.da2;
            tot.active += s.active;
            tot.count += s.count;
        }
        let n = sums.len();
        Perturbation {
            filters: per.iter().map(|s| Change::from(s, n)).collect(),
            total: Change::from(&tot, n),
        }
    }
}

/// Options of the worst-case search ([`StemModel::worst_case_gain`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PgdOptions {
    /// L∞ radius in image units ([0, 1] scale), e.g. 8/255.
    pub eps: f64,
    /// Gradient steps.
    pub steps: usize,
    /// Step size; `None` = ε / 4.
    pub step_size: Option<f64>,
    /// Seed of the random start.
    pub seed: u64,
}

impl Default for PgdOptions {
    fn default() -> Self {
        PgdOptions {
            eps: 8.0 / 255.0,
            steps: 40,
            step_size: None,
            seed: 0,
        }
    }
}

impl PgdOptions {
    fn step_size(&self) -> f64 {
        self.step_size.unwrap_or(self.eps / 4.0)
    }

    fn check(&self) -> Result<(), StemError> {
        if !(self.eps.is_finite() && (0.0..=1.0).contains(&self.eps)) {
            return Err(StemError::Options(format!(
                "eps {} is outside [0, 1]",
                self.eps
            )));
        }
        if self.steps > MAX_STEPS {
            return Err(StemError::Options(format!(
                "{} steps is more than {MAX_STEPS}",
                self.steps
            )));
        }
        let s = self.step_size();
        if !(s.is_finite() && s >= 0.0) {
            return Err(StemError::Options(format!("step size {s} is not valid")));
        }
        Ok(())
    }
}

/// The worst-case perturbation of the stem alone and its effect.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorstCase {
    /// L∞ radius.
    pub eps: f64,
    /// Steps.
    pub steps: usize,
    /// Step size used.
    pub step_size: f64,
    /// Seed of the random start.
    pub seed: u64,
    /// The stem gain: post-ReLU activation change ‖Δ post‖ / ‖post‖ under the worst δ found.
    pub gain: Option<f64>,
    /// Activation change under that δ.
    pub perturbation: Perturbation,
    /// The δ found, `n × c × h × w` (image units).
    #[serde(skip)]
    pub delta: Vec<f32>,
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// Clean images in [0, 1] and named perturbed versions of them (e.g. `adv_examples.npz`).
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Clean images, `n × c × h × w`.
    pub clean: Vec<f32>,
    /// Perturbed versions (same shape), by name.
    pub perturbed: Vec<(String, Vec<f32>)>,
    /// Normalisation stored with the images (`mean`, `std` arrays of an npz).
    pub mean: Option<Vec<f64>>,
    /// See `mean`.
    pub std: Option<Vec<f64>>,
    /// Where the images come from.
    pub source: String,
}

/// An array as images: `N×C×H×W`, `C×H×W` (one image) or `H×W` (one grey image); integer
/// arrays are divided by 255. Returns the values and `[n, c, h, w]`.
pub fn image_array(t: &RawTensor, what: &str) -> Result<(Vec<f32>, [usize; 4]), StemError> {
    let dims = match *t.shape() {
        [n, c, h, w] => [n, c, h, w],
        [c, h, w] => [1, c, h, w],
        [h, w] => [1, 1, h, w],
        ref s => {
            return Err(images_err(format!(
                "{what} has shape {s:?}; expected N×C×H×W, C×H×W or H×W"
            )))
        }
    };
    let mut v = t.to_f32();
    match t.dtype() {
        DType::U8 => v.iter_mut().for_each(|x| *x /= 255.0),
        d if d.is_float() => {}
        d => {
            return Err(images_err(format!(
                "{what} has type {}; expected floats in [0, 1] or uint8",
                d.name()
            )))
        }
    }
    Batch::new(&v, dims[0], dims[1], dims[2], dims[3])
        .map_err(|e| images_err(format!("{what}: {e}")))?;
    Ok((v, dims))
}

fn check_unit_range(v: &[f32], what: &str) -> Result<(), StemError> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in v {
        if !x.is_finite() {
            return Err(images_err(format!("{what} holds NaN or infinite values")));
        }
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo < -1e-6 || hi > 1.0 + 1e-6 {
        return Err(images_err(format!(
            "{what} holds values in [{lo}, {hi}]; images must be in [0, 1] before normalisation"
        )));
    }
    Ok(())
}

impl ImageSet {
    /// Images from arrays; checks shapes and the [0, 1] range.
    pub fn from_arrays(
        clean: Vec<f32>,
        dims: [usize; 4],
        perturbed: Vec<(String, Vec<f32>)>,
        source: &str,
    ) -> Result<ImageSet, StemError> {
        let [n, c, h, w] = dims;
        Batch::new(&clean, n, c, h, w)?;
        check_unit_range(&clean, "clean images")?;
        for (k, p) in &perturbed {
            if p.len() != clean.len() {
                return Err(images_err(format!(
                    "perturbed images {k:?} hold {} values, the clean ones {}",
                    p.len(),
                    clean.len()
                )));
            }
            check_unit_range(p, &format!("perturbed images {k:?}"))?;
        }
        Ok(ImageSet {
            n,
            c,
            h,
            w,
            clean,
            perturbed,
            mean: None,
            std: None,
            source: source.to_string(),
        })
    }

    /// Images from the bytes of an `.npz`: `x` (clean, N×C×H×W in [0, 1]), every other array of
    /// the same shape as a perturbed version named by its key, and `mean` / `std` when present.
    pub fn from_npz(data: Blob, source: &str) -> Result<ImageSet, StemError> {
        let ck = convlens_numpy::read_npz(data)
            .map_err(|e| images_err(format!("{source}: not a readable .npz: {e}")))?;
        let x = ck
            .tensor("x")
            .ok_or_else(|| images_err(format!("{source} has no array `x` (the clean images)")))?;
        let (clean, dims) = image_array(x, "array `x`")?;
        let mut perturbed = Vec::new();
        for t in &ck.tensors {
            if t.name == "x" || t.tensor.numel() != clean.len() || t.tensor.shape() != x.shape() {
                continue;
            }
            let (v, _) = image_array(&t.tensor, &format!("array `{}`", t.name))?;
            perturbed.push((t.name.clone(), v));
        }
        let mut set = Self::from_arrays(clean, dims, perturbed, source)?;
        let stat = |k: &str| -> Option<Vec<f64>> {
            ck.tensor(k)
                .filter(|t| t.dtype().is_float() && t.shape().len() == 1)
                .map(|t| t.to_f64())
        };
        set.mean = stat("mean");
        set.std = stat("std");
        Ok(set)
    }

    /// Reads an `.npz` file (see [`ImageSet::from_npz`]).
    pub fn load_npz(path: &Path) -> Result<ImageSet, StemError> {
        let bytes = std::fs::read(path).map_err(|source| StemError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_npz(Blob::from_vec(bytes), &path.display().to_string())
    }

    /// The clean images.
    pub fn clean_batch(&self) -> Batch<'_> {
        Batch {
            data: &self.clean,
            n: self.n,
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }

    /// The perturbed images called `key`.
    pub fn perturbed_batch(&self, key: &str) -> Option<Batch<'_>> {
        self.perturbed
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Batch {
                data: v,
                n: self.n,
                c: self.c,
                h: self.h,
                w: self.w,
            })
    }

    /// Names of the perturbed versions.
    pub fn keys(&self) -> Vec<&str> {
        self.perturbed.iter().map(|(k, _)| k.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// Options of [`analyse`] / [`analyse_zoo`].
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// How to load each stem.
    pub load: LoadOptions,
    /// Normalisation for every model (overrides the meta table and the image file).
    pub norm: Option<(Vec<f64>, Vec<f64>)>,
    /// Key of the perturbed images (default: the model's name).
    pub perturbed_key: Option<String>,
    /// Worst-case search; `None` skips it.
    pub pgd: Option<PgdOptions>,
    /// Cosine similarity from which two filters count as near-duplicates.
    pub dup_threshold: f64,
    /// Centre-tap share from which a filter counts as 1×1-like.
    pub centre_threshold: f64,
    /// Image shown in the figure.
    pub figure_image: usize,
    /// Most channels shown in the figure.
    pub figure_columns: usize,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            load: LoadOptions::default(),
            norm: None,
            perturbed_key: None,
            pgd: Some(PgdOptions::default()),
            dup_threshold: 0.9,
            centre_threshold: 0.5,
            figure_image: 0,
            figure_columns: 16,
        }
    }
}

/// One row of the per-filter table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FilterRow {
    /// Output channel.
    pub channel: usize,
    /// Filter shape.
    #[serde(flatten)]
    pub shape: FilterShape,
    /// Change under the given perturbed images.
    pub perturbed: Option<Change>,
    /// Change under the worst-case δ.
    pub worst: Option<Change>,
}

/// The per-model summary row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelRow {
    /// Model name.
    pub model: String,
    /// Robust (from the meta table), when known.
    pub robust: Option<bool>,
    /// Layer used.
    pub layer: String,
    /// Filters.
    pub filters: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel size `kh x kw`.
    pub kernel: String,
    /// Stride (vertical).
    pub stride: usize,
    /// Padding (top).
    pub padding: Option<usize>,
    /// BatchNorm folded.
    pub batch_norm: Option<String>,
    /// Mean centre-tap share over filters.
    pub centre_share: Option<f64>,
    /// Filters whose centre-tap share ≥ the threshold.
    pub centred_filters: usize,
    /// Mean over filters of the largest cosine similarity to another filter.
    pub mean_max_similarity: Option<f64>,
    /// Pairs of filters with cosine ≥ the threshold.
    pub near_duplicate_pairs: usize,
    /// Filters with at least one near-duplicate.
    pub filters_with_duplicate: usize,
    /// Filters never active on the clean images.
    pub dead_filters: usize,
    /// Key of the perturbed images used.
    pub perturbed_key: Option<String>,
    /// Largest |x' − x| of the perturbed images.
    pub perturbation_linf: Option<f64>,
    /// Pre-ReLU change under the perturbed images.
    pub pre_change: Option<f64>,
    /// Post-ReLU change under the perturbed images.
    pub post_change: Option<f64>,
    /// Share of the perturbation energy removed by the ReLU.
    pub relu_removed: Option<f64>,
    /// L∞ radius of the worst case.
    pub eps: Option<f64>,
    /// Stem gain: post-ReLU change under the worst-case δ.
    pub stem_gain: Option<f64>,
    /// Pre-ReLU change under the worst-case δ.
    pub worst_pre_change: Option<f64>,
    /// Share removed by the ReLU under the worst-case δ.
    pub worst_relu_removed: Option<f64>,
}

/// The data of the stem figure: rows filter, clean activation, perturbed activation,
/// difference; one column per shown channel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemFigure {
    /// Title.
    pub title: String,
    /// Image shown.
    pub image: usize,
    /// What the perturbed row shows.
    pub perturbation: String,
    /// Columns.
    pub columns: Vec<FigureColumn>,
}

/// One column of the stem figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FigureColumn {
    /// Output channel.
    pub channel: usize,
    /// Label (the channel number).
    pub label: String,
    /// Effective filter (`in_ch × kh × kw`).
    #[serde(skip)]
    pub filter: Vec<f32>,
    /// Input channels of the filter.
    pub in_ch: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Activation height.
    pub h: usize,
    /// Activation width.
    pub w: usize,
    /// Post-ReLU activation of the clean image.
    #[serde(skip)]
    pub clean: Vec<f32>,
    /// Post-ReLU activation of the perturbed image.
    #[serde(skip)]
    pub perturbed: Vec<f32>,
}

/// The stem analysis of one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemReport {
    /// Model name.
    pub model: String,
    /// File read.
    pub file: String,
    /// Robust, when known.
    pub robust: Option<bool>,
    /// The stem used and how.
    pub stem: StemInfo,
    /// Normalisation used.
    pub normalization: Normalization,
    /// Images analysed.
    pub n_images: usize,
    /// Per-filter metrics.
    pub filters: Vec<FilterRow>,
    /// Per-model summary.
    pub summary: ModelRow,
    /// The worst case, when searched.
    pub worst_case: Option<WorstCase>,
    /// The figure's data.
    pub figure: StemFigure,
}

/// One model of a zoo for [`analyse_zoo`].
#[derive(Debug, Clone)]
pub struct ZooEntry {
    /// Model name (also the default key of its perturbed images).
    pub name: String,
    /// Model file.
    pub path: PathBuf,
    /// Robust, when known.
    pub robust: Option<bool>,
    /// Normalisation of this model (e.g. from the meta table), used unless the options give one.
    pub norm: Option<(Vec<f64>, Vec<f64>)>,
    /// The checkpoint entry holding the model (`None`: the load options' entry).
    pub entry: Option<String>,
}

fn mean_of(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Analyses the stem of one model on `images`: filter shapes, the activation change under the
/// perturbed images `perturbed` (a key of `images`; `None` = none), the worst case, the summary
/// row and the figure data.
pub fn analyse(
    model: &StemModel,
    images: &ImageSet,
    perturbed: Option<&str>,
    norm: &Normalization,
    robust: Option<bool>,
    opts: &AnalysisOptions,
) -> Result<StemReport, StemError> {
    // the fields are public: check them again
    Batch::new(&images.clean, images.n, images.c, images.h, images.w)?;
    if let Some((k, _)) = images
        .perturbed
        .iter()
        .find(|(_, v)| v.len() != images.clean.len())
    {
        return Err(images_err(format!(
            "perturbed images {k:?} do not have the clean images' size"
        )));
    }
    let clean = images.clean_batch();
    norm.check(images.c)?;
    let pert = match perturbed {
        Some(k) => Some((
            k,
            images.perturbed_batch(k).ok_or_else(|| {
                images_err(format!(
                    "{} has no perturbed images {k:?} (it has: {})",
                    images.source,
                    images.keys().join(", ")
                ))
            })?,
        )),
        None => None,
    };
    if !(opts.dup_threshold.is_finite() && opts.centre_threshold.is_finite()) {
        return Err(StemError::Options("thresholds must be finite".into()));
    }
    let shapes = model.filter_shapes(opts.dup_threshold);
    let p = match &pert {
        Some((_, b)) => Some(model.perturbation(&clean, b, norm)?),
        None => None,
    };
    let worst = match &opts.pgd {
        Some(pgd) => Some(model.worst_case_gain(&clean, norm, pgd)?),
        None => None,
    };
    // dead filters: never active on the clean images (from either pass)
    let base;
    let clean_stats = match (&p, &worst) {
        (Some(p), _) => &p.filters,
        (None, Some(w)) => &w.perturbation.filters,
        (None, None) => {
            base = model.perturbation(&clean, &clean, norm)?;
            &base.filters
        }
    };
    let dead = clean_stats
        .iter()
        .filter(|c| c.active_share == Some(0.0))
        .count();
    let filters: Vec<FilterRow> = shapes
        .iter()
        .enumerate()
        .map(|(o, s)| FilterRow {
            channel: o,
            shape: s.clone(),
            perturbed: p.as_ref().and_then(|p| p.filters.get(o).copied()),
            worst: worst
                .as_ref()
                .and_then(|w| w.perturbation.filters.get(o).copied()),
        })
        .collect();
    let linf = pert.as_ref().map(|(_, b)| {
        b.data
            .iter()
            .zip(clean.data)
            .map(|(a, c)| f64::from((a - c).abs()))
            .fold(0.0, f64::max)
    });
    let info = &model.info;
    let summary = ModelRow {
        model: model.name.clone(),
        robust,
        layer: info.layer.clone(),
        filters: info.out_channels,
        in_channels: info.in_channels,
        kernel: format!("{}x{}", info.kh, info.kw),
        stride: info.stride[0],
        padding: (info.pads[0] != usize::MAX).then_some(info.pads[0]),
        batch_norm: info.batch_norm.clone(),
        centre_share: mean_of(shapes.iter().filter_map(|s| s.centre_share)),
        centred_filters: shapes
            .iter()
            .filter(|s| s.centre_share.is_some_and(|c| c >= opts.centre_threshold))
            .count(),
        mean_max_similarity: mean_of(shapes.iter().filter_map(|s| s.max_similarity)),
        near_duplicate_pairs: shapes.iter().map(|s| s.near_duplicates).sum::<usize>() / 2,
        filters_with_duplicate: shapes.iter().filter(|s| s.near_duplicates > 0).count(),
        dead_filters: dead,
        perturbed_key: pert.as_ref().map(|(k, _)| k.to_string()),
        perturbation_linf: linf,
        pre_change: p.as_ref().and_then(|p| p.total.pre_change),
        post_change: p.as_ref().and_then(|p| p.total.post_change),
        relu_removed: p.as_ref().and_then(|p| p.total.relu_removed),
        eps: worst.as_ref().map(|w| w.eps),
        stem_gain: worst.as_ref().and_then(|w| w.gain),
        worst_pre_change: worst.as_ref().and_then(|w| w.perturbation.total.pre_change),
        worst_relu_removed: worst
            .as_ref()
            .and_then(|w| w.perturbation.total.relu_removed),
    };
    let figure = figure_data(model, images, &pert, worst.as_ref(), norm, opts)?;
    Ok(StemReport {
        model: model.name.clone(),
        file: model.file.display().to_string(),
        robust,
        stem: model.info.clone(),
        normalization: norm.clone(),
        n_images: images.n,
        filters,
        summary,
        worst_case: worst,
        figure,
    })
}

fn figure_data(
    model: &StemModel,
    images: &ImageSet,
    pert: &Option<(&str, Batch<'_>)>,
    worst: Option<&WorstCase>,
    norm: &Normalization,
    opts: &AnalysisOptions,
) -> Result<StemFigure, StemError> {
    let k = opts.figure_image.min(images.n.saturating_sub(1));
    let clean_img = images.clean_batch().image(k);
    let (perturbed_img, what, short): (Vec<f32>, String, &str) = match (pert, worst) {
        (Some((key, b)), _) => (
            b.image(k).to_vec(),
            format!("perturbed images {key:?}"),
            "perturbed",
        ),
        (None, Some(w)) => {
            let per = clean_img.len();
            let d = w.delta.get(k * per..(k + 1) * per).unwrap_or(&[]);
            (
                clean_img.iter().zip(d).map(|(x, d)| x + d).collect(),
                format!("worst-case δ for the stem (ε = {:.4})", w.eps),
                "worst-case δ",
            )
        }
        (None, None) => (
            clean_img.to_vec(),
            "none (clean image twice)".to_string(),
            "no perturbation",
        ),
    };
    let i = &model.info;
    let run = |img: &[f32]| -> Result<Activations, StemError> {
        let b = Batch::new(img, 1, images.c, images.h, images.w)?;
        let x = norm.apply_batch(&b)?;
        model.forward(&Batch::new(&x, 1, images.c, images.h, images.w)?)
    };
    let a = run(clean_img)?;
    let b = run(&perturbed_img)?;
    let plane = a.h * a.w;
    let cap = opts.figure_columns.clamp(1, 32);
    let mut channels: Vec<usize> = (0..i.out_channels).collect();
    if channels.len() > cap {
        // the most active channels on the clean image, shown in channel order
        let energy = |o: usize| -> f64 {
            a.post[o * plane..(o + 1) * plane]
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum()
        };
        channels.sort_by(|&p, &q| energy(q).total_cmp(&energy(p)).then(p.cmp(&q)));
        channels.truncate(cap);
        channels.sort_unstable();
    }
    let per = i.in_channels / i.groups * i.kh * i.kw;
    let columns = channels
        .iter()
        .map(|&o| FigureColumn {
            channel: o,
            label: o.to_string(),
            filter: model.weight[o * per..(o + 1) * per]
                .iter()
                .map(|&v| v as f32)
                .collect(),
            in_ch: i.in_channels / i.groups,
            kh: i.kh,
            kw: i.kw,
            h: a.h,
            w: a.w,
            clean: a.post[o * plane..(o + 1) * plane].to_vec(),
            perturbed: b.post[o * plane..(o + 1) * plane].to_vec(),
        })
        .collect();
    Ok(StemFigure {
        title: format!("{}, image {k}, {short}", model.name),
        image: k,
        perturbation: what,
        columns,
    })
}

/// Picks the normalisation: the options', else the entry's (meta table), else the image
/// file's, else none.
pub fn choose_normalization(
    opts: Option<&(Vec<f64>, Vec<f64>)>,
    entry: Option<&(Vec<f64>, Vec<f64>)>,
    images: &ImageSet,
) -> Result<Normalization, StemError> {
    if let Some((m, s)) = opts {
        return Normalization::new(m.clone(), s.clone(), "options");
    }
    if let Some((m, s)) = entry {
        return Normalization::new(m.clone(), s.clone(), "meta table");
    }
    if let (Some(m), Some(s)) = (&images.mean, &images.std) {
        return Normalization::new(
            m.clone(),
            s.clone(),
            &format!("{} (mean, std)", images.source),
        );
    }
    Ok(Normalization::none(images.c))
}

/// Analyses every model of a zoo on the same images, in order; a failing model gives its
/// error and the others go on. The perturbed images of a model are those keyed by
/// `opts.perturbed_key`, else by the model's name when the image file has them, else none
/// (when it has no perturbed images at all).
pub fn analyse_zoo(
    models: &[ZooEntry],
    images: &ImageSet,
    opts: &AnalysisOptions,
) -> Vec<Result<StemReport, StemError>> {
    models
        .iter()
        .map(|e| {
            let model = match &e.entry {
                Some(entry) => {
                    let load = LoadOptions {
                        entry: Some(entry.clone()),
                        ..opts.load.clone()
                    };
                    StemModel::load(&e.path, &load)?
                }
                None => StemModel::load(&e.path, &opts.load)?,
            };
            let norm = choose_normalization(opts.norm.as_ref(), e.norm.as_ref(), images)?;
            let key = match &opts.perturbed_key {
                Some(k) => Some(k.as_str()),
                None if images.perturbed.is_empty() => None,
                None => Some(e.name.as_str()),
            };
            let mut r = analyse(&model, images, key, &norm, e.robust, opts)?;
            r.model = e.name.clone();
            r.summary.model = e.name.clone();
            Ok(r)
        })
        .collect()
}

/// Means of the per-model metrics of one group of models.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct GroupMeans {
    /// Models in the group.
    pub models: usize,
    /// Mean centre-tap share.
    pub centre_share: Option<f64>,
    /// Mean of the per-model mean max similarity.
    pub mean_max_similarity: Option<f64>,
    /// Mean share of filters with a near-duplicate.
    pub duplicate_share: Option<f64>,
    /// Mean pre-ReLU change under the perturbed images.
    pub pre_change: Option<f64>,
    /// Mean post-ReLU change under the perturbed images.
    pub post_change: Option<f64>,
    /// Mean share removed by the ReLU.
    pub relu_removed: Option<f64>,
    /// Mean stem gain.
    pub stem_gain: Option<f64>,
    /// Mean share removed by the ReLU under the worst case.
    pub worst_relu_removed: Option<f64>,
}

/// Robust vs normal stems of a zoo.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ZooSummary {
    /// Models marked robust.
    pub robust: GroupMeans,
    /// Models marked normal.
    pub normal: GroupMeans,
    /// Models whose robustness is unknown.
    pub unknown: usize,
}

fn group_means(rows: &[&ModelRow]) -> GroupMeans {
    let m = |f: &dyn Fn(&ModelRow) -> Option<f64>| mean_of(rows.iter().filter_map(|r| f(r)));
    GroupMeans {
        models: rows.len(),
        centre_share: m(&|r| r.centre_share),
        mean_max_similarity: m(&|r| r.mean_max_similarity),
        duplicate_share: m(&|r| {
            (r.filters > 0).then(|| r.filters_with_duplicate as f64 / r.filters as f64)
        }),
        pre_change: m(&|r| r.pre_change),
        post_change: m(&|r| r.post_change),
        relu_removed: m(&|r| r.relu_removed),
        stem_gain: m(&|r| r.stem_gain),
        worst_relu_removed: m(&|r| r.worst_relu_removed),
    }
}

/// Robust-vs-normal means of the per-model rows.
pub fn zoo_summary(reports: &[StemReport]) -> ZooSummary {
    let rows = |want: bool| -> Vec<&ModelRow> {
        reports
            .iter()
            .filter(|r| r.robust == Some(want))
            .map(|r| &r.summary)
            .collect()
    };
    ZooSummary {
        robust: group_means(&rows(true)),
        normal: group_means(&rows(false)),
        unknown: reports.iter().filter(|r| r.robust.is_none()).count(),
    }
}

/// The stem figure of one report (rows filter, clean, perturbed, difference), e.g. for the HTML
/// report.
pub fn figure(r: &StemReport) -> Result<convlens_show::Figure, convlens_show::ShowError> {
    let columns: Vec<convlens_show::StemColumn> = r
        .figure
        .columns
        .iter()
        .map(|c| convlens_show::StemColumn {
            label: c.label.clone(),
            filter: c.filter.clone(),
            in_ch: c.in_ch,
            kh: c.kh,
            kw: c.kw,
            clean: convlens_show::Plane {
                data: c.clean.clone(),
                h: c.h,
                w: c.w,
            },
            perturbed: convlens_show::Plane {
                data: c.perturbed.clone(),
                h: c.h,
                w: c.w,
            },
        })
        .collect();
    convlens_show::stem_activations(&r.figure.title, &columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_names_follow_the_conventions() {
        assert_eq!(sibling_names("features.0"), ["features.1"]);
        assert_eq!(sibling_names("conv1"), ["bn1", "norm1"]);
        assert_eq!(sibling_names("stem.conv"), ["stem.bn", "stem.norm"]);
        assert!(sibling_names("stem").is_empty());
    }

    #[test]
    fn projection_keeps_the_box() {
        assert!((project(0.5, 0.2, 0.1) - 0.1).abs() < 1e-12);
        assert!((project(0.95, 0.1, 0.1) - 0.05).abs() < 1e-12);
        assert_eq!(project(0.0, -0.1, 0.1), 0.0);
    }
}
