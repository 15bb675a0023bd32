use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A cheaply clonable, immutable byte range of a shared buffer (a memory map, a file read into
/// memory, or a decoded array).
#[derive(Clone)]
pub struct Blob {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// Set when `owner` is a read-only file map: lets [`Blob::release`] hand pages back.
    map: Option<Arc<memmap2::Mmap>>,
    start: usize,
    end: usize,
}

impl Blob {
    /// A blob owning `owner` (e.g. a `Vec<u8>` or a `memmap2::Mmap`), covering all of it.
    pub fn from_owner<T: AsRef<[u8]> + Send + Sync + 'static>(owner: T) -> Self {
        let end = owner.as_ref().len();
        Blob {
            owner: Arc::new(owner),
            map: None,
            start: 0,
            end,
        }
    }

    /// A blob owning a read-only memory map of a file, covering all of it. Unlike
    /// [`Blob::from_owner`], pages of such a blob that are no longer needed can be handed back
    /// to the operating system with [`Blob::release`].
    pub fn from_mmap(map: memmap2::Mmap) -> Self {
        let map = Arc::new(map);
        let end = map.len();
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::clone(&map) as _;
        Blob {
            owner,
            map: Some(map),
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
            map: self.map.clone(),
            start: self.start + range.start,
            end: self.start + range.end,
        })
    }

    /// True when the blob lies in a file memory map (see [`Blob::from_mmap`]).
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Tells the operating system that the pages under `range` (relative to this blob) are not
    /// needed for now, so that they stop counting in the resident memory of the process. The
    /// bytes stay valid: a later read maps them in again from the file. Does nothing for blobs
    /// that are not file maps, for an empty or out-of-range `range`, and off Unix.
    pub fn release(&self, range: Range<usize>) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            if range.start >= range.end || range.end > self.len() {
                return;
            }
            let (offset, len) = (self.start + range.start, range.end - range.start);
            // SAFETY: `map` is a read-only shared mapping of a file (`memmap2::Mmap::map`), never
            // written through. MADV_DONTNEED only drops its page-table entries: the next access
            // faults the same file pages back in, so every `&[u8]` into the map keeps reading
            // the same bytes (the usual caveat of file maps — another process truncating or
            // rewriting the file — is unchanged). memmap2 checks that the range is in bounds.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Tells the operating system that the bytes under `range` (relative to this blob) will be
    /// read soon, so that it can start reading them from disk (asynchronously). Does nothing for
    /// blobs that are not file maps, for an empty or out-of-range `range`, and off Unix.
    pub fn will_need(&self, range: Range<usize>) {
        #[cfg(unix)]
        self.advise(range, memmap2::Advice::WillNeed);
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Maps the pages under `range` (relative to this blob) in at once, reading them from disk
    /// if needed, so that reading them costs no page faults (Linux 5.14 and later; elsewhere
    /// the same as [`Blob::will_need`]). The pages then count as resident until released. Does
    /// nothing for blobs that are not file maps and for an empty or out-of-range `range`.
    pub fn populate(&self, range: Range<usize>) {
        #[cfg(target_os = "linux")]
        if self.advise(range.clone(), memmap2::Advice::PopulateRead) {
            return;
        }
        self.will_need(range);
    }

    /// Gives `advice` for `range` (relative to this blob) of a file map; false when not
    /// applicable or refused.
    #[cfg(unix)]
    fn advise(&self, range: Range<usize>, advice: memmap2::Advice) -> bool {
        let Some(map) = &self.map else {
            return false;
        };
        if range.start >= range.end || range.end > self.len() {
            return false;
        }
        map.advise_range(advice, self.start + range.start, range.end - range.start)
            .is_ok()
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
