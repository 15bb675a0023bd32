//! The parts of the TFLite schema (`schema.fbs`, `tflite::Model`) convlens reads, copied out
//! of the flatbuffer with every length charged to a [`Budget`].

use convlens_core::limits::{MAX_NAME_LEN, MAX_RANK, MAX_TENSORS};

use crate::fb::{Budget, Table, Vector};
use crate::TfliteError;

/// Most operators in a subgraph.
pub(crate) const MAX_OPERATORS: usize = 1 << 20;
/// Most buffers in a model.
pub(crate) const MAX_BUFFERS: usize = 1 << 20;

// field ids (schema.fbs declaration order)
mod id {
    pub const MODEL_VERSION: usize = 0;
    pub const MODEL_OPCODES: usize = 1;
    pub const MODEL_SUBGRAPHS: usize = 2;
    pub const MODEL_DESCRIPTION: usize = 3;
    pub const MODEL_BUFFERS: usize = 4;
    pub const OPCODE_DEPRECATED: usize = 0;
    pub const OPCODE_CUSTOM: usize = 1;
    pub const OPCODE_BUILTIN: usize = 3;
    pub const SG_TENSORS: usize = 0;
    pub const SG_INPUTS: usize = 1;
    pub const SG_OUTPUTS: usize = 2;
    pub const SG_OPERATORS: usize = 3;
    pub const SG_NAME: usize = 4;
    pub const T_SHAPE: usize = 0;
    pub const T_TYPE: usize = 1;
    pub const T_BUFFER: usize = 2;
    pub const T_NAME: usize = 3;
    pub const T_QUANT: usize = 4;
    pub const T_SPARSITY: usize = 6;
    pub const Q_SCALE: usize = 2;
    pub const Q_ZERO_POINT: usize = 3;
    pub const Q_DIM: usize = 6;
    pub const OP_OPCODE: usize = 0;
    pub const OP_INPUTS: usize = 1;
    pub const OP_OUTPUTS: usize = 2;
    pub const OP_OPTIONS: usize = 4;
    pub const B_DATA: usize = 0;
    pub const B_OFFSET: usize = 1;
    pub const B_SIZE: usize = 2;
}

/// Builtin operator codes used by the reader.
pub(crate) mod op {
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const DENSIFY: i32 = 124;
}

/// Quantization parameters of a tensor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub dim: i32,
}

/// A tensor of a subgraph.
pub(crate) struct Tensor<'a> {
    pub name: String,
    /// Shape as stored (-1 = unknown).
    pub shape: Vec<i32>,
    pub dtype: u8,
    pub buffer: u32,
    pub quant: Option<Quant>,
    pub sparsity: Option<Table<'a>>,
}

/// An operator of a subgraph.
pub(crate) struct Operator<'a> {
    pub code: i32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Option<Table<'a>>,
}

/// A buffer: bytes in the flatbuffer, or at an offset of the file (models over 2 GiB).
pub(crate) enum BufferData {
    Empty,
    Range(std::ops::Range<usize>),
}

/// The model: operator codes, subgraph 0, buffers.
pub(crate) struct Model<'a> {
    pub version: u32,
    pub description: String,
    pub opcodes: Vec<(i32, String)>,
    pub n_subgraphs: usize,
    pub subgraph_name: String,
    pub tensors: Vec<Tensor<'a>>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator<'a>>,
    pub buffers: Vec<BufferData>,
}

fn count(v: &Option<Vector<'_>>) -> usize {
    v.as_ref().map_or(0, Vector::len)
}

fn cap(what: &'static str, n: usize, max: usize) -> Result<(), TfliteError> {
    if n > max {
        return Err(TfliteError::TooMany {
            what,
            count: n,
            max,
        });
    }
    Ok(())
}

fn ints(
    v: Option<Vector<'_>>,
    budget: &mut Budget,
    what: &'static str,
) -> Result<Vec<i32>, TfliteError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    budget.charge(v.len(), what)?;
    (0..v.len()).map(|i| v.i32(i)).collect()
}

fn name(
    t: &Table<'_>,
    field: usize,
    what: &'static str,
    budget: &mut Budget,
) -> Result<String, TfliteError> {
    let len = t.string_len(field, what)?;
    if len > MAX_NAME_LEN {
        return Err(TfliteError::NameTooLong { what, len });
    }
    budget.charge(len, what)?;
    t.string(field, what)
}

