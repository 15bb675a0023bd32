//! HDF5 access for convlens: a two- or three-dimensional float dataset of filters (the CNN
//! Filter DB's `dataset.h5`: `filters`, N × 3 × 3 or N × 9) read in windows of rows, so that
//! memory does not grow with N.
//!
//! Parsing is done by the pure-Rust `hdf5-pure` crate (superblocks v0–v3, object headers v1
//! and v2, contiguous, compact and chunked storage with deflate/shuffle), opened in streaming
//! mode: metadata and chunks are fetched from the file on demand. This crate adds convlens's
//! own checks before anything sized by the file is allocated: the dataset's shape and element
//! type, and a named cap on the rows of one window.

use std::path::{Path, PathBuf};

/// Most filters read in one window (64 M filters of 9 taps: 2.25 GiB of f32).
pub const MAX_WINDOW_FILTERS: u64 = 1 << 26;
/// Most filters a dataset may declare (2^40).
pub const MAX_FILTERS: u64 = 1 << 40;

/// Why an HDF5 filter dataset could not be read; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct H5Error {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: H5ErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum H5ErrorKind {
    /// The HDF5 structure could not be parsed (not HDF5, truncated, addresses outside the
    /// file, cyclic B-trees, ...).
    #[error("invalid HDF5 file: {0}")]
    Hdf5(String),
    /// None of the dataset names looked for can be opened.
    #[error("no dataset named {names} ({reason})")]
    NoDataset {
        /// The names looked for.
        names: String,
        /// Why the first one could not be opened.
        reason: String,
    },
    /// The dataset is not an N × 3 × 3 or N × 9 float array.
    #[error("dataset {name:?} has shape {shape:?} and type {dtype}: expected N×3×3 or N×9 float32/float64 filters")]
    Shape {
        /// Dataset name.
        name: String,
        /// Shape as stored.
        shape: Vec<u64>,
        /// Element type as stored.
        dtype: String,
    },
    /// More filters than [`MAX_FILTERS`].
    #[error("dataset {name:?} declares {n} filters (at most {MAX_FILTERS})")]
    TooManyFilters {
        /// Dataset name.
        name: String,
        /// Declared filters.
        n: u64,
    },
    /// A window beyond the dataset or larger than [`MAX_WINDOW_FILTERS`].
    #[error("filters {start}..{end} requested from a dataset of {n} (windows of at most {MAX_WINDOW_FILTERS})")]
    Window {
        /// First filter.
        start: u64,
        /// One past the last filter.
        end: u64,
        /// Filters in the dataset.
        n: u64,
    },
    /// A chunk's stored bytes lie (partly) beyond the end of the file: reading it would
    /// allocate its declared size for bytes that are not there.
    #[error("dataset {name:?}: chunk at byte {address} declares {size} stored bytes, past the end of the {file_len}-byte file")]
    ChunkOutsideFile {
        /// Dataset name.
        name: String,
        /// File offset of the chunk.
        address: u64,
        /// Declared stored size of the chunk.
        size: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The file returned fewer values than the window holds.
    #[error("filters {start}..{end}: {got} values read, {want} expected")]
    ShortRead {
        /// First filter.
        start: u64,
        /// One past the last filter.
        end: u64,
        /// Values read.
        got: usize,
        /// Values expected.
        want: u64,
    },
}

/// An open `N × 3 × 3` (or `N × 9`) float dataset of 3×3 filters.
pub struct FilterDataset {
    path: PathBuf,
    name: String,
    ds: hdf5_pure::Dataset,
    n: u64,
    // keeps the file open for the dataset's lazy reads
    _file: hdf5_pure::File,
}

impl std::fmt::Debug for FilterDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FilterDataset({}:{}, {} filters)",
            self.path.display(),
            self.name,
            self.n
        )
    }
}

fn h5(path: &Path) -> impl Fn(hdf5_pure::Error) -> H5Error + '_ {
    move |e| H5Error {
        path: path.to_path_buf(),
        kind: H5ErrorKind::Hdf5(e.to_string()),
    }
}

impl FilterDataset {
    /// Opens the first of `names` (e.g. `["filters", "filter"]`) that exists in `path`.
    pub fn open(path: &Path, names: &[&str]) -> Result<Self, H5Error> {
        let err = |kind| H5Error {
            path: path.to_path_buf(),
            kind,
        };
        let file = hdf5_pure::File::open_streaming(path).map_err(h5(path))?;
        let mut found = None;
        let mut reason = String::from("no name given");
        for (i, n) in names.iter().enumerate() {
            match file.dataset(n) {
                Ok(ds) => {
                    found = Some((n.to_string(), ds));
                    break;
                }
                Err(e) if i == 0 => reason = format!("{n}: {e}"),
                Err(_) => {}
            }
        }
        let (name, ds) = found.ok_or_else(|| {
            err(H5ErrorKind::NoDataset {
                names: names.join(" or "),
                reason,
            })
        })?;
        let shape = ds.shape().map_err(h5(path))?;
        let dtype = ds.dtype().map_err(h5(path))?;
        let dname = format!("{dtype:?}");
        let is_float = matches!(dtype, hdf5_pure::DType::F32 | hdf5_pure::DType::F64);
        let n = match shape.as_slice() {
            [n, 3, 3] | [n, 9] if is_float => *n,
            _ => {
                return Err(err(H5ErrorKind::Shape {
                    name,
                    shape,
                    dtype: dname,
                }))
            }
        };
        if n > MAX_FILTERS {
            return Err(err(H5ErrorKind::TooManyFilters { name, n }));
        }
        // Chunk extents come from the file's B-tree; hdf5-pure allocates a chunk's declared
        // size before reading it, so a forged size would allocate gigabytes (fuzz finding).
        // An index it cannot enumerate (B-tree v2) is left to the reads, which are bounded.
        if let (Ok(Some(_)), Ok(chunks)) = (ds.chunk_shape(), ds.chunks()) {
            let file_len = std::fs::metadata(path)
                .map_err(|e| err(H5ErrorKind::Hdf5(e.to_string())))?
                .len();
            for c in chunks {
                if c.address
                    .checked_add(c.storage_size)
                    .is_none_or(|e| e > file_len)
                {
                    return Err(err(H5ErrorKind::ChunkOutsideFile {
                        name,
                        address: c.address,
                        size: c.storage_size,
                        file_len,
                    }));
                }
            }
        }
        Ok(FilterDataset {
            path: path.to_path_buf(),
            name,
            ds,
            n,
            _file: file,
        })
    }

    /// Number of filters.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True when the dataset holds no filter.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Name of the dataset that was opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Filters `start..end` as `9 · (end − start)` f32 values in C order (float64 data
    /// rounded to f32, as the authors' pipeline analyses them).
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<f32>, H5Error> {
        let err = |kind| H5Error {
            path: self.path.clone(),
            kind,
        };
        if start > end || end > self.n || end - start > MAX_WINDOW_FILTERS {
            return Err(err(H5ErrorKind::Window {
                start,
                end,
                n: self.n,
            }));
        }
        if start == end {
            return Ok(Vec::new());
        }
        let v = self
            .ds
            .read_f32_rows(start, end - start)
            .map_err(h5(&self.path))?;
        let want = (end - start) * 9;
        if v.len() as u64 != want {
            return Err(err(H5ErrorKind::ShortRead {
                start,
                end,
                got: v.len(),
                want,
            }));
        }
        Ok(v)
    }
}
