//! Reader for safetensors files.
//!
//! [`read`] turns a safetensors file into a [`Checkpoint`] whose tensors point into the input
//! [`Blob`] (nothing is copied). safetensors does not keep module order, so tensors are ordered
//! by the `key_order` metadata entry (a JSON list of names) when the file has one, and otherwise
//! by the natural sort order of their names ([`natural_cmp`]).
//!
//! Element types other than F16/BF16/F32/F64/I8/U8/I16/I32/I64/BOOL (U16, U32, U64, the 4/6/8-bit
//! float formats) are skipped with a note naming the tensor and its type: one odd buffer does not
//! make the convolution weights of a file unreadable.

use std::collections::HashSet;

use convlens_core::limits::{MAX_NAME_LEN, MAX_TENSORS};
use convlens_core::{
    Blob, ByteOrder, Checkpoint, DType, Format, NamedTensor, RawTensor, TensorError,
};
use safetensors::tensor::{Dtype, SafeTensorError};
use safetensors::SafeTensors;

mod natural;

pub use natural::natural_cmp;

/// Largest JSON header accepted, in bytes (the limit of the `safetensors` crate).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Size of the little-endian header length that starts every file.
const LEN_PREFIX: usize = 8;

/// `order_source` when the tensors follow the `key_order` metadata entry.
pub const ORDER_KEY_ORDER: &str = "metadata key_order";
/// `order_source` when the tensors are sorted by name.
pub const ORDER_NATURAL: &str = "natural sort of keys";

/// What is wrong with a safetensors file.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// Fewer bytes than the 8-byte header length.
    #[error("file is {len} bytes long, too short for a safetensors header (8-byte length + JSON)")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The declared header length exceeds [`MAX_HEADER_LEN`].
    #[error(
        "header length {len} exceeds the limit of {MAX_HEADER_LEN} bytes (not a safetensors file?)"
    )]
    HeaderTooLarge {
        /// Declared header length.
        len: u64,
    },
    /// The declared header length runs past the end of the file.
    #[error("header length {len} runs past the end of the file ({file_len} bytes)")]
    HeaderPastEnd {
        /// Declared header length.
        len: u64,
        /// File length.
        file_len: usize,
    },
    /// The header is not valid UTF-8 JSON of the expected shape.
    #[error("{0}")]
    Header(String),
    /// A tensor's byte size does not match its type and shape.
    #[error("tensor '{name}': {dtype} {shape:?} needs {needed} bytes but its data offsets [{start}, {end}) span {span}")]
    SizeMismatch {
        /// Tensor name.
        name: String,
        /// Element type as written in the header.
        dtype: String,
        /// Shape.
        shape: Vec<u64>,
        /// Bytes implied by type and shape.
        needed: u128,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
        /// Bytes spanned by the offsets (0 if they are reversed).
        span: u64,
    },
    /// A tensor's data offsets leave a gap, overlap another tensor or are reversed.
    #[error("tensor '{name}': data offsets [{start}, {end}) {problem}")]
    Offsets {
        /// Tensor name.
        name: String,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
        /// What is wrong ("overlap the previous tensor", ...).
        problem: String,
    },
    /// The tensor data does not cover the data section of the file exactly.
    #[error(
        "tensor data ends at byte {data_end} of the data section, which holds {available} bytes"
    )]
    DataLength {
        /// End of the last tensor.
        data_end: u64,
        /// Bytes after the header.
        available: usize,
    },
    /// More tensors than [`MAX_TENSORS`].
    #[error("{0} tensors (at most {MAX_TENSORS} supported)")]
    TooManyTensors(usize),
    /// A tensor name longer than [`MAX_NAME_LEN`].
    #[error("tensor name of {0} bytes (at most {MAX_NAME_LEN} supported)")]
    NameTooLong(usize),
    /// A tensor description that the core refuses.
    #[error("tensor '{name}': {source}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// Problem.
        source: TensorError,
    },
}

/// True if `bytes` (a whole file or its beginning) looks like a safetensors file: a plausible
/// little-endian header length followed by `{`.
pub fn sniff(bytes: &[u8]) -> bool {
    let Some(prefix) = bytes.get(..LEN_PREFIX) else {
        return false;
    };
    let mut len = [0u8; LEN_PREFIX];
    len.copy_from_slice(prefix);
    let n = u64::from_le_bytes(len);
    (2..=MAX_HEADER_LEN).contains(&n) && bytes.get(LEN_PREFIX) == Some(&b'{')
}

