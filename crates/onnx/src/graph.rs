//! Convolution nodes of a graph: attributes, weights resolved through `Identity` chains,
//! dequantization of `ConvInteger` / `QLinearConv` weights, graph depth.

use std::collections::{HashMap, HashSet};

use convlens_core::{Blob, ConvNode, ConvOp, DType, Graph, GraphNode, KernelLayout, RawTensor};

use crate::depth::graph_depths;
use crate::proto::{GraphProto, NodeProto};
use crate::TensorStore;

/// Longest `Identity` chain followed to find a weight (as the reference).
const MAX_IDENTITY_HOPS: usize = 64;
/// Nodes followed after a `ConvInteger` to find its output-scale `Mul`.
const MAX_SCALE_HOPS: usize = 4;

struct Ctx<'a> {
    nodes: &'a [NodeProto],
    store: &'a TensorStore,
    identity: HashMap<&'a str, &'a str>,
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
}

/// Builds the convolution graph of `g`.
pub(crate) fn build(g: &GraphProto, store: &TensorStore, notes: &mut Vec<String>) -> Graph {
    let nodes = g.node.as_slice();
    let mut identity = HashMap::new();
    let mut producer = HashMap::new();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.op_type == "Identity" {
            if let (Some(o), Some(x)) = (n.output.first(), n.input.first()) {
                if !x.is_empty() {
                    identity.insert(o.as_str(), x.as_str());
                }
            }
        }
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.entry(o.as_str()).or_insert(i);
        }
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            let c = consumers.entry(x.as_str()).or_default();
            if c.last() != Some(&i) {
                c.push(i);
            }
        }
    }
    let ctx = Ctx {
        nodes,
        store,
        identity,
        producer,
        consumers,
    };

    let inputs: Vec<String> = g
        .input
        .iter()
        .filter(|v| !store.is_initializer(&v.name))
        .map(|v| v.name.clone())
        .collect();
    let feeds: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let depths = graph_depths(nodes, &feeds);
    if depths.cyclic > 0 {
        notes.push(format!(
            "the graph has a cycle: {} node(s) on or after it have no depth",
            depths.cyclic
        ));
    }
    let feed_set: HashSet<&str> = feeds.iter().copied().filter(|f| !f.is_empty()).collect();
    let first_ops = nodes
        .iter()
        .filter(|n| n.input.iter().any(|x| feed_set.contains(x.as_str())))
        .map(|n| n.op_type.clone())
        .collect();

    let mut convs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let op = match n.op_type.as_str() {
            "Conv" => ConvOp::Conv,
            "ConvTranspose" => ConvOp::ConvTranspose,
            "ConvInteger" => ConvOp::ConvInteger,
            "QLinearConv" => ConvOp::QLinearConv,
            _ => continue,
        };
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            continue;
        }
        let mut c = conv_node(&ctx, i, n, op);
        c.graph_depth = depths.depth.get(i).copied().flatten();
        convs.push(c);
    }
    let all = nodes
        .iter()
        .map(|n| GraphNode {
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            float_attrs: n
                .attribute
                .iter()
                .filter(|a| a.r#type == crate::proto::attribute_type::FLOAT)
                .map(|a| (a.name.clone(), a.f))
                .collect(),
        })
        .collect();
    Graph {
        convs,
        n_nodes: nodes.len(),
        inputs,
        first_ops,
        nodes: all,
    }
}

