//! TensorFlow Lite reader for convlens.
//!
//! Reads a `.tflite` flatbuffer (TFLite schema, file identifier `TFL3`) into a
//! [`convlens_core::Checkpoint`]: the dense constant tensors, and a [`convlens_core::Graph`]
//! with every `CONV_2D` (weights OHWI) and `DEPTHWISE_CONV_2D` (weights 1HWO) of the main
//! subgraph, their weights as OIHW views, followed through `DEQUANTIZE` (fp16, int8/uint8/int16
//! per tensor or per channel) and `DENSIFY` (sparse weights), and their graph depth from the
//! operator graph (as for ONNX).
//!
//! The flatbuffer is parsed by hand with bounds-checked table access; every length read from
//! the file is checked against the file before anything is allocated for it, and all copies
//! out of the file are capped in proportion to its size.

use convlens_core::depth::graph_depths;
use convlens_core::limits::MAX_NAME_LEN;
use convlens_core::{
    Blob, Checkpoint, ConvNode, ConvOp, Format, Graph, GraphNode, KernelLayout, NamedTensor,
};

mod fb;
mod model;
mod opnames;
mod weights;

use fb::Budget;
use model::{op, Model};
use weights::{op_name, Resolver};

/// Elements copied out of the file (names, shapes, operator inputs, quantization parameters)
/// may total at most this many per byte of file, plus [`COPY_BUDGET_BASE`].
pub const COPY_BUDGET_PER_BYTE: usize = 2;
/// Fixed part of the copy budget.
pub const COPY_BUDGET_BASE: usize = 1 << 20;
/// Dequantized and densified weights may total at most this many bytes per byte of file, plus
/// [`DECODE_BUDGET_BASE`].
pub const DECODE_BUDGET_PER_BYTE: usize = 16;
/// Fixed part of the decode budget.
pub const DECODE_BUDGET_BASE: usize = 64 << 20;

