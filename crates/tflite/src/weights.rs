//! Constant tensors of a TFLite model, followed back from a convolution's weight input through
//! `DEQUANTIZE` (fp16 → fp32, integer → `(q − zero_point) · scale`) and `DENSIFY` (TFLite
//! sparsity) to the buffer that holds them.

use std::collections::HashMap;

use convlens_core::{Blob, DType, RawTensor};

use crate::fb::{Budget, Table};
use crate::model::{op, BufferData, Model, Quant, Tensor};
use crate::opnames::BUILTIN_NAMES;

/// Longest `DEQUANTIZE` / `DENSIFY` chain followed from a weight to its buffer.
pub(crate) const MAX_PRODUCER_HOPS: usize = 8;

/// The element type of TFLite `TensorType` `code`, `None` for types convlens cannot represent.
pub(crate) fn dtype(code: u8) -> Option<DType> {
    Some(match code {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::I32,
        3 => DType::U8,
        4 => DType::I64,
        6 => DType::Bool,
        7 => DType::I16,
        9 => DType::I8,
        10 => DType::F64,
        18 => DType::BF16,
        _ => return None,
    })
}

/// The name of TFLite `TensorType` `code`.
pub(crate) fn dtype_name(code: u8) -> String {
    const NAMES: [&str; 19] = [
        "FLOAT32",
        "FLOAT16",
        "INT32",
        "UINT8",
        "INT64",
        "STRING",
        "BOOL",
        "INT16",
        "COMPLEX64",
        "INT8",
        "FLOAT64",
        "COMPLEX128",
        "UINT64",
        "RESOURCE",
        "VARIANT",
        "UINT32",
        "UINT16",
        "INT4",
        "BFLOAT16",
    ];
    NAMES
        .get(usize::from(code))
        .map_or_else(|| format!("type {code}"), |s| (*s).to_string())
}

/// The name of builtin operator `code`.
pub(crate) fn op_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|c| BUILTIN_NAMES.get(c))
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("BUILTIN_{code}"), |s| (*s).to_string())
}

/// The dims of `t`, refusing unknown (negative) ones.
pub(crate) fn dims(t: &Tensor<'_>) -> Result<Vec<usize>, String> {
    t.shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("tensor {:?} has shape {:?}", t.name, t.shape))
        })
        .collect()
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// A resolved weight: the tensor, the name of the constant it comes from, notes; or why not.
pub(crate) type Resolved = Result<(RawTensor, String, Vec<String>), String>;

/// A constant as read from its buffer: dense, or the values of a sparse tensor.
enum Value {
    Dense(RawTensor),
    Sparse(Blob, DType),
}

/// Resolves and caches convolution weights.
pub(crate) struct Resolver<'m, 'a> {
    pub model: &'m Model<'a>,
    pub file: &'m Blob,
    /// The operator producing each tensor.
    pub producer: Vec<Option<usize>>,
    /// Bytes that dequantized and densified weights may still allocate.
    pub decoded: Budget,
    cache: HashMap<usize, Resolved>,
}

impl<'m, 'a> Resolver<'m, 'a> {
    pub(crate) fn new(
        model: &'m Model<'a>,
        file: &'m Blob,
        producer: Vec<Option<usize>>,
        decoded: Budget,
    ) -> Self {
        Resolver {
            model,
            file,
            producer,
            decoded,
            cache: HashMap::new(),
        }
    }

    fn tensor(&self, i: usize) -> Result<&'m Tensor<'a>, String> {
        self.model
            .tensors
            .get(i)
            .ok_or_else(|| format!("tensor index {i} out of range"))
    }

    /// The bytes of tensor `t`'s buffer (empty when it has none).
    pub(crate) fn data(&self, t: &Tensor<'_>) -> Result<Option<Blob>, String> {
        match self.model.buffers.get(t.buffer as usize) {
            None => Err(format!(
                "tensor {:?}: buffer index {} out of range ({} buffers)",
                t.name,
                t.buffer,
                self.model.buffers.len()
            )),
            Some(BufferData::Empty) => Ok(None),
            Some(BufferData::Range(r)) => {
                Ok(Some(self.file.slice(r.clone()).ok_or_else(|| {
                    format!("tensor {:?}: buffer outside the file", t.name)
                })?))
            }
        }
    }

