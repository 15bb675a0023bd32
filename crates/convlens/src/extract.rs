//! Stage 2 — extract: find the convolution layers of a checkpoint and their depth.
//!
//! With a graph (ONNX) the depth of a layer is its graph depth (longest path from a graph
//! input); without one every 4-D floating-point weight is its own depth, in order of
//! appearance. `conv_depth` ranks a layer's depth among the distinct depths that hold a 4-D
//! forward convolution of any kernel size (as onnxzoo2filterdb), and
//! `conv_depth_norm = conv_depth / (n_conv_depths - 1)` (0 with a single depth).
//!
//! Without a graph, a weight-normalised convolution (`P.weight_g` + `P.weight_v`, or
//! `P.parametrizations.weight.original0` + `original1`) is one layer `P` whose weight is the
//! effective `w = g · v / ‖v‖` ([`weight_norm_effective`]); a 4-D tensor stored under a second
//! name (tied weights: same storage bytes, offset, shape and strides) counts once, the copy is
//! listed as skipped.

use convlens_core::{Blob, DType};
use convlens_core::{Checkpoint, ConvOp, KernelLayout, RawTensor};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

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

/// Where a tensor's elements lie: tensors with the same identity are one tensor stored under
/// two names (tied or shared weights).
#[derive(PartialEq, Eq, Hash)]
struct TensorIdentity {
    storage: usize,
    start: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
    dtype: DType,
}

impl TensorIdentity {
    fn of(t: &RawTensor) -> Self {
        TensorIdentity {
            storage: t.storage().as_slice().as_ptr() as usize,
            start: t.byte_span().start,
            shape: t.shape().to_vec(),
            strides: t.strides().to_vec(),
            dtype: t.dtype(),
        }
    }
}

/// Name suffixes of weight-normalised convolutions: (direction `v`, magnitude `g`, the
/// suffix that replaces them in the layer name). `torch.nn.utils.weight_norm` stores
/// `weight_v` / `weight_g`; `torch.nn.utils.parametrizations.weight_norm` stores
/// `parametrizations.weight.original1` / `original0`.
const WEIGHT_NORM_SUFFIXES: [(&str, &str); 2] = [
    (".weight_v", ".weight_g"),
    (
        ".parametrizations.weight.original1",
        ".parametrizations.weight.original0",
    ),
];

/// The weight-norm pairs of a file without a graph.
#[derive(Default)]
struct WeightNormPairs {
    /// Index of a direction tensor → (index of its magnitude, layer name).
    directions: HashMap<usize, (usize, String)>,
    /// Index of a magnitude tensor → layer name.
    magnitudes: HashMap<usize, String>,
}

fn weight_norm_pairs(ckpt: &Checkpoint) -> WeightNormPairs {
    let mut out = WeightNormPairs::default();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, t) in ckpt.tensors.iter().enumerate() {
        index.entry(t.name.as_str()).or_insert(i);
    }
    for (i, t) in ckpt.tensors.iter().enumerate() {
        if t.tensor.shape().len() != 4 {
            continue;
        }
        for (v_suffix, g_suffix) in WEIGHT_NORM_SUFFIXES {
            // `weight_v` alone (a bare convolution's state dict) has the empty prefix
            let dotted = format!(".{}", t.name);
            let Some(prefix) = dotted.strip_suffix(v_suffix) else {
                continue;
            };
            let prefix = prefix.strip_prefix('.').unwrap_or(prefix);
            let g_name = format!("{prefix}{g_suffix}");
            let g_name = g_name.strip_prefix('.').unwrap_or(&g_name);
            if let Some(&g) = index.get(g_name) {
                let layer = if prefix.is_empty() {
                    "weight".to_string()
                } else {
                    prefix.to_string()
                };
                out.directions.insert(i, (g, layer.clone()));
                out.magnitudes.insert(g, layer);
            }
        }
    }
    out
}