fn dtype_of(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Reads a safetensors file: tensors (viewing `data`, no copy) in `key_order` or natural order,
/// and the `__metadata__` entries sorted by key.
pub fn read(data: Blob) -> Result<Checkpoint, SafetensorsError> {
    let bytes = data.as_slice();
    let header_len = check_prefix(bytes)?;
    let (n, meta) = match SafeTensors::read_metadata(bytes) {
        Ok(x) => x,
        Err(e) => return Err(explain(e, bytes, header_len)),
    };
    let data_start = LEN_PREFIX
        .checked_add(n)
        .ok_or(SafetensorsError::HeaderPastEnd {
            len: header_len,
            file_len: bytes.len(),
        })?;

    let names = meta.offset_keys();
    if names.len() > MAX_TENSORS {
        return Err(SafetensorsError::TooManyTensors(names.len()));
    }
    if let Some(long) = names.iter().find(|s| s.len() > MAX_NAME_LEN) {
        return Err(SafetensorsError::NameTooLong(long.len()));
    }

    let mut metadata: Vec<(String, String)> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    metadata.sort();

    let mut notes = Vec::new();
    let (order, order_source) = tensor_order(&names, &metadata, &mut notes);

    let mut tensors = Vec::with_capacity(order.len());
    for name in order {
        let Some(info) = meta.info(&name) else {
            continue;
        };
        let Some(dtype) = dtype_of(info.dtype) else {
            notes.push(format!(
                "tensor '{name}' has element type {}, which convlens does not read; skipped",
                info.dtype
            ));
            continue;
        };
        let (s, e) = info.data_offsets;
        let range = data_start
            .checked_add(s)
            .zip(data_start.checked_add(e))
            .filter(|(a, b)| a <= b);
        let storage =
            range
                .and_then(|(a, b)| data.slice(a..b))
                .ok_or_else(|| SafetensorsError::Offsets {
                    name: name.clone(),
                    start: s as u64,
                    end: e as u64,
                    problem: "lie outside the file".to_string(),
                })?;
        let strides = c_strides(&info.shape);
        let tensor = RawTensor::strided(
            dtype,
            info.shape.clone(),
            strides,
            0,
            ByteOrder::Little,
            storage,
        )
        .map_err(|source| SafetensorsError::Tensor {
            name: name.clone(),
            source,
        })?;
        tensors.push(NamedTensor { name, tensor });
    }

    let mut ckpt = Checkpoint::from_tensors(Format::Safetensors, tensors, order_source);
    ckpt.notes = notes;
    ckpt.metadata = metadata;
    Ok(ckpt)
}

/// Row-major strides, saturating (the core refuses views that do not fit their storage).
fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    let mut acc = 1usize;
    for (st, &d) in s.iter_mut().zip(shape).rev() {
        *st = acc;
        acc = acc.saturating_mul(d);
    }
    s
}

/// Checks the 8-byte header length against the limit and the file size; returns it.
fn check_prefix(bytes: &[u8]) -> Result<u64, SafetensorsError> {
    let Some(prefix) = bytes.get(..LEN_PREFIX) else {
        return Err(SafetensorsError::TooShort { len: bytes.len() });
    };
    let mut len = [0u8; LEN_PREFIX];
    len.copy_from_slice(prefix);
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_LEN {
        return Err(SafetensorsError::HeaderTooLarge { len: n });
    }
    let fits = (LEN_PREFIX as u64)
        .checked_add(n)
        .is_some_and(|end| end <= bytes.len() as u64);
    if !fits {
        return Err(SafetensorsError::HeaderPastEnd {
            len: n,
            file_len: bytes.len(),
        });
    }
    Ok(n)
}

/// The tensor order (every name exactly once) and where it comes from.
fn tensor_order(
    names: &[String],
    metadata: &[(String, String)],
    notes: &mut Vec<String>,
) -> (Vec<String>, &'static str) {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(a, b).then_with(|| a.cmp(b)));

    let Some((_, raw)) = metadata.iter().find(|(k, _)| k == "key_order") else {
        return (sorted.into_iter().cloned().collect(), ORDER_NATURAL);
    };
    let listed: Vec<String> = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!(
                "metadata key_order is not a JSON list of names ({e}); tensors sorted by name"
            ));
            return (sorted.into_iter().cloned().collect(), ORDER_NATURAL);
        }
    };
    let present: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
    let mut order = Vec::with_capacity(names.len());
    let mut unknown = 0usize;
    for name in &listed {
        if !present.contains(name.as_str()) {
            unknown += 1;
        } else if seen.insert(name.as_str()) {
            order.push(name.clone());
        }
    }
    if unknown > 0 {
        notes.push(format!(
            "metadata key_order lists {unknown} name(s) that are not in the file; ignored"
        ));
    }
    let missing: Vec<String> = sorted
        .into_iter()
        .filter(|n| !seen.contains(n.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "metadata key_order does not list {} tensor(s); appended in natural name order",
            missing.len()
        ));
    }
    order.extend(missing);
    (order, ORDER_KEY_ORDER)
}