    /// The dense constant tensor `t` (shape and type as stored), `None` without data.
    pub(crate) fn dense_constant(&self, t: &Tensor<'_>) -> Result<Option<RawTensor>, String> {
        if t.sparsity.is_some() {
            return Ok(None);
        }
        let Some(data) = self.data(t)? else {
            return Ok(None);
        };
        let dt = dtype(t.dtype).ok_or_else(|| {
            format!(
                "tensor {:?} has element type {}",
                t.name,
                dtype_name(t.dtype)
            )
        })?;
        let shape = dims(t)?;
        let n = numel(&shape).ok_or_else(|| format!("tensor {:?}: shape overflows", t.name))?;
        if n.checked_mul(dt.size()) != Some(data.len()) {
            return Err(format!(
                "tensor {:?}: shape {shape:?} of {} needs {} bytes but its buffer holds {}",
                t.name,
                dtype_name(t.dtype),
                n.saturating_mul(dt.size()),
                data.len()
            ));
        }
        RawTensor::contiguous(dt, shape, data)
            .map(Some)
            .map_err(|e| format!("tensor {:?}: {e}", t.name))
    }

    fn value(&self, t: &Tensor<'_>) -> Result<Value, String> {
        if t.sparsity.is_none() {
            return self
                .dense_constant(t)?
                .map(Value::Dense)
                .ok_or_else(|| format!("tensor {:?} has no data", t.name));
        }
        let data = self
            .data(t)?
            .ok_or_else(|| format!("sparse tensor {:?} has no data", t.name))?;
        let dt = dtype(t.dtype).ok_or_else(|| {
            format!(
                "tensor {:?} has element type {}",
                t.name,
                dtype_name(t.dtype)
            )
        })?;
        if data.len() % dt.size() != 0 {
            return Err(format!(
                "sparse tensor {:?}: {} bytes is not a whole number of {}",
                t.name,
                data.len(),
                dtype_name(t.dtype)
            ));
        }
        Ok(Value::Sparse(data, dt))
    }

    /// The weight (or bias) feeding an operator through tensor `ti`, as a dense real-valued
    /// tensor of the tensor's shape; with the name of the constant it comes from and notes.
    pub(crate) fn resolve(&mut self, ti: usize) -> Resolved {
        if let Some(r) = self.cache.get(&ti) {
            return r.clone();
        }
        let r = self.resolve_uncached(ti);
        self.cache.insert(ti, r.clone());
        r
    }

    fn resolve_uncached(&mut self, ti: usize) -> Resolved {
        let top = self.tensor(ti)?;
        let mut cur = ti;
        let mut chain: Vec<(i32, usize)> = Vec::new();
        loop {
            let t = self.tensor(cur)?;
            if self.data(t)?.is_some() {
                break;
            }
            let Some(p) = self.producer.get(cur).copied().flatten() else {
                return Err(format!(
                    "{:?} is not a constant (no buffer and no producing operator: a graph input or a variable)",
                    t.name
                ));
            };
            let o = &self.model.operators[p];
            if o.code != op::DEQUANTIZE && o.code != op::DENSIFY {
                return Err(format!(
                    "{:?} is not a constant: output of {} (operator {p})",
                    t.name,
                    op_name(o.code)
                ));
            }
            if chain.len() >= MAX_PRODUCER_HOPS {
                return Err(format!(
                    "{:?}: more than {MAX_PRODUCER_HOPS} DEQUANTIZE/DENSIFY operators in a row (a cycle?)",
                    top.name
                ));
            }
            let input = o
                .inputs
                .first()
                .and_then(|&i| usize::try_from(i).ok())
                .ok_or_else(|| format!("{} (operator {p}) has no input", op_name(o.code)))?;
            chain.push((o.code, input));
            cur = input;
        }
        let root = self.tensor(cur)?;
        let mut notes = Vec::new();
        let mut v = self.value(root)?;
        for &(code, input) in chain.iter().rev() {
            let t = self.tensor(input)?;
            v = match (code, v) {
                (op::DENSIFY, Value::Sparse(data, dt)) => {
                    notes.push("sparse weights densified (DENSIFY)".to_string());
                    Value::Dense(self.densify(t, &data, dt)?)
                }
                (op::DENSIFY, Value::Dense(_)) => {
                    return Err(format!(
                        "DENSIFY of {:?}, which has no sparsity parameters",
                        t.name
                    ))
                }
                (_, Value::Sparse(..)) => {
                    return Err(format!(
                        "DEQUANTIZE of the sparse tensor {:?} without DENSIFY",
                        t.name
                    ))
                }
                (_, Value::Dense(d)) if d.dtype().is_float() => {
                    notes.push(format!("{} weights behind DEQUANTIZE", d.dtype().name()));
                    Value::Dense(d)
                }
                (_, Value::Dense(d)) => {
                    let q = t.quant.as_ref().ok_or_else(|| {
                        format!(
                            "DEQUANTIZE of {:?}, which has no quantization parameters",
                            t.name
                        )
                    })?;
                    notes.push(dequant_note(d.dtype(), q));
                    Value::Dense(self.dequantize(&d, q, &t.name)?)
                }
            };
        }
        let mut w = match v {
            Value::Dense(d) => d,
            Value::Sparse(data, dt) => {
                notes.push("sparse weights densified".to_string());
                self.densify(top, &data, dt)?
            }
        };
        if !w.dtype().is_float() {
            let q = top.quant.as_ref().ok_or_else(|| {
                format!(
                    "{:?} holds {} values without quantization parameters",
                    top.name,
                    w.dtype().name()
                )
            })?;
            notes.push(dequant_note(w.dtype(), q));
            w = self.dequantize(&w, q, &top.name)?;
        }
        let want = dims(top)?;
        if w.shape() != want.as_slice() {
            return Err(format!(
                "{:?} has shape {want:?} but its constant {:?} has shape {:?}",
                top.name,
                root.name,
                w.shape()
            ));
        }
        Ok((w, root.name.clone(), notes))
    }