/// The effective weight of a weight-normalised convolution, `w = g · v / ‖v‖` with the norm
/// over all dimensions but 0 (PyTorch's `weight_norm`, `dim=0`), or over the whole tensor when
/// `g` is a single value (`dim=None`); computed in f64, stored as f32.
pub fn weight_norm_effective(g: &RawTensor, v: &RawTensor) -> Result<RawTensor, String> {
    let Some(shape) = shape4(v) else {
        return Err(format!("direction has shape {:?}, not 4-D", v.shape()));
    };
    if !g.dtype().is_float() || !v.dtype().is_float() {
        return Err(format!(
            "magnitude ({}) and direction ({}) must be floating point",
            g.dtype().name(),
            v.dtype().name()
        ));
    }
    let out = shape[0];
    let per_out = g.numel() == out
        && g.shape().first() == Some(&out)
        && g.shape().iter().skip(1).all(|&d| d == 1);
    let whole = g.numel() == 1 && g.shape().iter().all(|&d| d == 1);
    if !per_out && !whole {
        return Err(format!(
            "magnitude has shape {:?}; only weight_norm over dim 0 ([{out}, 1, 1, 1]) or dim=None (one value) is supported",
            g.shape()
        ));
    }
    let gv = g.to_f64();
    let vv = v.to_f64();
    let n = vv.len();
    let chunk = if per_out && out > 0 { n / out } else { n };
    let mut w = Vec::with_capacity(n);
    if chunk > 0 {
        for (o, row) in vv.chunks(chunk).enumerate() {
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            let scale = gv
                .get(if per_out { o } else { 0 })
                .copied()
                .unwrap_or(f64::NAN)
                / norm;
            w.extend(row.iter().map(|x| (x * scale) as f32));
        }
    }
    RawTensor::contiguous(DType::F32, shape.to_vec(), Blob::from_f32s(&w))
        .map_err(|e| e.to_string())
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
        let norms = weight_norm_pairs(ckpt);
        // tied weights: the same storage bytes under two names count once
        let mut seen: HashMap<TensorIdentity, String> = HashMap::new();
        let mut depth = 0;
        for (i, t) in ckpt.tensors.iter().enumerate() {
            let Some(mut shape) = shape4(&t.tensor) else {
                continue;
            };
            if let Some(layer) = norms.magnitudes.get(&i) {
                skipped.push(Skipped {
                    name: t.name.clone(),
                    reason: format!(
                        "weight-norm magnitude of `{layer}`, folded into its effective weight"
                    ),
                });
                continue;
            }
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
            let id = TensorIdentity::of(&t.tensor);
            if let Some(first) = seen.get(&id) {
                skipped.push(Skipped {
                    name: t.name.clone(),
                    reason: format!("the same storage as `{first}` (tied weights): counted once"),
                });
                continue;
            }
            let (name, weight) = match norms.directions.get(&i) {
                Some((g, layer)) => {
                    let g = &ckpt.tensors[*g];
                    match weight_norm_effective(&g.tensor, &t.tensor) {
                        Ok(w) => (layer.clone(), w),
                        Err(reason) => {
                            skipped.push(Skipped {
                                name: t.name.clone(),
                                reason: format!(
                                    "weight-norm direction of `{layer}` that cannot be rebuilt: {reason}"
                                ),
                            });
                            continue;
                        }
                    }
                }
                None => (layer_name(&t.name), t.tensor.clone()),
            };
            seen.insert(id, t.name.clone());
            shape = shape4(&weight).unwrap_or(shape);
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
                weight,
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

    fn f32_tensor(shape: Vec<usize>, v: &[f32]) -> RawTensor {
        RawTensor::contiguous(DType::F32, shape, Blob::from_f32s(v)).unwrap()
    }

    #[test]
    fn weight_norm_by_hand() {
        // dim 0: out channel 0 is v = (3, 4) (norm 5), g = 10 -> (6, 8); channel 1 is
        // v = (0, -2) (norm 2), g = 0.5 -> (0, -0.5)
        let v = f32_tensor(vec![2, 1, 1, 2], &[3.0, 4.0, 0.0, -2.0]);
        let g = f32_tensor(vec![2, 1, 1, 1], &[10.0, 0.5]);
        let w = weight_norm_effective(&g, &v).unwrap();
        assert_eq!(w.shape(), [2, 1, 1, 2]);
        assert_eq!(w.to_f32(), [6.0, 8.0, 0.0, -0.5]);
        // dim=None: one magnitude, the norm over everything: ||v|| = sqrt(9+16+4) = sqrt(29)
        let g1 = f32_tensor(vec![], &[29f32.sqrt()]);
        let w = weight_norm_effective(&g1, &v).unwrap();
        let want = [3.0, 4.0, 0.0, -2.0];
        for (a, b) in w.to_f32().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // a magnitude over dim 1 is not supported: an error, not a wrong weight
        let g2 = f32_tensor(vec![1, 1, 1, 2], &[1.0, 1.0]);
        let e = weight_norm_effective(&g2, &v).unwrap_err();
        assert!(e.contains("[1, 1, 1, 2]"), "{e}");
        // integer tensors are refused
        let gi = RawTensor::contiguous(DType::I32, vec![2, 1, 1, 1], Blob::from_vec(vec![0; 8]))
            .unwrap();
        assert!(weight_norm_effective(&gi, &v).is_err());
    }

    #[test]
    fn weight_norm_pairs_and_tied_weights_in_a_checkpoint() {
        use convlens_core::{Format, NamedTensor};
        let v = f32_tensor(vec![2, 1, 1, 2], &[3.0, 4.0, 0.0, -2.0]);
        let g = f32_tensor(vec![2, 1, 1, 1], &[10.0, 0.5]);
        // b's tensors are separate copies (same values, other storage)
        let v2 = f32_tensor(vec![2, 1, 1, 2], &[3.0, 4.0, 0.0, -2.0]);
        let g2 = f32_tensor(vec![2, 1, 1, 1], &[10.0, 0.5]);
        let shared = f32_tensor(vec![1, 1, 3, 3], &[1.0; 9]);
        let t = |name: &str, tensor: &RawTensor| NamedTensor {
            name: name.into(),
            tensor: tensor.clone(),
        };
        let ck = Checkpoint::from_tensors(
            Format::TorchZip,
            vec![
                t("a.weight_g", &g),
                t("a.weight_v", &v),
                t("b.parametrizations.weight.original0", &g2),
                t("b.parametrizations.weight.original1", &v2),
                t("c.weight", &shared),
                t("d.weight", &shared),
            ],
            "test",
        );
        let ex = extract(&ck);
        let names: Vec<&str> = ex.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(ex.layers[0].weights_oihw(), [6.0, 8.0, 0.0, -0.5]);
        assert_eq!(ex.layers[1].weights_oihw(), [6.0, 8.0, 0.0, -0.5]);
        assert_eq!(ex.layers[0].weight_name, "a.weight_v");
        let reasons: Vec<(&str, &str)> = ex
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[2].0 == "d.weight" && reasons[2].1.contains("`c.weight`"));
        assert_eq!(ex.n_conv_depths, 3);
    }

    #[test]
    fn kernel_select_parses() {
        assert_eq!("3x3".parse::<KernelSelect>(), Ok(KernelSelect::Size(3, 3)));
        assert_eq!("all".parse::<KernelSelect>(), Ok(KernelSelect::All));
        assert_eq!("1X7".parse::<KernelSelect>(), Ok(KernelSelect::Size(1, 7)));
        assert!("3".parse::<KernelSelect>().is_err());
        assert!("0x3".parse::<KernelSelect>().is_err());
    }
}
