//! `TensorProto` -> `RawTensor`: dtype mapping, shape and size validation, typed fields,
//! raw data and external data files.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use convlens_core::limits::{MAX_ELEMENTS, MAX_RANK};
use convlens_core::{Blob, DType, RawTensor};

use crate::proto::{data_type as dt, StringStringEntryProto, TensorProto, DATA_LOCATION_EXTERNAL};
use crate::OnnxError;

/// A decoded tensor, or why its element type cannot be represented.
pub(crate) enum Decoded {
    Tensor(RawTensor),
    Unsupported(String),
}

/// ONNX name of a `TensorProto.DataType` code.
pub(crate) fn dtype_name(code: i32) -> &'static str {
    match code {
        0 => "UNDEFINED",
        dt::FLOAT => "FLOAT",
        dt::UINT8 => "UINT8",
        dt::INT8 => "INT8",
        dt::UINT16 => "UINT16",
        dt::INT16 => "INT16",
        dt::INT32 => "INT32",
        dt::INT64 => "INT64",
        dt::STRING => "STRING",
        dt::BOOL => "BOOL",
        dt::FLOAT16 => "FLOAT16",
        dt::DOUBLE => "DOUBLE",
        dt::UINT32 => "UINT32",
        dt::UINT64 => "UINT64",
        dt::COMPLEX64 => "COMPLEX64",
        dt::COMPLEX128 => "COMPLEX128",
        dt::BFLOAT16 => "BFLOAT16",
        17 => "FLOAT8E4M3FN",
        18 => "FLOAT8E4M3FNUZ",
        19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        _ => "unknown",
    }
}

fn core_dtype(code: i32) -> Option<DType> {
    Some(match code {
        dt::FLOAT => DType::F32,
        dt::UINT8 => DType::U8,
        dt::INT8 => DType::I8,
        dt::INT16 => DType::I16,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        dt::DOUBLE => DType::F64,
        dt::BFLOAT16 => DType::BF16,
        _ => return None,
    })
}

/// Validated shape and element count of `dims`.
fn shape_of(name: &str, dims: &[i64]) -> Result<(Vec<usize>, usize), OnnxError> {
    let bad = |reason: &'static str| OnnxError::Dims {
        name: name.to_string(),
        dims: dims.to_vec(),
        reason,
    };
    if dims.len() > MAX_RANK {
        return Err(bad("has more dimensions than supported (16)"));
    }
    let mut shape = Vec::with_capacity(dims.len());
    let mut numel: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| bad("has a negative dimension"))?;
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| bad("has too many elements"))?;
        shape.push(d);
    }
    if numel > MAX_ELEMENTS {
        return Err(bad("has too many elements (at most 2^34)"));
    }
    Ok((shape, numel))
}

/// Converts one tensor; `name` is the name it is known by (initializer name or node output).
pub(crate) fn decode(
    t: &TensorProto,
    name: &str,
    ext: &mut ExternalFiles<'_>,
) -> Result<Decoded, OnnxError> {
    let (shape, numel) = shape_of(name, &t.dims)?;
    let Some(dtype) = core_dtype(t.data_type) else {
        return Ok(Decoded::Unsupported(format!(
            "tensor {name:?}: element type {} ({}) is not supported, tensor skipped",
            dtype_name(t.data_type),
            t.data_type
        )));
    };
    // numel <= 2^34 and size <= 8: cannot overflow, checked anyway
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| OnnxError::Dims {
            name: name.to_string(),
            dims: t.dims.clone(),
            reason: "has too many elements",
        })?;
    let size_err = |actual: usize, location: &'static str| OnnxError::DataSize {
        name: name.to_string(),
        dims: t.dims.clone(),
        dtype: dtype_name(t.data_type),
        expected: nbytes,
        actual,
        location,
    };
    let blob = if t.data_location == DATA_LOCATION_EXTERNAL {
        let b = ext.load(name, &t.external_data)?;
        if b.len() != nbytes {
            return Err(size_err(b.len(), "external data"));
        }
        b
    } else if !t.raw_data.is_empty() {
        if t.raw_data.len() != nbytes {
            return Err(size_err(t.raw_data.len(), "raw_data"));
        }
        Blob::from_owner(t.raw_data.clone())
    } else {
        typed_blob(t, name, dtype, numel)?
    };
    RawTensor::contiguous(dtype, shape, blob)
        .map(Decoded::Tensor)
        .map_err(|source| OnnxError::Tensor {
            name: name.to_string(),
            source: Box::new(source),
        })
}