/// Turns an error of the `safetensors` crate into a message naming the offending tensor when
/// the header can be inspected.
fn explain(e: SafeTensorError, bytes: &[u8], header_len: u64) -> SafetensorsError {
    let generic = |e: &SafeTensorError| SafetensorsError::Header(e.to_string());
    match e {
        SafeTensorError::TensorInvalidInfo
        | SafeTensorError::InvalidOffset(_)
        | SafeTensorError::MetadataIncompleteBuffer
        | SafeTensorError::ValidationOverflow
        | SafeTensorError::MisalignedSlice => {
            diagnose(bytes, header_len).unwrap_or_else(|| generic(&e))
        }
        SafeTensorError::HeaderTooLarge => SafetensorsError::HeaderTooLarge { len: header_len },
        SafeTensorError::HeaderTooSmall => SafetensorsError::TooShort { len: bytes.len() },
        SafeTensorError::InvalidHeaderLength => SafetensorsError::HeaderPastEnd {
            len: header_len,
            file_len: bytes.len(),
        },
        other => generic(&other),
    }
}

/// Bits per element of a safetensors dtype name.
fn bits_of(dtype: &str) -> Option<u128> {
    Some(match dtype {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" => 64,
        _ => return None,
    })
}

/// Re-checks the tensor table of a header that the `safetensors` crate refused, to name the
/// first tensor at fault. `None` when nothing specific is found.
fn diagnose(bytes: &[u8], header_len: u64) -> Option<SafetensorsError> {
    let end = LEN_PREFIX.checked_add(usize::try_from(header_len).ok()?)?;
    let header = bytes.get(LEN_PREFIX..end)?;
    let available = bytes.len().checked_sub(end)?;
    let value: serde_json::Value = serde_json::from_slice(header).ok()?;
    let obj = value.as_object()?;
    struct Entry<'a> {
        name: &'a str,
        dtype: &'a str,
        shape: Vec<u64>,
        start: u64,
        end: u64,
    }
    let mut entries = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype")?.as_str()?;
        let shape = v
            .get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<Vec<u64>>>()?;
        let offs = v.get("data_offsets")?.as_array()?;
        let start = offs.first()?.as_u64()?;
        let end = offs.get(1)?.as_u64()?;
        entries.push(Entry {
            name,
            dtype,
            shape,
            start,
            end,
        });
    }
    entries.sort_by_key(|e| (e.start, e.end));
    let mut pos = 0u64;
    for e in &entries {
        if e.end < e.start {
            return Some(SafetensorsError::Offsets {
                name: e.name.to_string(),
                start: e.start,
                end: e.end,
                problem: "are reversed".to_string(),
            });
        }
        if e.start != pos {
            let problem = if e.start < pos {
                format!("overlap the previous tensor, which ends at {pos}")
            } else {
                format!("leave a gap after the previous tensor, which ends at {pos}")
            };
            return Some(SafetensorsError::Offsets {
                name: e.name.to_string(),
                start: e.start,
                end: e.end,
                problem,
            });
        }
        let bits = bits_of(e.dtype)?;
        let needed_bits = e
            .shape
            .iter()
            .try_fold(bits, |acc, &d| acc.checked_mul(d as u128));
        let span = e.end - e.start;
        let needed = needed_bits.map(|b| b.div_ceil(8));
        if needed != Some(span as u128) || needed_bits.is_some_and(|b| b % 8 != 0) {
            return Some(SafetensorsError::SizeMismatch {
                name: e.name.to_string(),
                dtype: e.dtype.to_string(),
                shape: e.shape.clone(),
                needed: needed.unwrap_or(u128::MAX),
                start: e.start,
                end: e.end,
                span,
            });
        }
        pos = e.end;
    }
    if pos != available as u64 {
        return Some(SafetensorsError::DataLength {
            data_end: pos,
            available,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(c_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(c_strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn sniff_accepts_header_and_refuses_others() {
        let mut f = 2u64.to_le_bytes().to_vec();
        f.extend_from_slice(b"{}");
        assert!(sniff(&f));
        assert!(!sniff(b"PK\x03\x04\x14\x00\x00\x00{"));
        assert!(!sniff(b"\x93NUMPY\x01\x00"));
        assert!(!sniff(b""));
    }
}