    fn charge(&mut self, elems: usize, size: usize, what: &str) -> Result<(), String> {
        let bytes = elems
            .checked_mul(size)
            .ok_or_else(|| format!("{what}: size overflows"))?;
        self.decoded
            .charge(bytes, "decoded weights")
            .map_err(|e| format!("{what}: {e}"))
    }

    /// `scale · (q − zero_point)` in f32, per tensor or per channel of `quantized_dimension`.
    fn dequantize(&mut self, t: &RawTensor, q: &Quant, name: &str) -> Result<RawTensor, String> {
        let shape = t.shape().to_vec();
        let n = t.numel();
        let err = |m: String| format!("{name:?}: {m}");
        let (nch, inner) = if q.scale.len() == 1 {
            (1, n.max(1))
        } else {
            let d = usize::try_from(q.dim)
                .ok()
                .filter(|&d| d < shape.len())
                .ok_or_else(|| err(format!("quantized_dimension {} for shape {shape:?}", q.dim)))?;
            if shape[d] != q.scale.len() {
                return Err(err(format!(
                    "{} scales for dimension {d} of size {} (shape {shape:?})",
                    q.scale.len(),
                    shape[d]
                )));
            }
            (
                q.scale.len(),
                shape[d + 1..].iter().product::<usize>().max(1),
            )
        };
        if !(q.zero_point.is_empty() || q.zero_point.len() == 1 || q.zero_point.len() == nch) {
            return Err(err(format!(
                "{} zero points for {nch} scales",
                q.zero_point.len()
            )));
        }
        self.charge(n, 4, name)?;
        let values = t.to_f64();
        let mut out = Vec::with_capacity(n * 4);
        for (k, &v) in values.iter().enumerate() {
            let c = if nch == 1 { 0 } else { (k / inner) % nch };
            let zp = match q.zero_point.len() {
                0 => 0,
                1 => q.zero_point[0],
                _ => q.zero_point[c],
            };
            // (q - zp) is an exact integer; one f32 product as TFLite's reference kernel
            let x = q.scale[c] * (v - zp as f64) as f32;
            out.extend_from_slice(&x.to_le_bytes());
        }
        RawTensor::contiguous(DType::F32, shape, Blob::from_vec(out))
            .map_err(|e| err(e.to_string()))
    }

    /// TFLite's `FormatConverter::SparseToDense` for tensor `t` (its shape is the dense shape).
    fn densify(&mut self, t: &Tensor<'_>, values: &Blob, dt: DType) -> Result<RawTensor, String> {
        let shape = dims(t)?;
        let err = |m: String| format!("sparse tensor {:?}: {m}", t.name);
        let sp = t
            .sparsity
            .ok_or_else(|| err("no sparsity parameters".into()))?;
        let n = numel(&shape).ok_or_else(|| err("shape overflows".into()))?;
        let meta = Sparsity::parse(&sp, &shape).map_err(err)?;
        self.charge(n, dt.size(), &t.name)?;
        let size = dt.size();
        let mut out = vec![0u8; n * size];
        let mut walk = Walk {
            meta: &meta,
            shape: &shape,
            src: values.as_slice(),
            size,
            pos: 0,
            out: &mut out,
            idx: vec![0; meta.levels.len()],
        };
        walk.level(0, 0).map_err(err)?;
        let used = walk.pos;
        if used * size != values.len() {
            return Err(err(format!(
                "the sparsity metadata addresses {used} values but the buffer holds {}",
                values.len() / size
            )));
        }
        RawTensor::contiguous(dt, shape, Blob::from_vec(out)).map_err(|e| err(e.to_string()))
    }
}

