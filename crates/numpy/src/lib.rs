//! Readers for NumPy `.npy` arrays and `.npz` archives.
//!
//! Numeric arrays become [`RawTensor`]s that view the input [`Blob`] (or, for compressed `.npz`
//! members, the decompressed bytes) without copying; big-endian arrays keep their byte order and
//! Fortran-ordered arrays get column-major strides. Object arrays (`|O`, which are pickles) are
//! refused. String arrays (`<U..`, `|S..`) are not tensors: [`read_npz`] skips them with a note
//! and [`read_npz_strings`] returns their values. Other types numpy can store (complex, unsigned
//! integers wider than 8 bits, datetimes, structured records) are refused by [`parse_npy`] and
//! skipped with a note by [`read_npz`].

use convlens_core::limits::{MAX_ELEMENTS, MAX_NAME_LEN, MAX_RANK, MAX_TENSORS};
use convlens_core::{
    Blob, ByteOrder, Checkpoint, DType, Format, NamedTensor, RawTensor, TensorError,
};

mod literal;
mod npz;

pub use npz::{
    read_npz, read_npz_strings, MAX_INFLATED_BYTES, MAX_INFLATE_RATIO, MIN_INFLATE_CAP, ORDER_NPZ,
};

use literal::Value;

/// The six bytes every `.npy` file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest `.npy` header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Most strings [`read_npz_strings`] returns from one array.
pub const MAX_STRINGS: usize = 1 << 24;

/// `order_source` of a `.npy` checkpoint.
pub const ORDER_NPY: &str = "single array";

/// What is wrong with a `.npy` array or `.npz` archive.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The input does not start with `\x93NUMPY`.
    #[error("not a .npy array: missing the \\x93NUMPY magic")]
    BadMagic,
    /// The input ends inside the fixed-size preamble.
    #[error("file is {len} bytes long, too short for a .npy preamble")]
    TooShort {
        /// Input length.
        len: usize,
    },
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The declared header length runs past the end of the input.
    #[error("header length {len} runs past the end of the file ({file_len} bytes)")]
    HeaderLength {
        /// Declared header length.
        len: u64,
        /// Input length.
        file_len: usize,
    },
    /// The declared header length exceeds [`MAX_HEADER_LEN`].
    #[error("header length {0} exceeds the limit of {MAX_HEADER_LEN} bytes")]
    HeaderTooLarge(u64),
    /// The header is not a valid Python literal.
    #[error("malformed header at byte {pos}: {problem}")]
    Header {
        /// Byte position within the header text.
        pos: usize,
        /// What is wrong.
        problem: String,
    },
    /// The header dictionary lacks a key, has an unknown one, or a value of the wrong kind.
    #[error("header dictionary: {0}")]
    HeaderDict(String),
    /// A negative dimension.
    #[error("shape {shape:?} has a negative dimension")]
    NegativeDim {
        /// Shape as written.
        shape: Vec<i128>,
    },
    /// The shape has too many dimensions or elements.
    #[error("shape {shape:?} is too large ({problem})")]
    ShapeTooLarge {
        /// Shape as written.
        shape: Vec<i128>,
        /// Which limit is exceeded.
        problem: String,
    },
    /// An object array, i.e. a pickle.
    #[error("object array (descr '{0}') refused: its data is a pickle, which may run code")]
    ObjectArray(String),
    /// A type convlens does not read.
    #[error("unsupported dtype '{0}'")]
    UnsupportedDtype(String),
    /// A string array where a numeric one is needed.
    #[error("array of strings ('{0}') is not a tensor")]
    NotNumeric(String),
    /// A numeric array where a string one is needed.
    #[error("array of '{0}' does not hold strings")]
    NotStrings(String),
    /// The data section does not have the size the header implies.
    #[error("data holds {actual} bytes but shape {shape:?} of '{descr}' needs {expected}")]
    DataSize {
        /// Shape.
        shape: Vec<usize>,
        /// Type as written.
        descr: String,
        /// Bytes implied by the header.
        expected: u128,
        /// Bytes present.
        actual: usize,
    },
    /// A string element that is not valid text.
    #[error("string element {index} is not valid {encoding}")]
    BadString {
        /// Element index in C order.
        index: usize,
        /// "UTF-8" or "UTF-32".
        encoding: &'static str,
    },
    /// More strings than [`MAX_STRINGS`].
    #[error("{0} strings (at most {MAX_STRINGS} supported)")]
    TooManyStrings(usize),
    /// A tensor description that the core refuses.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The archive is not a readable zip file.
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    /// The archive has more members than [`MAX_TENSORS`].
    #[error("archive has {0} members (at most {MAX_TENSORS} supported)")]
    TooManyMembers(usize),
    /// A member name longer than [`MAX_NAME_LEN`].
    #[error("member name of {0} bytes (at most {MAX_NAME_LEN} supported)")]
    NameTooLong(usize),
    /// The requested member does not exist.
    #[error("archive has no array '{0}'")]
    NoSuchArray(String),
    /// A problem with one member of an archive.
    #[error("member '{name}': {source}")]
    Member {
        /// Member name in the archive.
        name: String,
        /// Problem.
        source: Box<NpyError>,
    },
    /// A member that cannot be extracted (compression, encryption, sizes, checksum).
    #[error("{0}")]
    Extract(String),
}