/// Little-endian bytes of the typed data field that holds `dtype`, after checking that it has
/// exactly `numel` values (so nothing is allocated for a tensor whose data is missing).
fn typed_blob(t: &TensorProto, name: &str, dtype: DType, numel: usize) -> Result<Blob, OnnxError> {
    let count_err = |field: &'static str, actual: usize| OnnxError::ElementCount {
        name: name.to_string(),
        field,
        expected: numel,
        actual,
    };
    fn collect<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Blob {
        let mut out = Vec::with_capacity(v.len() * N);
        for &x in v {
            out.extend_from_slice(&f(x));
        }
        Blob::from_vec(out)
    }
    let check = |field: &'static str, len: usize| {
        if len == numel {
            Ok(())
        } else {
            Err(count_err(field, len))
        }
    };
    Ok(match dtype {
        DType::F32 => {
            check("float_data", t.float_data.len())?;
            collect(&t.float_data, f32::to_le_bytes)
        }
        DType::F64 => {
            check("double_data", t.double_data.len())?;
            collect(&t.double_data, f64::to_le_bytes)
        }
        DType::I64 => {
            check("int64_data", t.int64_data.len())?;
            collect(&t.int64_data, i64::to_le_bytes)
        }
        DType::I32 => {
            check("int32_data", t.int32_data.len())?;
            collect(&t.int32_data, i32::to_le_bytes)
        }
        DType::I16 | DType::F16 | DType::BF16 => {
            check("int32_data", t.int32_data.len())?;
            // 16-bit integers and the bit patterns of 16-bit floats, truncated like numpy
            collect(&t.int32_data, |x| (x as u16).to_le_bytes())
        }
        DType::I8 | DType::U8 => {
            check("int32_data", t.int32_data.len())?;
            collect(&t.int32_data, |x| [x as u8])
        }
        DType::Bool => {
            check("int32_data", t.int32_data.len())?;
            collect(&t.int32_data, |x| [u8::from(x != 0)])
        }
    })
}

/// External data files of one model, memory-mapped once each.
pub(crate) struct ExternalFiles<'a> {
    base: Option<&'a Path>,
    base_canonical: Option<PathBuf>,
    files: HashMap<String, Blob>,
}

impl<'a> ExternalFiles<'a> {
    pub(crate) fn new(base: Option<&'a Path>) -> Self {
        ExternalFiles {
            base,
            base_canonical: None,
            files: HashMap::new(),
        }
    }

    /// The bytes an `external_data` description points at.
    fn load(
        &mut self,
        tensor: &str,
        entries: &[StringStringEntryProto],
    ) -> Result<Blob, OnnxError> {
        let err = |reason: String| OnnxError::ExternalData {
            name: tensor.to_string(),
            reason,
        };
        let mut location = None;
        let mut offset: u64 = 0;
        let mut length: Option<u64> = None;
        for e in entries {
            let number = |what: &str| {
                e.value.trim().parse::<u64>().map_err(|_| {
                    err(format!(
                        "{what} {:?} is not a non-negative integer",
                        e.value
                    ))
                })
            };
            match e.key.as_str() {
                "location" => location = Some(e.value.as_str()),
                "offset" => offset = number("offset")?,
                "length" => length = Some(number("length")?),
                _ => {}
            }
        }
        let location = location.ok_or_else(|| err("no location given".to_string()))?;
        let Some(base) = self.base else {
            return Err(err(format!(
                "data is in file {location:?} but the model's folder is unknown; external data refused"
            )));
        };
        let rel = Path::new(location);
        let plain = !location.is_empty()
            && !location.contains('\0')
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(err(format!(
                "location {location:?} is not a plain relative path inside the model's folder; refused"
            )));
        }
        let file = match self.files.get(location) {
            Some(b) => b.clone(),
            None => {
                let b = self
                    .map(base, rel)
                    .map_err(|r| err(format!("{location:?}: {r}")))?;
                self.files.insert(location.to_string(), b.clone());
                b
            }
        };
        let len = file.len() as u64;
        if offset > len {
            return Err(err(format!(
                "offset {offset} is past the end of {location:?} ({len} bytes)"
            )));
        }
        let length = length.unwrap_or(len - offset);
        let end = offset
            .checked_add(length)
            .filter(|&end| end <= len)
            .ok_or_else(|| {
                err(format!(
                    "offset {offset} + length {length} is past the end of {location:?} ({len} bytes)"
                ))
            })?;
        // both fit in usize: end <= len, which is a usize
        let (start, end) = (offset as usize, end as usize);
        file.slice(start..end)
            .ok_or_else(|| err(format!("range {start}..{end} outside {location:?}")))
    }

    fn map(&mut self, base: &Path, rel: &Path) -> Result<Blob, String> {
        let path = base.join(rel);
        if self.base_canonical.is_none() {
            let c = base
                .canonicalize()
                .map_err(|e| format!("cannot resolve the model's folder: {e}"))?;
            self.base_canonical = Some(c);
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| format!("cannot open: {e}"))?;
        if let Some(b) = &self.base_canonical {
            if !canonical.starts_with(b) {
                return Err("resolves (through a link) outside the model's folder; refused".into());
            }
        }
        let file = std::fs::File::open(&canonical).map_err(|e| format!("cannot open: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.len() == 0 {
            return Ok(Blob::from_vec(Vec::new()));
        }
        // SAFETY: the map is read-only and never written by convlens; a concurrent truncation
        // by another process is the usual caveat of memory maps and outside our control.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
        Ok(Blob::from_owner(map))
    }
}