fn conv_node(ctx: &Ctx<'_>, i: usize, n: &NodeProto, op: ConvOp) -> ConvNode {
    let attr = |name: &str| n.attribute.iter().rev().find(|a| a.name == name);
    let ints = |name: &str| attr(name).map(|a| a.ints.clone()).unwrap_or_default();
    let mut notes = Vec::new();
    let groups = match attr("group").map(|a| a.i) {
        None => 1,
        Some(g) => match usize::try_from(g) {
            Ok(g) if g >= 1 => g,
            _ => {
                notes.push(format!("invalid group attribute {g}, taken as 1"));
                1
            }
        },
    };
    let w_index = if op == ConvOp::QLinearConv { 3 } else { 1 };
    let weight_name = input(n, w_index).unwrap_or_default().to_string();
    let weight = match op {
        ConvOp::Conv | ConvOp::ConvTranspose => ctx.constant(input(n, 1), "weight"),
        ConvOp::ConvInteger => conv_integer_weight(ctx, n, &mut notes),
        ConvOp::QLinearConv => qlinear_weight(ctx, n, &mut notes),
        ConvOp::Conv2d | ConvOp::DepthwiseConv2d => Err("not an ONNX operator".to_string()),
    };
    let bias = match op {
        ConvOp::Conv | ConvOp::ConvTranspose => match input(n, 2) {
            None => None,
            Some(b) => match ctx.constant(Some(b), "bias") {
                Ok(t) => Some(t),
                Err(e) => {
                    notes.push(e);
                    None
                }
            },
        },
        ConvOp::QLinearConv => qlinear_bias(ctx, n, &weight, &mut notes),
        ConvOp::ConvInteger | ConvOp::Conv2d | ConvOp::DepthwiseConv2d => None,
    };
    ConvNode {
        name: if n.name.is_empty() {
            format!("node{i}")
        } else {
            n.name.clone()
        },
        op,
        node_index: i,
        weight_name,
        weight,
        layout: if op == ConvOp::ConvTranspose {
            KernelLayout::IOHW
        } else {
            KernelLayout::OIHW
        },
        bias,
        groups,
        strides: ints("strides"),
        dilations: ints("dilations"),
        pads: ints("pads"),
        auto_pad: attr("auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned()),
        graph_depth: None,
        notes,
    }
}

/// Input `k` of `n` unless absent or omitted ("").
fn input(n: &NodeProto, k: usize) -> Option<&str> {
    n.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

impl Ctx<'_> {
    /// The constant `name` resolves to through `Identity` chains (the reference's `find_tensor`).
    fn constant(&self, name: Option<&str>, what: &str) -> Result<RawTensor, String> {
        let Some(start) = name else {
            return Err(format!("no {what} input"));
        };
        let mut cur = start;
        let mut hops = 0;
        while !self.store.contains(cur) && hops < MAX_IDENTITY_HOPS {
            match self.identity.get(cur) {
                Some(&next) => {
                    cur = next;
                    hops += 1;
                }
                None => break,
            }
        }
        if let Some(t) = self.store.get(cur) {
            return t;
        }
        if hops >= MAX_IDENTITY_HOPS {
            return Err(format!(
                "{what} {start:?}: Identity chain longer than {MAX_IDENTITY_HOPS} nodes (a cycle?)"
            ));
        }
        let origin = match self.producer.get(cur).and_then(|&p| self.nodes.get(p)) {
            Some(p) => format!("output of {} node {:?}", p.op_type, p.name),
            None => "not produced by any node nor an initializer (a graph input?)".to_string(),
        };
        let via = if hops > 0 {
            format!(" (via {hops} Identity node(s) to {cur:?})")
        } else {
            String::new()
        };
        Err(format!("{what} {start:?} is not a constant{via}: {origin}"))
    }

    /// The tensor `name` as a float vector, for scales.
    fn floats(&self, name: Option<&str>, what: &str) -> Result<(Vec<usize>, Vec<f64>), String> {
        let t = self.constant(name, what)?;
        if !t.dtype().is_float() {
            return Err(format!("{what} has element type {}", t.dtype().name()));
        }
        Ok((t.shape().to_vec(), t.to_f64()))
    }

    /// The tensor `name` as integer values, for zero points (absent = 0).
    fn zero_points(&self, name: Option<&str>) -> Result<(Vec<usize>, Vec<f64>), String> {
        if name.is_none() {
            return Ok((vec![], vec![0.0]));
        }
        let t = self.constant(name, "weight zero point")?;
        if t.dtype().is_float() {
            return Err(format!(
                "weight zero point has element type {}",
                t.dtype().name()
            ));
        }
        Ok((t.shape().to_vec(), t.to_f64()))
    }
}

/// Per-tensor or per-output-channel parameter: `values` of `shape` expanded to `o` channels.
/// `channel_pos` is the position of the channel axis counted from the right of a broadcast
/// shape (`None`: only a 1-D `[o]` is accepted).
fn per_channel(
    what: &str,
    shape: &[usize],
    values: Vec<f64>,
    o: usize,
    channel_pos: Option<usize>,
) -> Result<Vec<f64>, String> {
    if values.len() == 1 {
        return Ok(vec![values[0]; o]);
    }
    let ok = values.len() == o
        && match channel_pos {
            None => shape.len() == 1,
            Some(p) => {
                shape.len() > p
                    && shape
                        .iter()
                        .rev()
                        .enumerate()
                        .all(|(k, &d)| if k == p { d == o } else { d == 1 })
            }
        };
    if ok {
        Ok(values)
    } else {
        Err(format!(
            "{what} of shape {shape:?} is neither per-tensor nor per-output-channel for {o} output channels"
        ))
    }
}

/// `(q - zero_point[c]) * scale[c]` as f32, `c` the output channel (axis 0).
fn dequantize(q: &RawTensor, zp: &[f64], scale: &[f64]) -> Result<RawTensor, String> {
    let o = q.shape().first().copied().unwrap_or(0);
    let n = q.numel();
    let inner = n.checked_div(o).unwrap_or(0);
    let values = q.to_f64();
    let mut out = Vec::with_capacity(n.saturating_mul(4));
    for (k, v) in values.iter().enumerate() {
        let c = k.checked_div(inner).unwrap_or(0);
        let (z, s) = match (zp.get(c), scale.get(c)) {
            (Some(z), Some(s)) => (*z, *s),
            _ => return Err("internal: channel index out of range".into()),
        };
        // (q - zp) is an exact small integer; one rounding, as numpy in float32
        let x = (*v - z) as f32 * s as f32;
        out.extend_from_slice(&x.to_le_bytes());
    }
    RawTensor::contiguous(DType::F32, q.shape().to_vec(), Blob::from_vec(out))
        .map_err(|e| e.to_string())
}

fn check_quantized(q: &RawTensor) -> Result<usize, String> {
    if !matches!(q.dtype(), DType::I8 | DType::U8) {
        return Err(format!(
            "quantized weight has element type {}, expected int8 or uint8",
            q.dtype().name()
        ));
    }
    match q.shape().first() {
        Some(&o) if q.shape().len() >= 3 => Ok(o),
        _ => Err(format!("quantized weight has shape {:?}", q.shape())),
    }
}

/// `QLinearConv`: w = input 3, w_scale = input 4, w_zero_point = input 5.
fn qlinear_weight(
    ctx: &Ctx<'_>,
    n: &NodeProto,
    notes: &mut Vec<String>,
) -> Result<RawTensor, String> {
    let q = ctx.constant(input(n, 3), "weight")?;
    let o = check_quantized(&q)?;
    let (s_shape, s) = ctx.floats(input(n, 4), "weight scale")?;
    let scale = per_channel("weight scale", &s_shape, s, o, None)?;
    let (z_shape, z) = ctx.zero_points(input(n, 5))?;
    let zp = per_channel("weight zero point", &z_shape, z, o, None)?;
    let w = dequantize(&q, &zp, &scale)?;
    notes.push("dequantized (w - w_zero_point) * w_scale".to_string());
    Ok(w)
}

/// `QLinearConv` bias (input 8, int32) dequantized with `x_scale * w_scale`.
fn qlinear_bias(
    ctx: &Ctx<'_>,
    n: &NodeProto,
    weight: &Result<RawTensor, String>,
    notes: &mut Vec<String>,
) -> Option<RawTensor> {
    let b_name = input(n, 8)?;
    let w = weight.as_ref().ok()?;
    let o = w.shape().first().copied()?;
    let r = (|| -> Result<RawTensor, String> {
        let b = ctx.constant(Some(b_name), "bias")?;
        if b.dtype() != DType::I32 || b.shape() != [o] {
            return Err(format!(
                "bias has type {} and shape {:?}, expected int32 [{o}]",
                b.dtype().name(),
                b.shape()
            ));
        }
        let (xs_shape, xs) = ctx.floats(input(n, 1), "input scale")?;
        if xs.len() != 1 {
            return Err(format!("input scale has shape {xs_shape:?}"));
        }
        let (s_shape, s) = ctx.floats(input(n, 4), "weight scale")?;
        let scale: Vec<f64> = per_channel("weight scale", &s_shape, s, o, None)?
            .into_iter()
            .map(|s| f64::from(s as f32 * xs[0] as f32))
            .collect();
        let q = RawTensor::contiguous(DType::I32, vec![o, 1, 1], b.storage().clone())
            .map_err(|e| e.to_string())?;
        let d = dequantize(&q, &vec![0.0; o], &scale)?;
        RawTensor::contiguous(DType::F32, vec![o], d.storage().clone()).map_err(|e| e.to_string())
    })();
    match r {
        Ok(t) => Some(t),
        Err(e) => {
            notes.push(format!("bias not read: {e}"));
            None
        }
    }
}

/// `ConvInteger`: the weight scale is not an input of the node. Dynamic quantization
/// (onnxruntime's quantizer) writes `DynamicQuantizeLinear(x) -> ConvInteger -> [Add bias] ->
/// Cast -> Mul(., Mul(x_scale, w_scale))`; the weight scale is the constant factor of that
/// second `Mul` whose other factor is the activation scale of this node's input.
fn conv_integer_weight(
    ctx: &Ctx<'_>,
    n: &NodeProto,
    notes: &mut Vec<String>,
) -> Result<RawTensor, String> {
    let q = ctx.constant(input(n, 1), "weight")?;
    let o = check_quantized(&q)?;
    let (s_shape, s) = conv_integer_scale(ctx, n)
        .map_err(|e| format!("ConvInteger: weight scale not found ({e})"))?;
    // the scale multiplies the N, C, spatial... output: channel axis is rank-2 from the right
    let channel_pos = q.shape().len().saturating_sub(2);
    let scale = per_channel("weight scale", &s_shape, s, o, Some(channel_pos))
        .map_err(|e| format!("ConvInteger: {e}"))?;
    let (z_shape, z) = ctx.zero_points(input(n, 3))?;
    let zp = per_channel("weight zero point", &z_shape, z, o, None)?;
    let w = dequantize(&q, &zp, &scale)?;
    notes.push(
        "dequantized (w - w_zero_point) * w_scale, w_scale taken from the dynamic-quantization \
         output Mul"
            .to_string(),
    );
    Ok(w)
}

fn conv_integer_scale(ctx: &Ctx<'_>, n: &NodeProto) -> Result<(Vec<usize>, Vec<f64>), String> {
    let x = input(n, 0).ok_or("no data input")?;
    let dql = ctx
        .producer
        .get(x)
        .and_then(|&p| ctx.nodes.get(p))
        .filter(|p| p.op_type == "DynamicQuantizeLinear" && input_is(p.output.first(), x))
        .ok_or_else(|| format!("input {x:?} is not produced by DynamicQuantizeLinear"))?;
    let x_scale = dql
        .output
        .get(1)
        .filter(|s| !s.is_empty())
        .ok_or("DynamicQuantizeLinear has no scale output")?;
    let mut t = n
        .output
        .first()
        .filter(|s| !s.is_empty())
        .ok_or("no output")?
        .as_str();
    for _ in 0..MAX_SCALE_HOPS {
        let cons = ctx.consumers.get(t).map(Vec::as_slice).unwrap_or(&[]);
        let [c] = cons else {
            return Err(format!(
                "{t:?} feeds {} nodes, expected the single Cast/Mul chain of dynamic quantization",
                cons.len()
            ));
        };
        let c = ctx.nodes.get(*c).ok_or("bad node index")?;
        match c.op_type.as_str() {
            "Add" | "Cast" => {
                t = c
                    .output
                    .first()
                    .filter(|s| !s.is_empty())
                    .ok_or("Add/Cast without output")?;
            }
            "Mul" => {
                let other = match c.input.as_slice() {
                    [a, b] if a == t => b,
                    [a, b] if b == t => a,
                    _ => return Err("output Mul does not have two inputs".into()),
                };
                let m = ctx
                    .producer
                    .get(other.as_str())
                    .and_then(|&p| ctx.nodes.get(p))
                    .filter(|m| m.op_type == "Mul")
                    .ok_or_else(|| format!("{other:?} is not a product of scales"))?;
                let w_scale = match m.input.as_slice() {
                    [a, b] if a == x_scale => b,
                    [a, b] if b == x_scale => a,
                    _ => {
                        return Err(format!(
                            "scale product {other:?} does not use the activation scale {x_scale:?}"
                        ))
                    }
                };
                return ctx.floats(Some(w_scale), "weight scale");
            }
            op => return Err(format!("unexpected {op} node after ConvInteger")),
        }
    }
    Err(format!("no output Mul within {MAX_SCALE_HOPS} nodes"))
}

fn input_is(name: Option<&String>, x: &str) -> bool {
    name.is_some_and(|s| s == x)
}