/// True if `bytes` starts like a `.npy` array.
pub fn sniff_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(NPY_MAGIC)
}

/// Element type of an array as described by its `descr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Numeric(DType, ByteOrder),
    /// `U<n>`: n UTF-32 code units per element.
    Unicode(usize, ByteOrder),
    /// `S<n>` / `a<n>`: n bytes per element.
    Bytes(usize),
    /// `|O`: pickled Python objects.
    Object,
    /// A type convlens does not read.
    Unsupported,
}

impl Kind {
    fn itemsize(self) -> Option<usize> {
        match self {
            Kind::Numeric(d, _) => Some(d.size()),
            Kind::Unicode(n, _) => n.checked_mul(4),
            Kind::Bytes(n) => Some(n),
            Kind::Object | Kind::Unsupported => None,
        }
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) descr: String,
    pub(crate) kind: Kind,
    pub(crate) fortran: bool,
    pub(crate) shape: Vec<usize>,
    /// Offset of the data section.
    pub(crate) data_start: usize,
}

fn dict_err(s: impl Into<String>) -> NpyError {
    NpyError::HeaderDict(s.into())
}

fn parse_descr(descr: &str) -> Kind {
    let (order, rest) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => (ByteOrder::Little, &descr[1..]),
        Some(b'>') => (ByteOrder::Big, &descr[1..]),
        _ => (ByteOrder::Little, descr),
    };
    let mut chars = rest.chars();
    let Some(kind) = chars.next() else {
        return Kind::Unsupported;
    };
    let num = chars.as_str();
    if kind == 'O' && (num.is_empty() || num == "8") {
        return Kind::Object;
    }
    if num.is_empty() || num.len() > 9 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Kind::Unsupported;
    }
    let Ok(n) = num.parse::<usize>() else {
        return Kind::Unsupported;
    };
    let numeric = |d: DType| Kind::Numeric(d, order);
    match (kind, n) {
        ('f', 2) => numeric(DType::F16),
        ('f', 4) => numeric(DType::F32),
        ('f', 8) => numeric(DType::F64),
        ('i', 1) => numeric(DType::I8),
        ('i', 2) => numeric(DType::I16),
        ('i', 4) => numeric(DType::I32),
        ('i', 8) => numeric(DType::I64),
        ('u', 1) => numeric(DType::U8),
        ('b', 1) => numeric(DType::Bool),
        ('U', n) if n > 0 => Kind::Unicode(n, order),
        ('S' | 'a', n) if n > 0 => Kind::Bytes(n),
        _ => Kind::Unsupported,
    }
}

