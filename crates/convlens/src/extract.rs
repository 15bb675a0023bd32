//! Stage 2 — extract: find the convolution layers of a checkpoint and their depth.
//!
//! With a graph (ONNX) the depth of a layer is its graph depth (longest path from a graph
//! input); without one every 4-D floating-point weight is its own depth, in order of
//! appearance. `conv_depth` ranks a layer's depth among the distinct depths that hold a 4-D
//! forward convolution of any kernel size (as onnxzoo2filterdb), and
//! `conv_depth_norm = conv_depth / (n_conv_depths - 1)` (0 with a single depth).

use convlens_core::{Checkpoint, ConvOp, KernelLayout, RawTensor};
use serde::Serialize;
use std::collections::BTreeSet;

/// Which kernel sizes to analyse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSelect {
    /// Every kernel size.
    All,
    /// Only kernels of this (kh, kw) size.
    Size(usize, usize),
}

impl KernelSelect {
    /// The paper's default: 3×3 kernels.
    pub const DEFAULT: KernelSelect = KernelSelect::Size(3, 3);

    /// True if a (kh, kw) kernel is selected.
    pub fn accepts(self, kh: usize, kw: usize) -> bool {
        match self {
            KernelSelect::All => true,
            KernelSelect::Size(h, w) => h == kh && w == kw,
        }
    }
}

impl std::fmt::Display for KernelSelect {
    /// `all` or `KxK`, as parsed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelSelect::All => f.write_str("all"),
            KernelSelect::Size(h, w) => write!(f, "{h}x{w}"),
        }
    }
}

impl std::str::FromStr for KernelSelect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(KernelSelect::All);
        }
        let bad = || format!("invalid kernel size {s:?}: expected `all` or `KxK` such as `3x3`");
        let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let kh: usize = a.trim().parse().map_err(|_| bad())?;
        let kw: usize = b.trim().parse().map_err(|_| bad())?;
        if kh == 0 || kw == 0 {
            return Err(bad());
        }
        Ok(KernelSelect::Size(kh, kw))
    }
}

/// One convolution layer of a model.
#[derive(Debug, Clone, Serialize)]
pub struct ConvLayer {
    /// Layer name (node name, or the weight key without `.weight`).
    pub name: String,
    /// Name of the weight tensor in the file.
    pub weight_name: String,
    /// Operator (`Conv`, `ConvTranspose`, `ConvInteger`, `QLinearConv`; `Conv` without a graph).
    pub op: &'static str,
    /// True for transposed convolutions.
    pub transposed: bool,
    /// Weight shape as stored (ConvTranspose: in, out/groups, kh, kw).
    pub shape: [usize; 4],
    /// Output channels.
    pub out_channels: usize,
    /// Input channels seen by one filter group (`in / groups`).
    pub in_per_group: usize,
    /// Groups (`None` when the file has no graph to say).
    pub groups: Option<usize>,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Number of 2-D filters (`out · in / groups`).
    pub n_filters: usize,
    /// Strides, where known.
    pub strides: Option<Vec<i64>>,
    /// Dilations, where known.
    pub dilations: Option<Vec<i64>>,
    /// Pads, where known.
    pub pads: Option<Vec<i64>>,
    /// Graph depth (ONNX) or index among the 4-D weights (no graph).
    pub depth: usize,
    /// Rank of `depth` among the distinct depths holding a forward convolution
    /// (`None` for transposed convolutions, which are not ranked).
    pub conv_depth: Option<usize>,
    /// `conv_depth / (n_conv_depths - 1)`, 0 with a single depth.
    pub conv_depth_norm: Option<f64>,
    /// Position in the file (node index or tensor index).
    #[serde(skip)]
    pub order: usize,
    /// The weight as stored.
    #[serde(skip)]
    pub weight: RawTensor,
    /// Axis order of `weight`.
    #[serde(skip)]
    pub layout: KernelLayout,
    /// The bias, where known.
    #[serde(skip)]
    pub bias: Option<RawTensor>,
}

impl ConvLayer {
    /// Weights as f32 in OIHW order (out, in/groups, kh, kw), C-contiguous.
    pub fn weights_oihw(&self) -> Vec<f32> {
        let w = self.weight.to_f32();
        if self.layout == KernelLayout::OIHW {
            // already in order: no second copy
            return w;
        }
        self.layout.to_oihw(&self.shape, &w)
    }

    /// Weights as f32 in stored order: the 2-D filters as the file lays them out
    /// (`reshape(-1, kh, kw)`).
    pub fn filters(&self) -> Vec<f32> {
        self.weight.to_f32()
    }
}

/// Something found in the file that is not analysed, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Layer or tensor name.
    pub name: String,
    /// Why it is not analysed.
    pub reason: String,
}

/// All convolution layers of a model, with what was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Extraction {
    /// Layers in depth order (depth, then file order).
    pub layers: Vec<ConvLayer>,
    /// Entries not analysed, with reasons.
    pub skipped: Vec<Skipped>,
    /// Number of distinct depths holding a forward convolution.
    pub n_conv_depths: usize,
    /// Where depth comes from.
    pub depth_source: String,
}