fn dequant_note(dt: DType, q: &Quant) -> String {
    if q.scale.len() == 1 {
        format!(
            "{} weights dequantized per tensor: scale · (q − zero_point)",
            dt.name()
        )
    } else {
        format!(
            "{} weights dequantized per channel ({} scales along dimension {})",
            dt.name(),
            q.scale.len(),
            q.dim
        )
    }
}

/// One level of a sparse tensor's traversal.
enum Level {
    Dense(usize),
    Csr {
        segments: Vec<usize>,
        indices: Vec<usize>,
        size: usize,
    },
}

struct Sparsity {
    order: Vec<usize>,
    block_map: Vec<usize>,
    block_size: Vec<usize>,
    levels: Vec<Level>,
}

fn index_vector(
    dm: &Table<'_>,
    type_field: usize,
    field: usize,
    what: &'static str,
) -> Result<Vec<usize>, String> {
    let kind = dm.u8(type_field, 0).map_err(|e| e.to_string())?;
    let elem = match kind {
        1 => 4,
        2 => 2,
        3 => 1,
        k => return Err(format!("{what}: index vector type {k}")),
    };
    let t = dm
        .table(field, what)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{what} missing"))?;
    let Some(v) = t.vector(0, elem, what).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    (0..v.len())
        .map(|i| -> Result<usize, String> {
            let x: i64 = match elem {
                4 => i64::from(v.i32(i).map_err(|e| e.to_string())?),
                2 => i64::from(v.u16(i).map_err(|e| e.to_string())?),
                _ => i64::from(v.u8(i).map_err(|e| e.to_string())?),
            };
            usize::try_from(x).map_err(|_| format!("{what}: negative entry {x}"))
        })
        .collect()
}

impl Sparsity {
    fn parse(sp: &Table<'_>, shape: &[usize]) -> Result<Sparsity, String> {
        let e = |x: crate::TfliteError| x.to_string();
        let ints = |id: usize, what: &'static str| -> Result<Vec<usize>, String> {
            match sp.vector(id, 4, what).map_err(e)? {
                None => Ok(Vec::new()),
                Some(v) => (0..v.len())
                    .map(|i| {
                        let x = v.i32(i).map_err(e)?;
                        usize::try_from(x).map_err(|_| format!("{what}: negative entry {x}"))
                    })
                    .collect(),
            }
        };
        let order = ints(0, "traversal_order")?;
        let block_map = ints(1, "block_map")?;
        let rank = shape.len();
        let total = rank + block_map.len();
        let dm = sp.vector(2, 4, "dim_metadata").map_err(e)?;
        let n_dm = dm.as_ref().map_or(0, |v| v.len());
        if order.len() != total || n_dm != total || total > 2 * convlens_core::limits::MAX_RANK {
            return Err(format!(
                "traversal_order has {} entries and dim_metadata {n_dm} for {rank} dimensions and {} blocks",
                order.len(),
                block_map.len()
            ));
        }
        let mut seen = vec![false; total];
        for (i, &d) in order.iter().enumerate() {
            if d >= total || seen[d] || ((i < rank) != (d < rank)) {
                return Err(format!(
                    "traversal_order {order:?} is not a permutation with the block dimensions last"
                ));
            }
            seen[d] = true;
        }
        let mut blocked = vec![false; rank];
        for &b in &block_map {
            if b >= rank || blocked[b] {
                return Err(format!("block_map {block_map:?} for {rank} dimensions"));
            }
            blocked[b] = true;
        }
        let dm = dm.ok_or("dim_metadata missing")?;
        let mut raw = Vec::with_capacity(total);
        for i in 0..total {
            let t = dm.table(i).map_err(e)?;
            let format = t.i8(0, 0).map_err(e)?;
            let dense = usize::try_from(t.i32(1, 0).map_err(e)?)
                .map_err(|_| "negative dense_size".to_string())?;
            raw.push((format, dense, t));
        }
        // block sizes: the dense_size of each block dimension's level
        let mut block_size = vec![0usize; block_map.len()];
        for (level, &d) in order.iter().enumerate() {
            if d >= rank {
                let (format, dense, _) = &raw[level];
                if *format != 0 || *dense == 0 {
                    return Err(format!(
                        "block dimension {} is not dense with a positive size",
                        d - rank
                    ));
                }
                block_size[d - rank] = *dense;
            }
        }
        let mut levels = Vec::with_capacity(total);
        for (level, &d) in order.iter().enumerate() {
            let size = if d < rank {
                match block_map.iter().position(|&b| b == d) {
                    None => shape[d],
                    Some(j) => {
                        if !shape[d].is_multiple_of(block_size[j]) {
                            return Err(format!(
                                "block size {} does not divide dimension {d} of {shape:?}",
                                block_size[j]
                            ));
                        }
                        shape[d] / block_size[j]
                    }
                }
            } else {
                block_size[d - rank]
            };
            let (format, dense, t) = &raw[level];
            levels.push(match format {
                0 => {
                    if *dense != size {
                        return Err(format!(
                            "level {level} has dense_size {dense} but the shape calls for {size}"
                        ));
                    }
                    Level::Dense(size)
                }
                1 => Level::Csr {
                    segments: index_vector(t, 2, 3, "array_segments")?,
                    indices: index_vector(t, 4, 5, "array_indices")?,
                    size,
                },
                f => return Err(format!("level {level} has dimension type {f}")),
            });
        }
        Ok(Sparsity {
            order,
            block_map,
            block_size,
            levels,
        })
    }
}

