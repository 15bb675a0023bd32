//! Format-free core of convlens: byte buffers, typed tensors with explicit strides, kernel
//! layouts and the [`Checkpoint`] every format reader produces.
//!
//! Readers (`convlens-onnx`, `convlens-torch`, `convlens-safetensors`, `convlens-numpy`) parse
//! untrusted bytes into a [`Checkpoint`]: named tensors in order of appearance and, for files
//! that carry a graph, the convolution nodes with their attributes and graph depth.

mod blob;
mod checkpoint;
pub mod depth;
mod tensor;
pub mod zip_end;

pub use blob::Blob;
pub use checkpoint::{Checkpoint, ConvNode, ConvOp, Format, Graph, GraphNode, NamedTensor};
pub use tensor::{ByteOrder, DType, KernelLayout, RawTensor, TensorError};

/// Caps applied by every reader before allocating anything sized by a file header.
pub mod limits {
    /// Maximum number of dimensions of a tensor.
    pub const MAX_RANK: usize = 16;
    /// Maximum number of elements of a single tensor (2^34, 64 GiB of f32).
    pub const MAX_ELEMENTS: usize = 1 << 34;
    /// Maximum number of tensors in one checkpoint.
    pub const MAX_TENSORS: usize = 1 << 20;
    /// Maximum length of a tensor or node name in bytes.
    pub const MAX_NAME_LEN: usize = 1 << 16;
}