/// Why a TFLite file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TfliteError {
    /// The input holds no bytes.
    #[error("empty file")]
    Empty,
    /// The file is not a TFLite flatbuffer.
    #[error("not a TFLite flatbuffer: {0}")]
    NotTflite(String),
    /// An offset or length points outside the file (truncated or corrupt file).
    #[error("{what} at byte {offset} ({len} bytes) lies outside the file ({size} bytes): truncated or corrupt")]
    OutOfBounds {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// File size.
        size: usize,
    },
    /// A table's vtable is unusable.
    #[error("{what} table at byte {offset}: {reason}")]
    BadTable {
        /// What table.
        what: &'static str,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// More entries than a named cap.
    #[error("{count} {what} (at most {max})")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// How many the file declares.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// The data copied or decoded out of the file would exceed its budget (shared tables
    /// referenced many times, or a sparse tensor far larger than the file).
    #[error("{what} exceed the limit of {limit} for a file of this size")]
    TooLarge {
        /// What is counted.
        what: &'static str,
        /// The budget.
        limit: usize,
    },
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("a {what} is {len} bytes long (at most {MAX_NAME_LEN})")]
    NameTooLong {
        /// What carries the name.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The model has no subgraph.
    #[error("the model has no subgraph")]
    NoSubgraph,
    /// A tensor description is unusable.
    #[error("tensor {index}: {reason}")]
    Tensor {
        /// Tensor index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The subgraph's input or output list is unusable.
    #[error("subgraph: {0}")]
    Subgraph(String),
    /// An operator is unusable.
    #[error("operator {index}: {reason}")]
    Operator {
        /// Operator index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// True when `bytes` start like a TFLite flatbuffer: a root offset inside the file and the
/// file identifier `TFL3`.
pub fn sniff(bytes: &[u8]) -> bool {
    bytes.len() >= 8
        && &bytes[4..8] == b"TFL3"
        && (u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize) < bytes.len()
}

/// Reads a TFLite model from `data`.
///
/// Only the main subgraph (subgraph 0) is read; the others (control-flow bodies) are counted
/// in a note. Convolution weights that cannot be resolved (not constant, unsupported type,
/// inconsistent sparsity or quantization) are reported per layer in [`ConvNode::weight`].
pub fn read(data: Blob) -> Result<Checkpoint, TfliteError> {
    let bytes = data.as_slice();
    if bytes.is_empty() {
        return Err(TfliteError::Empty);
    }
    if bytes.len() < 8 {
        return Err(TfliteError::NotTflite(format!(
            "only {} bytes",
            bytes.len()
        )));
    }
    if &bytes[4..8] != b"TFL3" {
        return Err(TfliteError::NotTflite(format!(
            "file identifier {:?} instead of \"TFL3\"",
            String::from_utf8_lossy(&bytes[4..8])
        )));
    }
    let mut copy = Budget::new(
        bytes
            .len()
            .saturating_mul(COPY_BUDGET_PER_BYTE)
            .saturating_add(COPY_BUDGET_BASE),
    );
    let m = model::parse(bytes, &mut copy)?;
    let n_tensors = m.tensors.len();
    let check = |what: &str, v: &[i32], op: Option<usize>| -> Result<(), TfliteError> {
        for &t in v {
            if t < -1 || t >= n_tensors as i32 {
                let reason = format!("{what} tensor index {t} out of range ({n_tensors} tensors)");
                return Err(match op {
                    Some(index) => TfliteError::Operator { index, reason },
                    None => TfliteError::Subgraph(reason),
                });
            }
        }
        Ok(())
    };
    check("subgraph input", &m.inputs, None)?;
    check("subgraph output", &m.outputs, None)?;
    let mut producer: Vec<Option<usize>> = vec![None; n_tensors];
    for (i, o) in m.operators.iter().enumerate() {
        check("input", &o.inputs, Some(i))?;
        check("output", &o.outputs, Some(i))?;
        for &t in &o.outputs {
            if let Some(p) = usize::try_from(t).ok().and_then(|t| producer.get_mut(t)) {
                p.get_or_insert(i);
            }
        }
    }
    let mut notes = Vec::new();
    if m.n_subgraphs > 1 {
        notes.push(format!(
            "{} further subgraph(s) (control-flow bodies) are not read",
            m.n_subgraphs - 1
        ));
    }

    let names = unique_names(&m);
    let depths = graph_depths(
        m.operators.iter().map(|o| {
            (
                o.inputs
                    .iter()
                    .copied()
                    .filter(|&t| t >= 0)
                    .collect::<Vec<_>>(),
                o.outputs
                    .iter()
                    .copied()
                    .filter(|&t| t >= 0)
                    .collect::<Vec<_>>(),
            )
        }),
        &m.inputs,
    );
    if depths.cyclic > 0 {
        notes.push(format!(
            "the graph has a cycle: {} operator(s) on or after it have no depth",
            depths.cyclic
        ));
    }
    let decode = Budget::new(
        bytes
            .len()
            .saturating_mul(DECODE_BUDGET_PER_BYTE)
            .saturating_add(DECODE_BUDGET_BASE),
    );
    let mut res = Resolver::new(&m, &data, producer, decode);

    let mut convs = Vec::new();
    for (i, o) in m.operators.iter().enumerate() {
        let (conv_op, layout) = match o.code {
            op::CONV_2D => (ConvOp::Conv2d, KernelLayout::OHWI),
            op::DEPTHWISE_CONV_2D => (ConvOp::DepthwiseConv2d, KernelLayout::IHWO),
            _ => continue,
        };
        let mut c = conv_node(&m, &names, &mut res, i, conv_op, layout)?;
        c.graph_depth = depths.depth.get(i).copied().flatten();
        convs.push(c);
    }

    let mut tensors = Vec::new();
    let mut unreadable = 0usize;
    for t in &m.tensors {
        match res.dense_constant(t) {
            Ok(Some(tensor)) => tensors.push(NamedTensor {
                name: t.name.clone(),
                tensor,
            }),
            Ok(None) => {}
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        notes.push(format!(
            "{unreadable} constant tensor(s) of unsupported type or size are not listed"
        ));
    }

    let nodes = m
        .operators
        .iter()
        .map(|o| GraphNode {
            name: String::new(),
            op_type: op_name(o.code),
            inputs: o
                .inputs
                .iter()
                .filter_map(|&t| name_of(&names, t))
                .collect(),
            outputs: o
                .outputs
                .iter()
                .filter_map(|&t| name_of(&names, t))
                .collect(),
            float_attrs: Vec::new(),
        })
        .collect::<Vec<_>>();
    let first_ops = m
        .operators
        .iter()
        .filter(|o| o.inputs.iter().any(|t| m.inputs.contains(t) && *t >= 0))
        .map(|o| op_name(o.code))
        .collect();
    let graph = Graph {
        convs,
        n_nodes: m.operators.len(),
        inputs: m
            .inputs
            .iter()
            .filter_map(|&t| name_of(&names, t))
            .collect(),
        first_ops,
        nodes,
    };
    let mut metadata = vec![
        ("tflite_schema_version".to_string(), m.version.to_string()),
        ("description".to_string(), m.description.clone()),
    ];
    if !m.subgraph_name.is_empty() {
        metadata.push(("subgraph".to_string(), m.subgraph_name.clone()));
    }
    let customs: Vec<&str> = m
        .opcodes
        .iter()
        .filter(|c| !c.1.is_empty())
        .map(|c| c.1.as_str())
        .collect();
    if !customs.is_empty() {
        metadata.push(("custom_operators".to_string(), customs.join(", ")));
    }
    Ok(Checkpoint {
        format: Format::TfLite,
        tensors,
        graph: Some(graph),
        order_source: "graph".to_string(),
        notes,
        metadata,
    })
}

/// A unique name per tensor: its own, or `name#index` when empty or shared.
fn unique_names(m: &Model<'_>) -> Vec<String> {
    let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for t in &m.tensors {
        *count.entry(t.name.as_str()).or_default() += 1;
    }
    m.tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.name.is_empty() || count.get(t.name.as_str()).copied().unwrap_or(0) > 1 {
                format!("{}#{i}", t.name)
            } else {
                t.name.clone()
            }
        })
        .collect()
}

fn name_of(names: &[String], t: i32) -> Option<String> {
    usize::try_from(t).ok().and_then(|t| names.get(t)).cloned()
}

/// Padding, strides, dilations and depth multiplier of a convolution's options table.
struct Geometry {
    padding: i8,
    stride: [i32; 2],
    dilation: [i32; 2],
    depth_multiplier: Option<i32>,
    activation: i8,
}

fn geometry(o: &model::Operator<'_>, depthwise: bool) -> Result<Geometry, TfliteError> {
    let Some(t) = o.options else {
        return Ok(Geometry {
            padding: 0,
            stride: [1, 1],
            dilation: [1, 1],
            depth_multiplier: None,
            activation: 0,
        });
    };
    // Conv2DOptions: padding, stride_w, stride_h, fused_activation_function,
    // dilation_w_factor, dilation_h_factor; DepthwiseConv2DOptions inserts depth_multiplier
    // before fused_activation_function.
    let k = usize::from(depthwise);
    Ok(Geometry {
        padding: t.i8(0, 0)?,
        stride: [t.i32(2, 1)?, t.i32(1, 1)?],
        dilation: [t.i32(5 + k, 1)?, t.i32(4 + k, 1)?],
        depth_multiplier: if depthwise { Some(t.i32(3, 1)?) } else { None },
        activation: t.i8(3 + k, 0)?,
    })
}

fn conv_node(
    m: &Model<'_>,
    names: &[String],
    res: &mut Resolver<'_, '_>,
    i: usize,
    op: ConvOp,
    layout: KernelLayout,
) -> Result<ConvNode, TfliteError> {
    let o = &m.operators[i];
    let depthwise = op == ConvOp::DepthwiseConv2d;
    let g = geometry(o, depthwise)?;
    let mut notes = Vec::new();
    let input = |k: usize| o.inputs.get(k).and_then(|&t| usize::try_from(t).ok());
    let out_name = o
        .outputs
        .first()
        .and_then(|&t| name_of(names, t))
        .unwrap_or_else(|| format!("operator{i}"));
    let (weight, weight_name) = match input(1) {
        None => (Err("no weight input".to_string()), String::new()),
        Some(w) => match res.resolve(w) {
            Ok((t, root, n)) => {
                notes.extend(n);
                let view = match t.shape() {
                    [a, ..] if depthwise && *a != 1 => Err(format!(
                        "depthwise weight has shape {:?}, expected (1, kh, kw, out)",
                        t.shape()
                    )),
                    _ => layout
                        .oihw_view(&t)
                        .map_err(|e| format!("weight of shape {:?}: {e}", t.shape())),
                };
                (view, root)
            }
            Err(e) => (Err(e), names.get(w).cloned().unwrap_or_default()),
        },
    };
    let bias = match input(2) {
        None => None,
        Some(b) => match res.resolve(b) {
            Ok((t, _, _)) => Some(t),
            Err(e) => {
                notes.push(format!("bias not read: {e}"));
                None
            }
        },
    };
    // groups: input channels / filter depth (CONV_2D), input channels (DEPTHWISE_CONV_2D)
    let in_ch = input(0)
        .and_then(|t| m.tensors.get(t))
        .and_then(|t| t.shape.get(3).copied())
        .and_then(|c| usize::try_from(c).ok())
        .filter(|&c| c > 0);
    let groups = match (&weight, in_ch) {
        (Ok(w), Some(c)) => {
            let per = if depthwise { 1 } else { w.shape()[1] };
            if per > 0 && c % per == 0 {
                c / per
            } else {
                notes.push(format!(
                    "input has {c} channels, not a multiple of the filter depth {per}"
                ));
                1
            }
        }
        (Ok(w), None) if depthwise => {
            let out = w.shape()[0];
            match g.depth_multiplier.and_then(|d| usize::try_from(d).ok()) {
                Some(d) if d > 0 && out % d == 0 => out / d,
                _ => out,
            }
        }
        _ => 1,
    };
    if let Some(d) = g.depth_multiplier.filter(|&d| d != 1) {
        notes.push(format!("depth_multiplier {d}"));
    }
    let act = match g.activation {
        0 => None,
        1 => Some("RELU"),
        2 => Some("RELU_N1_TO_1"),
        3 => Some("RELU6"),
        4 => Some("TANH"),
        5 => Some("SIGN_BIT"),
        _ => Some("unknown"),
    };
    if let Some(a) = act {
        notes.push(format!("fused activation {a}"));
    }
    Ok(ConvNode {
        name: out_name,
        op,
        node_index: i,
        weight_name,
        weight,
        layout: KernelLayout::OIHW,
        bias,
        groups,
        strides: g.stride.iter().map(|&s| i64::from(s)).collect(),
        dilations: g.dilation.iter().map(|&s| i64::from(s)).collect(),
        pads: Vec::new(),
        // TFLite SAME pads the extra row/column at the end, as ONNX SAME_UPPER
        auto_pad: Some(
            if g.padding == 1 {
                "VALID"
            } else {
                "SAME_UPPER"
            }
            .to_string(),
        ),
        graph_depth: None,
        notes,
    })
}
