//! Arrays handed over from Python, read in place.
//!
//! The Python layer describes every array by numpy's array interface: type string, shape,
//! byte strides, data address, and the object that owns the memory. The bytes are not copied:
//! the tensor's storage is a view of that memory that keeps the owner alive.

use crate::errors::argument_error;
use convlens_core::{Blob, ByteOrder, Checkpoint, DType, Format, NamedTensor, RawTensor};
use pyo3::prelude::*;

/// At most this many tensors in one mapping (a guard against handing over a whole dataset).
const MAX_TENSORS: usize = 1 << 20;

/// Memory owned by a Python object (a numpy array), viewed as bytes.
struct PyMemory {
    ptr: *const u8,
    len: usize,
    _owner: Py<PyAny>,
}

// SAFETY: the memory is only read, and `_owner` (which is Send + Sync) keeps it alive for the
// lifetime of this value. The Python layer documents that arrays must not be written while
// convlens reads them.
unsafe impl Send for PyMemory {}
unsafe impl Sync for PyMemory {}

impl AsRef<[u8]> for PyMemory {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr..ptr+len` is the byte span of the owner's array (computed from its own
        // shape and strides by `tensor`), alive while `_owner` is held.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn dtype_of(typestr: &str) -> Option<(DType, ByteOrder)> {
    if typestr == "bf16" {
        return Some((DType::BF16, ByteOrder::Little));
    }
    let (order, code) = typestr.split_at_checked(1)?;
    let order = match order {
        "<" | "|" | "=" => ByteOrder::Little,
        ">" => ByteOrder::Big,
        _ => return None,
    };
    let dt = match code {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "b1" => DType::Bool,
        _ => return None,
    };
    Some((dt, order))
}

/// One array described as `(key, typestr, shape, strides_or_None, address, owner)`.
pub fn tensor(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<NamedTensor> {
    type Desc = (
        String,
        String,
        Vec<usize>,
        Option<Vec<isize>>,
        usize,
        Py<PyAny>,
    );
    let (name, typestr, shape, strides, addr, owner): Desc = item.extract().map_err(|_| {
        argument_error(
            py,
            "a tensor is (key, typestr, shape, strides, address, owner)",
        )
    })?;
    let (dtype, order) = dtype_of(&typestr).ok_or_else(|| {
        argument_error(
            py,
            &format!(
                "{name}: unsupported array type {typestr:?} (float16/32/64, bfloat16 or integers)"
            ),
        )
    })?;
    let size = dtype.size();
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| argument_error(py, &format!("{name}: shape {shape:?} overflows")))?;
    let elem_strides: Vec<usize> = match &strides {
        None => {
            let mut s = vec![0usize; shape.len()];
            let mut acc = 1usize;
            for (i, &d) in shape.iter().enumerate().rev() {
                s[i] = acc;
                acc = acc.saturating_mul(d.max(1));
            }
            s
        }
        Some(st) => {
            if st.len() != shape.len() {
                return Err(argument_error(
                    py,
                    &format!("{name}: strides do not match the shape"),
                ));
            }
            st.iter()
                .map(|&b| {
                    (b >= 0 && (b as usize).is_multiple_of(size))
                        .then(|| b as usize / size)
                        .ok_or_else(|| {
                            argument_error(
                                py,
                                &format!("{name}: byte strides {st:?} are negative or not a multiple of the item size (pass a contiguous array)"),
                            )
                        })
                })
                .collect::<PyResult<Vec<_>>>()?
        }
    };
    let len_elems = if numel == 0 {
        0
    } else {
        shape
            .iter()
            .zip(&elem_strides)
            .try_fold(1usize, |a, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
            })
            .ok_or_else(|| argument_error(py, &format!("{name}: strides overflow")))?
    };
    let len = len_elems
        .checked_mul(size)
        .ok_or_else(|| argument_error(py, &format!("{name}: array too large")))?;
    if len > 0 && addr == 0 {
        return Err(argument_error(py, &format!("{name}: null data address")));
    }
    let mem = PyMemory {
        ptr: addr as *const u8,
        len,
        _owner: owner,
    };
    let blob = Blob::from_owner(mem);
    let t = RawTensor::strided(dtype, shape, elem_strides, 0, order, blob)
        .map_err(|e| argument_error(py, &format!("{name}: {e}")))?;
    Ok(NamedTensor { name, tensor: t })
}

/// A checkpoint of the arrays of a Python list, in list order.
pub fn checkpoint(py: Python<'_>, list: &Bound<'_, PyAny>) -> PyResult<Checkpoint> {
    let n = list.len()?;
    if n > MAX_TENSORS {
        return Err(argument_error(
            py,
            &format!("{n} tensors: more than {MAX_TENSORS} in one model"),
        ));
    }
    let mut tensors = Vec::with_capacity(n);
    for item in list.try_iter()? {
        tensors.push(tensor(py, &item?)?);
    }
    Ok(Checkpoint::from_tensors(
        Format::InMemory,
        tensors,
        "mapping order",
    ))
}

/// A 4-D image array (N×C×H×W) as f32 values and its shape.
pub fn image_array(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<(Vec<f32>, [usize; 4])> {
    let t = tensor(py, a)?;
    let shape = t.tensor.shape();
    let dims: [usize; 4] = shape
        .try_into()
        .map_err(|_| argument_error(py, &format!("{what}: shape {shape:?} is not N×C×H×W")))?;
    Ok((t.tensor.to_f32(), dims))
}
