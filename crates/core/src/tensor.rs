use crate::limits::{MAX_ELEMENTS, MAX_RANK};
use crate::Blob;
use half::{bf16, f16};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Boolean stored as one byte.
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// True for floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Short lowercase name (`f32`, `bf16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

/// Byte order of the stored elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little endian (almost every file).
    Little,
    /// Big endian (some `.npy` files).
    Big,
}

/// Problems with a tensor's description relative to its storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// More dimensions than [`MAX_RANK`].
    #[error("tensor has {0} dimensions (at most {MAX_RANK} supported)")]
    RankTooLarge(usize),
    /// Shape and strides disagree in length.
    #[error("tensor has {shape} dimensions but {strides} strides")]
    StrideRank {
        /// Number of dimensions.
        shape: usize,
        /// Number of strides.
        strides: usize,
    },
    /// The element count overflows or exceeds [`MAX_ELEMENTS`].
    #[error("tensor shape {0:?} has too many elements")]
    TooManyElements(Vec<usize>),
    /// The described view reads past the end of the storage.
    #[error("tensor shape {shape:?} (strides {strides:?}, offset {offset}) needs {needed} elements of {dtype} but its storage holds {available}")]
    OutOfBounds {
        /// Shape of the view.
        shape: Vec<usize>,
        /// Strides of the view, in elements.
        strides: Vec<usize>,
        /// Offset of the view, in elements.
        offset: usize,
        /// Elements needed.
        needed: u128,
        /// Elements available.
        available: usize,
        /// Element type.
        dtype: &'static str,
    },
}

/// A tensor as stored in a file: element type, shape, element strides and offset into a byte
/// buffer. Validated on construction so that every element index lies inside the storage.
#[derive(Debug, Clone)]
pub struct RawTensor {
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    order: ByteOrder,
    storage: Blob,
}

/// Row-major (C order) strides of `shape`, saturating on overflow (validation catches that).
pub(crate) fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

fn checked_numel(shape: &[usize]) -> Result<usize, TensorError> {
    if shape.len() > MAX_RANK {
        return Err(TensorError::RankTooLarge(shape.len()));
    }
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| TensorError::TooManyElements(shape.to_vec()))?;
    }
    if n > MAX_ELEMENTS {
        return Err(TensorError::TooManyElements(shape.to_vec()));
    }
    Ok(n)
}

impl RawTensor {
    /// A C-contiguous little-endian tensor covering the start of `storage`.
    pub fn contiguous(dtype: DType, shape: Vec<usize>, storage: Blob) -> Result<Self, TensorError> {
        let strides = c_strides(&shape);
        Self::strided(dtype, shape, strides, 0, ByteOrder::Little, storage)
    }

