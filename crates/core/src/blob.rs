use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A cheaply clonable, immutable byte range of a shared buffer (a memory map, a file read into
/// memory, or a decoded array).
#[derive(Clone)]
pub struct Blob {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    end: usize,
}

impl Blob {
    /// A blob owning `owner` (e.g. a `Vec<u8>` or a `memmap2::Mmap`), covering all of it.
    pub fn from_owner<T: AsRef<[u8]> + Send + Sync + 'static>(owner: T) -> Self {
        let end = owner.as_ref().len();
        Blob {
            owner: Arc::new(owner),
            start: 0,
            end,
        }
    }

    /// A blob owning a vector of bytes.
    pub fn from_vec(v: Vec<u8>) -> Self {
        Self::from_owner(v)
    }

    /// A blob holding the little-endian bytes of `values`.
    pub fn from_f32s(values: &[f32]) -> Self {
        let mut v = Vec::with_capacity(values.len() * 4);
        for x in values {
            v.extend_from_slice(&x.to_le_bytes());
        }
        Self::from_vec(v)
    }

    /// The bytes of this blob.
    pub fn as_slice(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.end]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the blob holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// A sub-range of this blob, or `None` if the range does not fit.
    pub fn slice(&self, range: Range<usize>) -> Option<Blob> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        Some(Blob {
            owner: Arc::clone(&self.owner),
            start: self.start + range.start,
            end: self.start + range.end,
        })
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
    }
}