/// Parses the preamble and header of a `.npy` array and checks the data size.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    if bytes.len() < NPY_MAGIC.len() {
        return Err(if NPY_MAGIC.starts_with(bytes) && !bytes.is_empty() {
            NpyError::TooShort { len: bytes.len() }
        } else {
            NpyError::BadMagic
        });
    }
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(NpyError::BadMagic);
    }
    let too_short = NpyError::TooShort { len: bytes.len() };
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(too_short),
    };
    let (hlen, hstart): (u64, usize) = match (major, minor) {
        (1, 0) => match bytes.get(8..10) {
            Some(b) => (u64::from(u16::from_le_bytes([b[0], b[1]])), 10),
            None => return Err(too_short),
        },
        (2, 0) | (3, 0) => match bytes.get(8..12) {
            Some(b) => (u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])), 12),
            None => return Err(too_short),
        },
        _ => return Err(NpyError::Version { major, minor }),
    };
    if hlen > MAX_HEADER_LEN as u64 {
        return Err(NpyError::HeaderTooLarge(hlen));
    }
    let text = usize::try_from(hlen)
        .ok()
        .and_then(|h| hstart.checked_add(h))
        .and_then(|hend| bytes.get(hstart..hend))
        .ok_or(NpyError::HeaderLength {
            len: hlen,
            file_len: bytes.len(),
        })?;
    let hend = hstart + text.len();
    let Value::Dict(entries) = literal::parse(text, major == 3)? else {
        return Err(dict_err("the header is not a dictionary"));
    };

    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in entries {
        match k {
            Value::Str(k) if k == "descr" => descr = Some(v),
            Value::Str(k) if k == "fortran_order" => fortran = Some(v),
            Value::Str(k) if k == "shape" => shape = Some(v),
            other => return Err(dict_err(format!("unexpected key {other}"))),
        }
    }
    let fortran = match fortran {
        Some(Value::Bool(b)) => b,
        Some(v) => return Err(dict_err(format!("'fortran_order' is {v}, not a boolean"))),
        None => return Err(dict_err("missing key 'fortran_order'")),
    };
    let (descr, kind) = match descr {
        Some(Value::Str(s)) => {
            let k = parse_descr(&s);
            (s, k)
        }
        Some(Value::List(_)) => ("[structured record]".to_string(), Kind::Unsupported),
        Some(v) => return Err(dict_err(format!("'descr' is {v}, not a type string"))),
        None => return Err(dict_err("missing key 'descr'")),
    };
    let dims: Vec<i128> = match shape {
        Some(Value::Tuple(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::Int(i) => Ok(i),
                other => Err(dict_err(format!("shape entry {other} is not an integer"))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(dict_err(format!("'shape' is {v}, not a tuple"))),
        None => return Err(dict_err("missing key 'shape'")),
    };
    if dims.iter().any(|&d| d < 0) {
        return Err(NpyError::NegativeDim { shape: dims });
    }
    if dims.len() > MAX_RANK {
        return Err(NpyError::ShapeTooLarge {
            shape: dims,
            problem: format!("more than {MAX_RANK} dimensions"),
        });
    }
    // element count with checked arithmetic, in the order the core computes it
    let mut numel: usize = 1;
    let mut shape = Vec::with_capacity(dims.len());
    for &d in &dims {
        let du = usize::try_from(d).ok();
        match du.and_then(|du| numel.checked_mul(du)) {
            Some(n) => numel = n,
            None => {
                return Err(NpyError::ShapeTooLarge {
                    shape: dims,
                    problem: "element count overflows".to_string(),
                })
            }
        }
        shape.push(du.unwrap_or(0));
    }
    if numel > MAX_ELEMENTS {
        return Err(NpyError::ShapeTooLarge {
            shape: dims,
            problem: format!("more than {MAX_ELEMENTS} elements"),
        });
    }
    let header = Header {
        descr,
        kind,
        fortran,
        shape,
        data_start: hend,
    };
    // the data size can only be checked for types with a known item size
    {
        if let Some(itemsize) = header.kind.itemsize() {
            let expected = numel as u128 * itemsize as u128;
            let actual = bytes.len() - hend;
            if expected != actual as u128 {
                return Err(NpyError::DataSize {
                    shape: header.shape,
                    descr: header.descr,
                    expected,
                    actual,
                });
            }
        }
    }
    Ok(header)
}

/// Element strides (C or Fortran order) of `shape`; `None` on overflow.
pub(crate) fn strides(shape: &[usize], fortran: bool) -> Option<Vec<usize>> {
    let mut s = vec![0usize; shape.len()];
    let mut acc: usize = 1;
    if fortran {
        for (st, &d) in s.iter_mut().zip(shape) {
            *st = acc;
            acc = acc.checked_mul(d)?;
        }
    } else {
        for (st, &d) in s.iter_mut().zip(shape).rev() {
            *st = acc;
            acc = acc.checked_mul(d)?;
        }
    }
    Some(s)
}

/// The numeric tensor of a parsed header over `data` (the whole `.npy` bytes).
pub(crate) fn tensor_of(header: &Header, data: &Blob) -> Result<RawTensor, NpyError> {
    let (dtype, order) = match header.kind {
        Kind::Numeric(d, o) => (d, o),
        Kind::Unicode(..) | Kind::Bytes(_) => {
            return Err(NpyError::NotNumeric(header.descr.clone()))
        }
        Kind::Object => return Err(NpyError::ObjectArray(header.descr.clone())),
        Kind::Unsupported => return Err(NpyError::UnsupportedDtype(header.descr.clone())),
    };
    let storage = data
        .slice(header.data_start..data.len())
        .ok_or(NpyError::TooShort { len: data.len() })?;
    let strides =
        strides(&header.shape, header.fortran).ok_or_else(|| NpyError::ShapeTooLarge {
            shape: header.shape.iter().map(|&d| d as i128).collect(),
            problem: "strides overflow".to_string(),
        })?;
    Ok(RawTensor::strided(
        dtype,
        header.shape.clone(),
        strides,
        0,
        order,
        storage,
    )?)
}

/// Parses a `.npy` array into a tensor viewing `data`.
pub fn parse_npy(data: Blob) -> Result<RawTensor, NpyError> {
    let header = parse_header(data.as_slice())?;
    tensor_of(&header, &data)
}

/// Reads a `.npy` array as a checkpoint holding one tensor named `""`.
pub fn read_npy(data: Blob) -> Result<Checkpoint, NpyError> {
    let tensor = parse_npy(data)?;
    Ok(Checkpoint::from_tensors(
        Format::Npy,
        vec![NamedTensor {
            name: String::new(),
            tensor,
        }],
        ORDER_NPY,
    ))
}

/// The string values of a `U`/`S` array in C order.
pub(crate) fn strings_of(header: &Header, bytes: &[u8]) -> Result<Vec<String>, NpyError> {
    let (itemsize, unicode) = match header.kind {
        Kind::Unicode(n, order) => (n.checked_mul(4), Some(order)),
        Kind::Bytes(n) => (Some(n), None),
        Kind::Numeric(..) => return Err(NpyError::NotStrings(header.descr.clone())),
        Kind::Object => return Err(NpyError::ObjectArray(header.descr.clone())),
        Kind::Unsupported => return Err(NpyError::UnsupportedDtype(header.descr.clone())),
    };
    let itemsize = itemsize.ok_or_else(|| NpyError::UnsupportedDtype(header.descr.clone()))?;
    let numel: usize = header.shape.iter().product();
    if numel > MAX_STRINGS {
        return Err(NpyError::TooManyStrings(numel));
    }
    let data = bytes.get(header.data_start..).unwrap_or(&[]);
    let strides =
        strides(&header.shape, header.fortran).ok_or_else(|| NpyError::ShapeTooLarge {
            shape: header.shape.iter().map(|&d| d as i128).collect(),
            problem: "strides overflow".to_string(),
        })?;
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; header.shape.len()];
    for index in 0..numel {
        let pos: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        let elem = pos
            .checked_mul(itemsize)
            .and_then(|start| data.get(start..start.checked_add(itemsize)?))
            .ok_or(NpyError::DataSize {
                shape: header.shape.clone(),
                descr: header.descr.clone(),
                expected: numel as u128 * itemsize as u128,
                actual: data.len(),
            })?;
        out.push(decode_string(elem, unicode, index)?);
        // next multi-index, last dimension fastest
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < header.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

fn decode_string(
    elem: &[u8],
    unicode: Option<ByteOrder>,
    index: usize,
) -> Result<String, NpyError> {
    match unicode {
        Some(order) => {
            let mut s = String::new();
            let units: Vec<u32> = elem
                .chunks_exact(4)
                .map(|c| {
                    let a = [c[0], c[1], c[2], c[3]];
                    match order {
                        ByteOrder::Little => u32::from_le_bytes(a),
                        ByteOrder::Big => u32::from_be_bytes(a),
                    }
                })
                .collect();
            // numpy drops trailing NULs
            let len = units.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
            for &u in &units[..len] {
                s.push(char::from_u32(u).ok_or(NpyError::BadString {
                    index,
                    encoding: "UTF-32",
                })?);
            }
            Ok(s)
        }
        None => {
            let len = elem.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            String::from_utf8(elem[..len].to_vec()).map_err(|_| NpyError::BadString {
                index,
                encoding: "UTF-8",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descrs() {
        assert_eq!(
            parse_descr("<f4"),
            Kind::Numeric(DType::F32, ByteOrder::Little)
        );
        assert_eq!(
            parse_descr(">f2"),
            Kind::Numeric(DType::F16, ByteOrder::Big)
        );
        assert_eq!(
            parse_descr("|u1"),
            Kind::Numeric(DType::U8, ByteOrder::Little)
        );
        assert_eq!(
            parse_descr("|b1"),
            Kind::Numeric(DType::Bool, ByteOrder::Little)
        );
        assert_eq!(parse_descr("<U24"), Kind::Unicode(24, ByteOrder::Little));
        assert_eq!(parse_descr("|S5"), Kind::Bytes(5));
        assert_eq!(parse_descr("|O"), Kind::Object);
        for d in [
            "<c8",
            "<u4",
            "<M8[ns]",
            "|V16",
            "<f16",
            "",
            "<",
            "<U0",
            "<f99999999999",
        ] {
            assert_eq!(parse_descr(d), Kind::Unsupported, "{d}");
        }
    }

    #[test]
    fn fortran_strides() {
        assert_eq!(strides(&[2, 3, 4], true).unwrap(), vec![1, 2, 6]);
        assert_eq!(strides(&[2, 3, 4], false).unwrap(), vec![12, 4, 1]);
    }
}