    /// A strided view into `storage` (strides and offset in elements).
    pub fn strided(
        dtype: DType,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
        order: ByteOrder,
        storage: Blob,
    ) -> Result<Self, TensorError> {
        if strides.len() != shape.len() {
            return Err(TensorError::StrideRank {
                shape: shape.len(),
                strides: strides.len(),
            });
        }
        let numel = checked_numel(&shape)?;
        let available = storage.len() / dtype.size();
        if numel > 0 {
            // last index touched + 1, in u128 so that hostile strides cannot overflow
            let mut needed: u128 = offset as u128 + 1;
            for (&d, &s) in shape.iter().zip(&strides) {
                needed += (d as u128 - 1) * s as u128;
            }
            if needed > available as u128 {
                return Err(TensorError::OutOfBounds {
                    shape,
                    strides,
                    offset,
                    needed,
                    available,
                    dtype: dtype.name(),
                });
            }
        }
        Ok(RawTensor {
            dtype,
            shape,
            strides,
            offset,
            order,
            storage,
        })
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Strides in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True if the elements are laid out in C order without gaps.
    pub fn is_c_contiguous(&self) -> bool {
        let c = c_strides(&self.shape);
        self.shape
            .iter()
            .zip(self.strides.iter().zip(&c))
            .all(|(&d, (&s, &cs))| d <= 1 || s == cs)
    }

    /// The underlying storage.
    pub fn storage(&self) -> &Blob {
        &self.storage
    }

    fn read(&self, bytes: &[u8], i: usize) -> f64 {
        let sz = self.dtype.size();
        let b = &bytes[i * sz..(i + 1) * sz];
        macro_rules! rd {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                match self.order {
                    ByteOrder::Little => <$t>::from_le_bytes(a),
                    ByteOrder::Big => <$t>::from_be_bytes(a),
                }
            }};
        }
        match self.dtype {
            DType::F16 => f16::from_bits(rd!(u16, 2)).to_f64(),
            DType::BF16 => bf16::from_bits(rd!(u16, 2)).to_f64(),
            DType::F32 => rd!(f32, 4) as f64,
            DType::F64 => rd!(f64, 8),
            DType::I8 => b[0] as i8 as f64,
            DType::U8 => b[0] as f64,
            DType::Bool => (b[0] != 0) as u8 as f64,
            DType::I16 => rd!(i16, 2) as f64,
            DType::I32 => rd!(i32, 4) as f64,
            DType::I64 => rd!(i64, 8) as f64,
        }
    }

    /// All elements in C order as `f64`, converted exactly from the stored type (f64 stays f64).
    pub fn to_f64(&self) -> Vec<f64> {
        let bytes = self.storage.as_slice();
        let n = self.numel();
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        if self.is_c_contiguous() {
            for i in self.offset..self.offset + n {
                out.push(self.read(bytes, i));
            }
            return out;
        }
        let rank = self.shape.len();
        let mut idx = vec![0usize; rank];
        let mut pos = self.offset;
        for _ in 0..n {
            out.push(self.read(bytes, pos));
            // increment the multi-index, last dimension fastest
            let mut d = rank;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                pos += self.strides[d];
                if idx[d] < self.shape[d] {
                    break;
                }
                pos -= self.strides[d] * self.shape[d];
                idx[d] = 0;
            }
        }
        out
    }

    /// All elements in C order rounded to `f32` (the precision the authors' pipeline analyses).
    ///
    /// Equal to converting [`RawTensor::to_f64`] to `f32`, without the `f64` copy.
    pub fn to_f32(&self) -> Vec<f32> {
        macro_rules! conv {
            ($n:expr, |$b:ident| $e:expr) => {
                self.gather::<$n>(|$b: [u8; $n]| $e)
            };
        }
        let le = self.order == ByteOrder::Little;
        match (self.dtype, le) {
            (DType::F32, true) => conv!(4, |b| f32::from_le_bytes(b)),
            (DType::F32, false) => conv!(4, |b| f32::from_be_bytes(b)),
            (DType::F64, true) => conv!(8, |b| f64::from_le_bytes(b) as f32),
            (DType::F64, false) => conv!(8, |b| f64::from_be_bytes(b) as f32),
            (DType::F16, true) => conv!(2, |b| f16::from_le_bytes(b).to_f32()),
            (DType::F16, false) => conv!(2, |b| f16::from_be_bytes(b).to_f32()),
            (DType::BF16, true) => conv!(2, |b| bf16::from_le_bytes(b).to_f32()),
            (DType::BF16, false) => conv!(2, |b| bf16::from_be_bytes(b).to_f32()),
            (DType::I8, _) => conv!(1, |b| f32::from(b[0] as i8)),
            (DType::U8, _) => conv!(1, |b| f32::from(b[0])),
            (DType::Bool, _) => conv!(1, |b| f32::from(u8::from(b[0] != 0))),
            (DType::I16, true) => conv!(2, |b| f32::from(i16::from_le_bytes(b))),
            (DType::I16, false) => conv!(2, |b| f32::from(i16::from_be_bytes(b))),
            // i32 -> f32 rounds once, exactly like i32 -> f64 (exact) -> f32
            (DType::I32, true) => conv!(4, |b| i32::from_le_bytes(b) as f32),
            (DType::I32, false) => conv!(4, |b| i32::from_be_bytes(b) as f32),
            // i64 keeps the double rounding of `to_f64` (i64 -> f64 -> f32)
            (DType::I64, true) => conv!(8, |b| i64::from_le_bytes(b) as f64 as f32),
            (DType::I64, false) => conv!(8, |b| i64::from_be_bytes(b) as f64 as f32),
        }
    }

    /// Applies `f` to the `N`-byte encoding of every element, in C order.
    #[inline(always)]
    fn gather<const N: usize>(&self, f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        let elem = |c: &[u8]| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        };
        let bytes = self.storage.as_slice();
        let n = self.numel();
        if n == 0 {
            return Vec::new();
        }
        // Validated on construction: every element index lies inside the storage.
        if self.is_c_contiguous() {
            let start = self.offset * N;
            return bytes[start..start + n * N]
                .chunks_exact(N)
                .map(elem)
                .collect();
        }
        // Strided: runs along the last dimension, the other indices as an odometer.
        let rank = self.shape.len();
        let (inner, inner_stride) = (self.shape[rank - 1], self.strides[rank - 1]);
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; rank - 1];
        let mut pos = self.offset;
        for _ in 0..n / inner {
            if inner_stride == 1 {
                out.extend(bytes[pos * N..(pos + inner) * N].chunks_exact(N).map(elem));
            } else {
                for j in 0..inner {
                    let p = (pos + j * inner_stride) * N;
                    out.push(elem(&bytes[p..p + N]));
                }
            }
            let mut d = rank - 1;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                pos += self.strides[d];
                if idx[d] < self.shape[d] {
                    break;
                }
                pos -= self.strides[d] * self.shape[d];
                idx[d] = 0;
            }
        }
        out
    }

    /// The elements as a borrowed `f32` slice in C order, when the stored bytes already are
    /// exactly that: `f32` in the machine's byte order, C-contiguous, 4-byte aligned in memory.
    /// Otherwise `None` (use [`RawTensor::to_f32`]).
    pub fn as_f32_slice(&self) -> Option<&[f32]> {
        let native = if cfg!(target_endian = "little") {
            ByteOrder::Little
        } else {
            ByteOrder::Big
        };
        if self.dtype != DType::F32 || self.order != native || !self.is_c_contiguous() {
            return None;
        }
        let n = self.numel();
        if n == 0 {
            return Some(&[]);
        }
        let bytes = &self.storage.as_slice()[self.offset * 4..(self.offset + n) * 4];
        // SAFETY: every bit pattern is a valid f32; `align_to` only yields a middle part that
        // is correctly aligned for f32 and lies inside `bytes`.
        let (head, body, tail) = unsafe { bytes.align_to::<f32>() };
        (head.is_empty() && tail.is_empty()).then_some(body)
    }

    /// The byte range of the storage that the elements of this tensor lie in (empty for a
    /// tensor without elements).
    pub fn byte_span(&self) -> std::ops::Range<usize> {
        if self.numel() == 0 {
            return 0..0;
        }
        // Fits: validated on construction against the storage length.
        let last: usize = self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>();
        let sz = self.dtype.size();
        self.offset * sz..(last + 1) * sz
    }

    /// Hands the memory pages of this tensor's bytes back to the operating system when they lie
    /// in a file map (see [`Blob::release`]); the tensor stays readable.
    pub fn release_storage(&self) {
        self.storage.release(self.byte_span());
    }

    /// Asks the operating system to start reading this tensor's bytes when they lie in a file
    /// map (see [`Blob::will_need`]).
    pub fn prefetch_storage(&self) {
        self.storage.will_need(self.byte_span());
    }

    /// Maps this tensor's bytes in at once when they lie in a file map, so that reading them
    /// costs no page faults (see [`Blob::populate`]).
    pub fn populate_storage(&self) {
        self.storage.populate(self.byte_span());
    }
}

