//! ONNX reader for convlens.
//!
//! Reads an ONNX `ModelProto` into a [`convlens_core::Checkpoint`]: the initializers and the
//! tensors of `Constant` nodes (raw data is not copied; external data is memory-mapped), and a
//! [`convlens_core::Graph`] with every convolution node (`Conv`, `ConvTranspose`, `ConvInteger`,
//! `QLinearConv`), its resolved (and, for quantized convolutions, dequantized) weight and its
//! graph depth as the reference pipeline defines it.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use convlens_core::limits::{MAX_NAME_LEN, MAX_TENSORS};
use convlens_core::{Blob, Checkpoint, Format, NamedTensor, TensorError};
use prost::Message;

mod depth;
mod graph;
pub mod proto;
mod tensor;

use proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tensor::{Decoded, ExternalFiles};

/// Why an ONNX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The input holds no bytes.
    #[error("empty file")]
    Empty,
    /// The bytes are not a valid protobuf `ModelProto` (wrong format, truncated, nested too
    /// deeply, invalid UTF-8 in a name, ...).
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model has no graph.
    #[error("the model has no graph (not an ONNX model?)")]
    NoGraph,
    /// A tensor's dims are unusable.
    #[error("tensor {name:?}: dims {dims:?} {reason}")]
    Dims {
        /// Tensor name.
        name: String,
        /// Dims as stored.
        dims: Vec<i64>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor's data does not hold `product(dims) * element size` bytes.
    #[error("tensor {name:?}: dims {dims:?} of {dtype} need {expected} bytes but its {location} holds {actual}")]
    DataSize {
        /// Tensor name.
        name: String,
        /// Dims as stored.
        dims: Vec<i64>,
        /// ONNX element type name.
        dtype: &'static str,
        /// Bytes the dims call for.
        expected: usize,
        /// Bytes present.
        actual: usize,
        /// Where the data is (`raw_data`, `external data`).
        location: &'static str,
    },
    /// A typed data field does not hold `product(dims)` values.
    #[error("tensor {name:?}: {field} holds {actual} values but its dims call for {expected}")]
    ElementCount {
        /// Tensor name.
        name: String,
        /// The protobuf field (`float_data`, `int32_data`, ...).
        field: &'static str,
        /// Values the dims call for.
        expected: usize,
        /// Values present.
        actual: usize,
    },
    /// External data is refused or unusable.
    #[error("tensor {name:?}: external data: {reason}")]
    ExternalData {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The tensor view does not fit its data (should not happen after the size checks).
    #[error("tensor {name:?}: {source}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// The core's complaint.
        source: Box<TensorError>,
    },
    /// More tensors than [`MAX_TENSORS`].
    #[error("the model has more than {MAX_TENSORS} tensors")]
    TooManyTensors,
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("a {what} name is {len} bytes long (at most {MAX_NAME_LEN})")]
    NameTooLong {
        /// What carries the name (tensor, node).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// Reads an ONNX model from `data`.
///
/// `base_dir`: folder of the .onnx file, for external data; None = external data refused.
/// Tensors come in initializer order, then `Constant` node outputs in node order; the graph
/// lists the convolution nodes in node order. Tensors of element types convlens cannot
/// represent (strings, unsigned 16/32/64-bit, complex, 8/4-bit floats) are skipped with a note.
pub fn read(data: Blob, base_dir: Option<&Path>) -> Result<Checkpoint, OnnxError> {
    if data.is_empty() {
        return Err(OnnxError::Empty);
    }
    let model = ModelProto::decode(Bytes::from_owner(data))?;
    let g = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    let mut notes = Vec::new();
    let mut ext = ExternalFiles::new(base_dir);
    let mut store = TensorStore::default();

    for t in &g.initializer {
        check_name("tensor", &t.name)?;
        let d = tensor::decode(t, &t.name, &mut ext)?;
        store.add(&t.name, d, Source::Initializer, &mut notes)?;
        if t.segment.is_some() {
            notes.push(format!("tensor {:?}: segment ignored", t.name));
        }
    }
    let mut subgraph_nodes = 0usize;
    for (i, n) in g.node.iter().enumerate() {
        check_name("node", &n.name)?;
        if n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            subgraph_nodes += 1;
        }
        if n.op_type != "Constant" {
            continue;
        }
        let Some(out) = n.output.first().filter(|o| !o.is_empty()) else {
            notes.push(format!("Constant node {i} has no output name, skipped"));
            continue;
        };
        check_name("tensor", out)?;
        match constant_value(n, out, &mut ext)? {
            Some(d) => store.add(out, d, Source::Constant, &mut notes)?,
            None => notes.push(format!(
                "Constant node {i} ({out:?}) has no tensor, float or int value, skipped"
            )),
        }
    }
    if subgraph_nodes > 0 {
        notes.push(format!(
            "{subgraph_nodes} node(s) hold subgraphs (If/Loop/Scan bodies): their contents are not read"
        ));
    }

    let graph = graph::build(g, &store, &mut notes);

    let mut metadata = vec![
        ("producer_name".to_string(), model.producer_name.clone()),
        (
            "producer_version".to_string(),
            model.producer_version.clone(),
        ),
        ("ir_version".to_string(), model.ir_version.to_string()),
        (
            "opset".to_string(),
            model
                .opset_import
                .iter()
                .map(|o| {
                    let d = if o.domain.is_empty() {
                        "ai.onnx"
                    } else {
                        &o.domain
                    };
                    format!("{d} {}", o.version)
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    if !model.domain.is_empty() {
        metadata.push(("domain".to_string(), model.domain.clone()));
    }
    if model.model_version != 0 {
        metadata.push(("model_version".to_string(), model.model_version.to_string()));
    }
    if !g.name.is_empty() {
        metadata.push(("graph_name".to_string(), g.name.clone()));
    }
    for p in &model.metadata_props {
        metadata.push((format!("metadata_props.{}", p.key), p.value.clone()));
    }

    Ok(Checkpoint {
        format: Format::Onnx,
        tensors: store.tensors,
        graph: Some(graph),
        order_source: "graph".to_string(),
        notes,
        metadata,
    })
}

/// True when `bytes` (a whole file) look like an ONNX `ModelProto`: the leading top-level
/// protobuf fields are all `ModelProto` fields with their proper wire types and lengths inside
/// the file, and one of them is a plausible `ir_version`, a graph or an opset import.
pub fn sniff(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    let mut fields = 0;
    let mut strong = false;
    while pos < bytes.len() && fields < 16 {
        let Some((tag, n)) = read_varint(bytes.get(pos..).unwrap_or(&[])) else {
            break;
        };
        pos += n;
        let (field, wire) = (tag >> 3, tag & 7);
        let expected = match field {
            1 | 5 => 0,
            2 | 3 | 4 | 6 | 7 | 8 | 14 | 20 | 25 => 2,
            _ => return false,
        };
        if wire != expected {
            return false;
        }
        let Some((value, n)) = read_varint(bytes.get(pos..).unwrap_or(&[])) else {
            break;
        };
        pos += n;
        fields += 1;
        if wire == 0 {
            if field == 1 && (1..=64).contains(&value) {
                strong = true;
            }
            continue;
        }
        match usize::try_from(value).ok().and_then(|v| pos.checked_add(v)) {
            Some(end) if end <= bytes.len() => pos = end,
            _ => return false, // runs past the end of the file
        }
        if field == 7 || field == 8 {
            strong = true;
        }
    }
    strong
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn check_name(what: &'static str, name: &str) -> Result<(), OnnxError> {
    if name.len() > MAX_NAME_LEN {
        return Err(OnnxError::NameTooLong {
            what,
            len: name.len(),
        });
    }
    Ok(())
}

/// The tensor a `Constant` node produces, from `value` (as the reference) or, failing that,
/// `value_float(s)` / `value_int(s)`.
fn constant_value(
    n: &NodeProto,
    out: &str,
    ext: &mut ExternalFiles<'_>,
) -> Result<Option<Decoded>, OnnxError> {
    let find = |name: &str| -> Option<&AttributeProto> {
        n.attribute.iter().rev().find(|a| a.name == name)
    };
    if let Some(a) = find("value") {
        let t = a.t.clone().unwrap_or_default();
        return tensor::decode(&t, out, ext).map(Some);
    }
    let synth = |dims: Vec<i64>, data_type: i32| TensorProto {
        dims,
        data_type,
        ..Default::default()
    };
    let t = if let Some(a) = find("value_float") {
        TensorProto {
            float_data: vec![a.f],
            ..synth(vec![], proto::data_type::FLOAT)
        }
    } else if let Some(a) = find("value_floats") {
        TensorProto {
            float_data: a.floats.clone(),
            ..synth(vec![a.floats.len() as i64], proto::data_type::FLOAT)
        }
    } else if let Some(a) = find("value_int") {
        TensorProto {
            int64_data: vec![a.i],
            ..synth(vec![], proto::data_type::INT64)
        }
    } else if let Some(a) = find("value_ints") {
        TensorProto {
            int64_data: a.ints.clone(),
            ..synth(vec![a.ints.len() as i64], proto::data_type::INT64)
        }
    } else if let Some(a) = n.attribute.first() {
        return Ok(Some(Decoded::Unsupported(format!(
            "Constant {out:?}: attribute {:?} is not supported, tensor skipped",
            a.name
        ))));
    } else {
        return Ok(None);
    };
    tensor::decode(&t, out, ext).map(Some)
}

/// Where a named tensor came from (initializers shadow constants, as in the reference).
#[derive(Clone, Copy)]
enum Source {
    Initializer,
    Constant,
}

/// A named tensor: its index in [`TensorStore::tensors`], or why it is unusable.
#[derive(Clone)]
pub(crate) enum Slot {
    Index(usize),
    Unsupported(String),
}

/// Tensors in order of appearance plus name lookups for initializers and constants.
#[derive(Default)]
pub(crate) struct TensorStore {
    tensors: Vec<NamedTensor>,
    inits: HashMap<String, Slot>,
    consts: HashMap<String, Slot>,
}

impl TensorStore {
    fn add(
        &mut self,
        name: &str,
        d: Decoded,
        src: Source,
        notes: &mut Vec<String>,
    ) -> Result<(), OnnxError> {
        let slot = match d {
            Decoded::Tensor(tensor) => {
                if self.tensors.len() >= MAX_TENSORS {
                    return Err(OnnxError::TooManyTensors);
                }
                self.tensors.push(NamedTensor {
                    name: name.to_string(),
                    tensor,
                });
                Slot::Index(self.tensors.len() - 1)
            }
            Decoded::Unsupported(note) => {
                let s = Slot::Unsupported(note.clone());
                notes.push(note);
                s
            }
        };
        // later definitions of a name win, as in the reference's dicts
        match src {
            Source::Initializer => self.inits.insert(name.to_string(), slot),
            Source::Constant => self.consts.insert(name.to_string(), slot),
        };
        Ok(())
    }

    /// True when `name` is an initializer or a constant.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.inits.contains_key(name) || self.consts.contains_key(name)
    }

    /// True when `name` is an initializer.
    pub(crate) fn is_initializer(&self, name: &str) -> bool {
        self.inits.contains_key(name)
    }

    /// The tensor called `name` (initializer first), `None` when there is none.
    pub(crate) fn get(&self, name: &str) -> Option<Result<convlens_core::RawTensor, String>> {
        let slot = self.inits.get(name).or_else(|| self.consts.get(name))?;
        Some(match slot {
            Slot::Index(i) => self
                .tensors
                .get(*i)
                .map(|t| t.tensor.clone())
                .ok_or_else(|| format!("tensor {name:?} missing")),
            Slot::Unsupported(why) => Err(why.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_accepts_model_headers_and_rejects_others() {
        // ir_version 8, producer "pytorch"
        assert!(sniff(b"\x08\x08\x12\x07pytorch"));
        // producer then graph (no ir_version)
        assert!(sniff(b"\x12\x01p\x3a\x00"));
        assert!(!sniff(b""));
        assert!(!sniff(b"PK\x03\x04"));
        assert!(!sniff(b"\x93NUMPY\x01\x00"));
        // safetensors-like header length
        assert!(!sniff(&[0x34, 0x12, 0, 0, 0, 0, 0, 0, b'{']));
        assert!(!sniff(&[0x08, 0x10, 0, 0, 0, 0, 0, 0, b'{']));
        // only a producer name: not enough evidence
        assert!(!sniff(b"\x12\x01p"));
    }
}