/// Parses the model table of `buf`.
pub(crate) fn parse<'a>(buf: &'a [u8], budget: &mut Budget) -> Result<Model<'a>, TfliteError> {
    let root = Table::root(buf, "model")?;
    let version = root.u32(id::MODEL_VERSION, 0)?;
    let description = name(&root, id::MODEL_DESCRIPTION, "model description", budget)?;

    let codes = root.vector(id::MODEL_OPCODES, 4, "operator codes")?;
    cap("operator codes", count(&codes), MAX_OPERATORS)?;
    let mut opcodes = Vec::with_capacity(count(&codes));
    if let Some(v) = codes {
        for i in 0..v.len() {
            let t = v.table(i)?;
            let dep = i32::from(t.i8(id::OPCODE_DEPRECATED, 0)?);
            let builtin = t.i32(id::OPCODE_BUILTIN, 0)?;
            let custom = name(&t, id::OPCODE_CUSTOM, "custom operator code", budget)?;
            // TFLite's GetBuiltinCode: the larger of the two fields
            opcodes.push((dep.max(builtin), custom));
        }
    }

    let bufs = root.vector(id::MODEL_BUFFERS, 4, "buffers")?;
    cap("buffers", count(&bufs), MAX_BUFFERS)?;
    let mut buffers = Vec::with_capacity(count(&bufs));
    if let Some(v) = bufs {
        for i in 0..v.len() {
            let t = v.table(i)?;
            let data = t.vector(id::B_DATA, 1, "buffer data")?;
            let b = match data {
                Some(d) if d.len() > 0 => BufferData::Range(d.range()),
                _ => {
                    let off = t.u64(id::B_OFFSET, 0)?;
                    let size = t.u64(id::B_SIZE, 0)?;
                    if off > 1 {
                        let end = off
                            .checked_add(size)
                            .filter(|&e| e <= buf.len() as u64)
                            .ok_or(TfliteError::OutOfBounds {
                                what: "buffer data (offset/size)",
                                offset: off,
                                len: size,
                                size: buf.len(),
                            })?;
                        BufferData::Range(off as usize..end as usize)
                    } else {
                        BufferData::Empty
                    }
                }
            };
            buffers.push(b);
        }
    }

    let sgs = root
        .vector(id::MODEL_SUBGRAPHS, 4, "subgraphs")?
        .filter(|v| v.len() > 0)
        .ok_or(TfliteError::NoSubgraph)?;
    let sg = sgs.table(0)?;
    let subgraph_name = name(&sg, id::SG_NAME, "subgraph name", budget)?;
    let tv = sg.vector(id::SG_TENSORS, 4, "tensors")?;
    cap("tensors", count(&tv), MAX_TENSORS)?;
    let mut tensors = Vec::with_capacity(count(&tv));
    if let Some(v) = tv {
        for i in 0..v.len() {
            let t = v.table(i)?;
            let shape = ints(
                t.vector(id::T_SHAPE, 4, "tensor shape")?,
                budget,
                "tensor shapes",
            )?;
            if shape.len() > MAX_RANK {
                return Err(TfliteError::Tensor {
                    index: i,
                    reason: format!("{} dimensions (at most {MAX_RANK})", shape.len()),
                });
            }
            let quant = match t.table(id::T_QUANT, "quantization parameters")? {
                None => None,
                Some(q) => {
                    let scale = q.vector(id::Q_SCALE, 4, "quantization scale")?;
                    let zp = q.vector(id::Q_ZERO_POINT, 8, "quantization zero point")?;
                    budget.charge(count(&scale) + count(&zp), "quantization parameters")?;
                    let scale: Vec<f32> = match scale {
                        None => Vec::new(),
                        Some(v) => (0..v.len()).map(|k| v.f32(k)).collect::<Result<_, _>>()?,
                    };
                    let zero_point: Vec<i64> = match zp {
                        None => Vec::new(),
                        Some(v) => (0..v.len()).map(|k| v.i64(k)).collect::<Result<_, _>>()?,
                    };
                    (!scale.is_empty()).then_some(Quant {
                        scale,
                        zero_point,
                        dim: q.i32(id::Q_DIM, 0)?,
                    })
                }
            };
            tensors.push(Tensor {
                name: name(&t, id::T_NAME, "tensor name", budget)?,
                shape,
                dtype: t.u8(id::T_TYPE, 0)?,
                buffer: t.u32(id::T_BUFFER, 0)?,
                quant,
                sparsity: t.table(id::T_SPARSITY, "sparsity parameters")?,
            });
        }
    }
    let inputs = ints(
        sg.vector(id::SG_INPUTS, 4, "subgraph inputs")?,
        budget,
        "subgraph inputs",
    )?;
    let outputs = ints(
        sg.vector(id::SG_OUTPUTS, 4, "subgraph outputs")?,
        budget,
        "subgraph outputs",
    )?;
    let ov = sg.vector(id::SG_OPERATORS, 4, "operators")?;
    cap("operators", count(&ov), MAX_OPERATORS)?;
    let mut operators = Vec::with_capacity(count(&ov));
    if let Some(v) = ov {
        for i in 0..v.len() {
            let t = v.table(i)?;
            let idx = t.u32(id::OP_OPCODE, 0)? as usize;
            let code = opcodes.get(idx).map(|c| c.0).ok_or(TfliteError::Operator {
                index: i,
                reason: format!(
                    "operator code index {idx} out of range ({} codes)",
                    opcodes.len()
                ),
            })?;
            operators.push(Operator {
                code,
                inputs: ints(
                    t.vector(id::OP_INPUTS, 4, "operator inputs")?,
                    budget,
                    "operator inputs",
                )?,
                outputs: ints(
                    t.vector(id::OP_OUTPUTS, 4, "operator outputs")?,
                    budget,
                    "operator outputs",
                )?,
                options: t.table(id::OP_OPTIONS, "operator options")?,
            });
        }
    }
    Ok(Model {
        version,
        description,
        opcodes,
        n_subgraphs: sgs.len(),
        subgraph_name,
        tensors,
        inputs,
        outputs,
        operators,
        buffers,
    })
}