/// Axis order of a 4-D convolution kernel as stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelLayout {
    /// out, in/groups, kh, kw (PyTorch, ONNX `Conv`).
    OIHW,
    /// kh, kw, in, out (TensorFlow / Keras).
    HWIO,
    /// out, kh, kw, in (TFLite).
    OHWI,
    /// in, out/groups, kh, kw (PyTorch / ONNX `ConvTranspose`).
    IOHW,
    /// 1, kh, kw, out (TFLite `DEPTHWISE_CONV_2D`: one input channel per filter).
    IHWO,
}

impl KernelLayout {
    /// Permutation `p` such that OIHW axis `i` is stored axis `p[i]`.
    fn axes(self) -> [usize; 4] {
        match self {
            KernelLayout::OIHW => [0, 1, 2, 3],
            KernelLayout::HWIO => [3, 2, 0, 1],
            KernelLayout::OHWI => [0, 3, 1, 2],
            KernelLayout::IOHW => [1, 0, 2, 3],
            KernelLayout::IHWO => [3, 0, 1, 2],
        }
    }

    /// A view of `t` (C-contiguous, stored in this layout) with the OIHW shape and the
    /// strides that read it in OIHW order, without copying: its C-order elements are the
    /// kernel in OIHW order.
    pub fn oihw_view(self, t: &RawTensor) -> Result<RawTensor, TensorError> {
        let shape: [usize; 4] = match t.shape() {
            [a, b, c, d] => [*a, *b, *c, *d],
            other => {
                return Err(TensorError::StrideRank {
                    shape: other.len(),
                    strides: 4,
                })
            }
        };
        if !t.is_c_contiguous() {
            return Err(TensorError::StrideRank {
                shape: 4,
                strides: t.strides().len(),
            });
        }
        let src = c_strides(&shape);
        let a = self.axes();
        let shape_oihw = self.oihw_shape(&shape);
        let strides = [src[a[0]], src[a[1]], src[a[2]], src[a[3]]];
        RawTensor::strided(
            t.dtype,
            shape_oihw.to_vec(),
            strides.to_vec(),
            t.offset,
            t.order,
            t.storage.clone(),
        )
    }