impl Extraction {
    /// The layers whose kernel size is selected.
    pub fn selected(&self, k: KernelSelect) -> impl Iterator<Item = &ConvLayer> {
        self.layers.iter().filter(move |l| k.accepts(l.kh, l.kw))
    }
}

fn shape4(t: &RawTensor) -> Option<[usize; 4]> {
    match t.shape() {
        [a, b, c, d] => Some([*a, *b, *c, *d]),
        _ => None,
    }
}

fn layer_name(weight_name: &str) -> String {
    weight_name
        .strip_suffix(".weight")
        .unwrap_or(weight_name)
        .to_string()
}

/// Finds the convolution layers of `ckpt` (all kernel sizes) and assigns depths.
pub fn extract(ckpt: &Checkpoint) -> Extraction {
    let mut layers = Vec::new();
    let mut skipped = Vec::new();
    let depth_source;
    if let Some(graph) = &ckpt.graph {
        depth_source = "graph depth (longest path from a graph input)".to_string();
        for node in &graph.convs {
            let weight = match &node.weight {
                Ok(w) => w,
                Err(reason) => {
                    skipped.push(Skipped {
                        name: node.name.clone(),
                        reason: format!("{}: {reason}", node.op.name()),
                    });
                    continue;
                }
            };
            let Some(shape) = shape4(weight) else {
                skipped.push(Skipped {
                    name: node.name.clone(),
                    reason: format!(
                        "{} weight has shape {:?}: only 2-D convolutions (4-D weights) are analysed",
                        node.op.name(),
                        weight.shape()
                    ),
                });
                continue;
            };
            let Some(depth) = node.graph_depth else {
                skipped.push(Skipped {
                    name: node.name.clone(),
                    reason: "not reachable from a graph input".to_string(),
                });
                continue;
            };
            let transposed = node.op == ConvOp::ConvTranspose;
            let oihw = node.layout.oihw_shape(&shape);
            let groups = node.groups.max(1);
            // ConvTranspose stores (in, out/groups, kh, kw): out = groups * shape[1]
            let (out_channels, in_per_group) = if transposed {
                (oihw[0].saturating_mul(groups), shape[0] / groups)
            } else {
                (oihw[0], oihw[1])
            };
            layers.push(ConvLayer {
                name: node.name.clone(),
                weight_name: node.weight_name.clone(),
                op: node.op.name(),
                transposed,
                shape,
                out_channels,
                in_per_group,
                groups: Some(groups),
                kh: oihw[2],
                kw: oihw[3],
                n_filters: shape[0] * shape[1],
                strides: Some(node.strides.clone()),
                dilations: Some(node.dilations.clone()),
                pads: Some(node.pads.clone()),
                depth,
                conv_depth: None,
                conv_depth_norm: None,
                order: node.node_index,
                weight: weight.clone(),
                layout: node.layout,
                bias: node.bias.clone(),
            });
        }
    } else {
        depth_source = format!("order of appearance ({}), no graph", ckpt.order_source);
        let mut depth = 0;
        for (i, t) in ckpt.tensors.iter().enumerate() {
            let Some(shape) = shape4(&t.tensor) else {
                continue;
            };
            if !t.tensor.dtype().is_float() {
                skipped.push(Skipped {
                    name: t.name.clone(),
                    reason: format!(
                        "4-D tensor of type {} is not a floating-point weight",
                        t.tensor.dtype().name()
                    ),
                });
                continue;
            }
            let name = layer_name(&t.name);
            let bias = ckpt.tensor(&format!("{name}.bias")).cloned();
            layers.push(ConvLayer {
                name,
                weight_name: t.name.clone(),
                op: "Conv",
                transposed: false,
                shape,
                out_channels: shape[0],
                in_per_group: shape[1],
                groups: None,
                kh: shape[2],
                kw: shape[3],
                n_filters: shape[0] * shape[1],
                strides: None,
                dilations: None,
                pads: None,
                depth,
                conv_depth: None,
                conv_depth_norm: None,
                order: i,
                weight: t.tensor.clone(),
                layout: KernelLayout::OIHW,
                bias,
            });
            depth += 1;
        }
    }
    // depth order: by depth, then file order (the original iterates its depth dictionary)
    layers.sort_by_key(|l| (l.depth, l.order));
    let depths: BTreeSet<usize> = layers
        .iter()
        .filter(|l| !l.transposed)
        .map(|l| l.depth)
        .collect();
    let depths: Vec<usize> = depths.into_iter().collect();
    let n = depths.len();
    for l in layers.iter_mut().filter(|l| !l.transposed) {
        let rank = depths.partition_point(|&d| d < l.depth);
        l.conv_depth = Some(rank);
        l.conv_depth_norm = Some(if n > 1 {
            rank as f64 / (n - 1) as f64
        } else {
            0.0
        });
    }
    Extraction {
        layers,
        skipped,
        n_conv_depths: n,
        depth_source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_select_parses() {
        assert_eq!("3x3".parse::<KernelSelect>(), Ok(KernelSelect::Size(3, 3)));
        assert_eq!("all".parse::<KernelSelect>(), Ok(KernelSelect::All));
        assert_eq!("1X7".parse::<KernelSelect>(), Ok(KernelSelect::Size(1, 7)));
        assert!("3".parse::<KernelSelect>().is_err());
        assert!("0x3".parse::<KernelSelect>().is_err());
    }
}
