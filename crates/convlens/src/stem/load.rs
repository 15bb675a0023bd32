//! Loading a stem: the options, reading the model file, and choosing its first layer (the
//! `Conv` reading the graph input, or the first image-like weight of a file without a graph).

use super::batch_norm::{check_bn, vec1, BnParams};
use super::{unsupported, StemError, StemModel, DEFAULT_BN_EPS};
use crate::extract::{extract, ConvLayer};
use crate::read::{model_name, read_bytes_with, ReadOptions};
use convlens_core::{Blob, Checkpoint, GraphNode};
use std::path::Path;

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

/// Ops that read a tensor's shape only: they do not transform the image.
fn shape_only(op: &str) -> bool {
    matches!(op, "Shape" | "Size")
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
}