    /// The (out, in, kh, kw) shape of a kernel stored with this layout.
    pub fn oihw_shape(self, shape: &[usize; 4]) -> [usize; 4] {
        let a = self.axes();
        [shape[a[0]], shape[a[1]], shape[a[2]], shape[a[3]]]
    }

    /// Reorders C-ordered `data` of `shape` (in this layout) into OIHW C order.
    pub fn to_oihw<T: Copy>(self, shape: &[usize; 4], data: &[T]) -> Vec<T> {
        if self == KernelLayout::OIHW {
            return data.to_vec();
        }
        let a = self.axes();
        let src_strides = [
            shape[1] * shape[2] * shape[3],
            shape[2] * shape[3],
            shape[3],
            1,
        ];
        let o = self.oihw_shape(shape);
        let mut out = Vec::with_capacity(data.len());
        for i0 in 0..o[0] {
            for i1 in 0..o[1] {
                for i2 in 0..o[2] {
                    for i3 in 0..o[3] {
                        let p = i0 * src_strides[a[0]]
                            + i1 * src_strides[a[1]]
                            + i2 * src_strides[a[2]]
                            + i3 * src_strides[a[3]];
                        out.push(data[p]);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_blob(v: &[f32]) -> Blob {
        Blob::from_f32s(v)
    }

    #[test]
    fn column_major_view_reads_transposed() {
        // storage 0..6 viewed as a 2x3 column-major matrix
        let b = f32_blob(&[0., 1., 2., 3., 4., 5.]);
        let t = RawTensor::strided(DType::F32, vec![2, 3], vec![1, 2], 0, ByteOrder::Little, b)
            .unwrap();
        assert!(!t.is_c_contiguous());
        assert_eq!(t.to_f32(), vec![0., 2., 4., 1., 3., 5.]);
    }

    #[test]
    fn view_past_storage_is_refused() {
        let b = f32_blob(&[0.; 8]);
        let e = RawTensor::contiguous(DType::F32, vec![3, 3], b.clone()).unwrap_err();
        assert!(matches!(
            e,
            TensorError::OutOfBounds {
                needed: 9,
                available: 8,
                ..
            }
        ));
        let e = RawTensor::strided(
            DType::F32,
            vec![2],
            vec![usize::MAX],
            0,
            ByteOrder::Little,
            b,
        )
        .unwrap_err();
        assert!(matches!(e, TensorError::OutOfBounds { .. }));
    }

    #[test]
    fn overflowing_shape_is_refused() {
        let e = RawTensor::contiguous(DType::F32, vec![usize::MAX, 2], Blob::from_vec(vec![]))
            .unwrap_err();
        assert!(matches!(e, TensorError::TooManyElements(_)));
    }

    #[test]
    fn half_types_convert() {
        let v: Vec<u8> = [f16::from_f32(1.5).to_bits(), f16::from_f32(-2.0).to_bits()]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let t = RawTensor::contiguous(DType::F16, vec![2], Blob::from_vec(v)).unwrap();
        assert_eq!(t.to_f32(), vec![1.5, -2.0]);
        let v: Vec<u8> = [bf16::from_f32(0.25).to_bits()]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let t = RawTensor::strided(
            DType::BF16,
            vec![1],
            vec![1],
            0,
            ByteOrder::Big,
            Blob::from_vec(v),
        )
        .unwrap();
        assert_eq!(t.to_f32(), vec![0.25]);
    }

    /// Every dtype and byte order, contiguous and strided: `to_f32` equals `to_f64` rounded.
    #[test]
    fn to_f32_matches_to_f64_for_every_dtype() {
        let vals: [f64; 6] = [0.0, -1.5, 3.25, 100.0, -128.0, 16_777_217.0];
        let big: [i64; 2] = [(1 << 53) + 1, -(1 << 62) - 3];
        let dtypes = [
            DType::F16,
            DType::BF16,
            DType::F32,
            DType::F64,
            DType::I8,
            DType::U8,
            DType::I16,
            DType::I32,
            DType::I64,
            DType::Bool,
        ];
        for dt in dtypes {
            for order in [ByteOrder::Little, ByteOrder::Big] {
                let mut bytes = Vec::new();
                for (i, &v) in vals.iter().enumerate() {
                    let mut b: Vec<u8> = match dt {
                        DType::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
                        DType::BF16 => bf16::from_f64(v).to_le_bytes().to_vec(),
                        DType::F32 => (v as f32).to_le_bytes().to_vec(),
                        DType::F64 => (v + 0.1).to_le_bytes().to_vec(),
                        DType::I8 => vec![v as i8 as u8],
                        DType::U8 | DType::Bool => vec![v as u8],
                        DType::I16 => (v as i16).to_le_bytes().to_vec(),
                        DType::I32 => (v as i32).to_le_bytes().to_vec(),
                        DType::I64 => big
                            .get(i % 3)
                            .copied()
                            .unwrap_or(v as i64)
                            .to_le_bytes()
                            .to_vec(),
                    };
                    if order == ByteOrder::Big {
                        b.reverse();
                    }
                    bytes.extend(b);
                }
                let blob = Blob::from_vec(bytes);
                let views = [
                    (vec![2, 3], vec![3, 1], 0),
                    (vec![3, 2], vec![1, 3], 0),
                    (vec![2, 2], vec![1, 3], 1),
                    (vec![5], vec![1], 1),
                    (vec![], vec![], 4),
                ];
                for (shape, strides, offset) in views {
                    let t = RawTensor::strided(dt, shape, strides, offset, order, blob.clone())
                        .unwrap();
                    let want: Vec<f32> = t.to_f64().iter().map(|&x| x as f32).collect();
                    let got = t.to_f32();
                    assert_eq!(
                        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        "{dt:?} {order:?} {:?}/{:?}",
                        t.shape(),
                        t.strides()
                    );
                }
            }
        }
    }

    #[test]
    fn strided_4d_view_reads_in_c_order() {
        // storage 0..24 viewed as the (2, 3, 2, 2) transpose of a (2, 2, 3, 2) C array
        let b = f32_blob(&(0..24).map(|x| x as f32).collect::<Vec<_>>());
        let t = RawTensor::strided(
            DType::F32,
            vec![2, 3, 2, 2],
            vec![12, 2, 6, 1],
            0,
            ByteOrder::Little,
            b,
        )
        .unwrap();
        let mut want = vec![];
        for a in 0..2 {
            for c in 0..3 {
                for bb in 0..2 {
                    for d in 0..2 {
                        want.push((12 * a + 6 * bb + 2 * c + d) as f32);
                    }
                }
            }
        }
        assert_eq!(t.to_f32(), want);
        assert!(t.as_f32_slice().is_none());
        assert_eq!(t.byte_span(), 0..96);
    }

    #[test]
    fn f32_slices_are_borrowed_only_when_exact() {
        let b = f32_blob(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = RawTensor::strided(
            DType::F32,
            vec![2, 2],
            vec![2, 1],
            1,
            ByteOrder::Little,
            b.clone(),
        )
        .unwrap();
        assert_eq!(t.as_f32_slice(), Some(&[2.0f32, 3.0, 4.0, 5.0][..]));
        assert_eq!(t.byte_span(), 4..20);
        // misaligned: the same values one byte further
        let mut v = vec![0u8];
        v.extend_from_slice(b.as_slice());
        let mis = Blob::from_vec(v).slice(1..21).unwrap();
        let t = RawTensor::contiguous(DType::F32, vec![5], mis.clone()).unwrap();
        if !(mis.as_slice().as_ptr() as usize).is_multiple_of(4) {
            assert!(t.as_f32_slice().is_none());
        }
        assert_eq!(t.to_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        // big-endian storage is never borrowed
        let t =
            RawTensor::strided(DType::F32, vec![1], vec![1], 0, ByteOrder::Big, b.clone()).unwrap();
        assert!(t.as_f32_slice().is_none());
        // releasing a blob that is not a file map changes nothing
        t.release_storage();
        assert_eq!(b.as_slice()[..4], 1.0f32.to_le_bytes());
    }

    #[test]
    fn mapped_tensor_stays_readable_after_release() {
        let path =
            std::env::temp_dir().join(format!("convlens-core-release-{}", std::process::id()));
        let vals: Vec<f32> = (0..5000).map(|x| x as f32 * 0.5).collect();
        std::fs::write(&path, Blob::from_f32s(&vals).as_slice()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        let _ = std::fs::remove_file(&path);
        let blob = Blob::from_mmap(map);
        assert!(blob.is_mapped() && blob.slice(4..8).unwrap().is_mapped());
        let t = RawTensor::contiguous(DType::F32, vec![5000], blob).unwrap();
        assert_eq!(t.as_f32_slice().unwrap(), &vals[..]);
        t.prefetch_storage();
        t.populate_storage();
        t.release_storage();
        assert_eq!(t.as_f32_slice().unwrap(), &vals[..]);
        assert_eq!(t.to_f32(), vals);
    }

    #[test]
    fn layouts_convert_to_oihw() {
        // OIHW kernel with O=2, I=3, H=1, W=2: value = 1000*o + 100*i + 10*h + w
        let oihw: Vec<i32> = (0..2)
            .flat_map(|o| (0..3).flat_map(move |i| (0..2).map(move |w| 1000 * o + 100 * i + w)))
            .collect();
        // the same kernel stored as HWIO
        let mut hwio = vec![];
        for w in 0..2 {
            for i in 0..3 {
                for o in 0..2 {
                    hwio.push(1000 * o + 100 * i + w);
                }
            }
        }
        assert_eq!(KernelLayout::HWIO.to_oihw(&[1, 2, 3, 2], &hwio), oihw);
        let mut ohwi = vec![];
        for o in 0..2 {
            for w in 0..2 {
                for i in 0..3 {
                    ohwi.push(1000 * o + 100 * i + w);
                }
            }
        }
        assert_eq!(KernelLayout::OHWI.to_oihw(&[2, 1, 2, 3], &ohwi), oihw);
        let mut iohw = vec![];
        for i in 0..3 {
            for o in 0..2 {
                for w in 0..2 {
                    iohw.push(1000 * o + 100 * i + w);
                }
            }
        }
        assert_eq!(KernelLayout::IOHW.to_oihw(&[3, 2, 1, 2], &iohw), oihw);
        assert_eq!(KernelLayout::IOHW.oihw_shape(&[3, 2, 1, 2]), [2, 3, 1, 2]);
        // depthwise 1HWO: O=2 filters of 1x2, value = 1000*o + w
        let ihwo: Vec<i32> = (0..2)
            .flat_map(|w| (0..2).map(move |o| 1000 * o + w))
            .collect();
        let want: Vec<i32> = (0..2)
            .flat_map(|o| (0..2).map(move |w| 1000 * o + w))
            .collect();
        assert_eq!(KernelLayout::IHWO.to_oihw(&[1, 1, 2, 2], &ihwo), want);
        assert_eq!(KernelLayout::IHWO.oihw_shape(&[1, 1, 2, 2]), [2, 1, 1, 2]);
    }

    #[test]
    fn oihw_views_read_like_the_copies() {
        let data: Vec<f32> = (0..24).map(|x| x as f32).collect();
        for (layout, shape) in [
            (KernelLayout::OHWI, [2, 3, 2, 2]),
            (KernelLayout::IHWO, [1, 3, 2, 4]),
            (KernelLayout::HWIO, [3, 2, 2, 2]),
            (KernelLayout::OIHW, [2, 2, 3, 2]),
        ] {
            let t = RawTensor::contiguous(DType::F32, shape.to_vec(), f32_blob(&data)).unwrap();
            let v = layout.oihw_view(&t).unwrap();
            assert_eq!(v.shape(), layout.oihw_shape(&shape));
            assert_eq!(v.to_f32(), layout.to_oihw(&shape, &data), "{layout:?}");
        }
        let t = RawTensor::contiguous(DType::F32, vec![24], f32_blob(&data)).unwrap();
        assert!(KernelLayout::OHWI.oihw_view(&t).is_err());
    }
}