struct Walk<'s> {
    meta: &'s Sparsity,
    shape: &'s [usize],
    src: &'s [u8],
    size: usize,
    pos: usize,
    out: &'s mut [u8],
    idx: Vec<usize>,
}

impl Walk<'_> {
    fn level(&mut self, level: usize, prev: usize) -> Result<(), String> {
        let Some(l) = self.meta.levels.get(level) else {
            return self.leaf();
        };
        match l {
            Level::Dense(n) => {
                let n = *n;
                for i in 0..n {
                    self.idx[level] = i;
                    let next = prev
                        .checked_mul(n)
                        .and_then(|p| p.checked_add(i))
                        .ok_or("segment index overflows")?;
                    self.level(level + 1, next)?;
                }
            }
            Level::Csr {
                segments,
                indices,
                size,
            } => {
                let (Some(&a), Some(&b)) = (segments.get(prev), segments.get(prev + 1)) else {
                    return Err(format!(
                        "level {level}: array_segments has {} entries, segment {prev} needed",
                        segments.len()
                    ));
                };
                if a > b || b > indices.len() {
                    return Err(format!(
                        "level {level}: segment {prev} is [{a}, {b}) but array_indices has {} entries",
                        indices.len()
                    ));
                }
                for (i, &x) in indices.iter().enumerate().take(b).skip(a) {
                    if x >= *size {
                        return Err(format!(
                            "level {level}: index {x} out of range (size {size})"
                        ));
                    }
                    self.idx[level] = x;
                    self.level(level + 1, i)?;
                }
            }
        }
        Ok(())
    }

    fn leaf(&mut self) -> Result<(), String> {
        let rank = self.shape.len();
        let mut orig = [0usize; convlens_core::limits::MAX_RANK];
        for i in 0..rank {
            orig[self.meta.order[i]] = self.idx[i];
        }
        for i in rank..self.idx.len() {
            let b = self.meta.order[i] - rank;
            let d = self.meta.block_map[b];
            orig[d] = orig[d] * self.meta.block_size[b] + self.idx[i];
        }
        let mut flat = 0usize;
        for d in 0..rank {
            if orig[d] >= self.shape[d] {
                return Err(format!(
                    "element index {:?} outside the shape {:?}",
                    &orig[..rank],
                    self.shape
                ));
            }
            flat = flat * self.shape[d] + orig[d];
        }
        let s = self.pos * self.size;
        let src = self.src.get(s..s + self.size).ok_or_else(|| {
            format!(
                "the sparsity metadata addresses more than the {} stored values",
                self.src.len() / self.size
            )
        })?;
        self.out[flat * self.size..(flat + 1) * self.size].copy_from_slice(src);
        self.pos += 1;
        Ok(())
    }
}
