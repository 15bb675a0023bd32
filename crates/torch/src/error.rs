use convlens_core::TensorError;

/// Everything that can be wrong with a PyTorch file (the caller adds the file path).
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// The input has no bytes.
    #[error("file is empty")]
    Empty,
    /// The bytes are neither a zip archive nor a pickle stream.
    #[error("not a PyTorch file: {0}")]
    NotTorch(String),
    /// The zip container is damaged or uses a feature convlens does not read.
    #[error("damaged or unsupported zip archive: {0}")]
    Zip(String),
    /// A zip archive without the `data.pkl` member every torch archive has.
    #[error("zip archive has no `data.pkl` member, so it is not a PyTorch archive ({0})")]
    NoDataPkl(String),
    /// A member of the archive could not be read.
    #[error("archive member `{name}`: {msg}")]
    Member {
        /// Member name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The pickle is malformed (truncated, wrong types, stack underflow, unknown opcode...).
    #[error("malformed pickle at byte {pos} (opcode {op}): {msg}")]
    Pickle {
        /// Offset of the opcode in the pickle.
        pos: usize,
        /// Name of the opcode.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// The pickle names a global that can only serve to run code.
    #[error("pickle references global `{0}`, which is not allowed: convlens never executes code from a file")]
    ForbiddenGlobal(String),
    /// The pickle calls a global that is not one of the inert tensor/container constructors.
    #[error("pickle calls global `{0}`, which is not allowed: convlens never executes code from a file and only understands tensor-rebuilding functions and plain containers")]
    CallNotAllowed(String),
    /// A size limit that protects against decompression or expansion bombs was hit.
    #[error("file exceeds a safety limit: {0}")]
    Limit(String),
    /// The legacy (torch < 1.6) stream is damaged.
    #[error("legacy torch stream: {0}")]
    Legacy(String),
    /// A storage referenced by a tensor is missing or too small.
    #[error("storage `{key}`: {msg}")]
    Storage {
        /// Storage key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor description is invalid (negative sizes, overflowing offsets...).
    #[error("tensor `{name}`: {msg}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor's shape, strides and offset do not fit its storage.
    #[error("tensor `{name}`: {source}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// The validation failure.
        #[source]
        source: TensorError,
    },
    /// The asked-for checkpoint entry is not one of the file's candidate models.
    #[error("no model entry `{entry}` in this checkpoint; candidate entries: {candidates}")]
    NoEntry {
        /// The entry asked for.
        entry: String,
        /// The candidates found, comma-separated (or `none`).
        candidates: String,
    },
}
