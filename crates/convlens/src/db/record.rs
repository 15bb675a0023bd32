//! The per-model records of a filter database (`models/<name>.json`).

use crate::numeric::Moments;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serde for f64 that writes NaN/±inf as `null` and reads `null` back as NaN.
pub mod nan_f64 {
    use super::*;

    /// Serializes.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Filters of one kernel size of one model, stored in one `.npy` shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelShard {
    /// Kernel size (kh, kw).
    pub kernel: [usize; 2],
    /// Shard path relative to the database folder.
    pub shard: String,
    /// Filters in the shard.
    pub n_filters: u64,
    /// Sparse filters (paper rule) among them.
    pub n_sparse: u64,
    /// Moments of the l∞-scaled non-sparse filters (for the PCA basis).
    pub moments: Moments,
}

/// One layer of a model in the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Layer name.
    pub name: String,
    /// Weight tensor name.
    pub weight_name: String,
    /// Operator.
    pub op: String,
    /// Transposed convolution.
    pub transposed: bool,
    /// Kernel size (kh, kw).
    pub kernel: [usize; 2],
    /// Weight shape as stored.
    pub shape: [usize; 4],
    /// Output channels.
    pub out_channels: usize,
    /// Input channels per group.
    pub in_channels: usize,
    /// Groups, where known.
    pub groups: Option<usize>,
    /// Graph depth or order index.
    pub depth: usize,
    /// Rank among the convolution depths.
    pub conv_depth: Option<usize>,
    /// Normalised depth.
    pub conv_depth_norm: Option<f64>,
    /// Depth group label (`first`, `(0.2, 0.3]`, ...).
    pub depth_group: Option<String>,
    /// First filter of the layer in the model's shard of this kernel size.
    pub shard_start: u64,
    /// One past the last filter in the shard.
    pub shard_end: u64,
    /// max |w|.
    pub layer_norm: f64,
    /// Sparse filters.
    pub sparse_filters: usize,
    /// Non-sparse filters.
    pub nonsparse_filters: usize,
    /// Sparse share.
    pub sparsity: f64,
    /// Variance entropy (paper).
    #[serde(with = "nan_f64")]
    pub variance_entropy: f64,
    /// Orthogonality.
    #[serde(with = "nan_f64")]
    pub orthogonality: f64,
    /// Σ|w|.
    pub l1_norm: f64,
    /// sqrt(Σw²).
    pub l2_norm: f64,
}

/// Status of a model in the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model name (the `Name` of the meta table).
    pub name: String,
    /// File path relative to the zoo folder.
    pub file: String,
    /// Container format.
    pub format: String,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// BLAKE3 hash of the file's bytes (hex; what `b3sum FILE` prints). Empty for a record that
    /// was imported rather than built from a file.
    #[serde(default)]
    pub blake3: String,
    /// Meta-table cells of the model, in the table's column order (empty without a row).
    pub meta: Vec<(String, String)>,
    /// The checkpoint entry the model was read from (PyTorch checkpoints whose model is an
    /// entry of the file; `None` for the whole file and for formats without entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The entry asked for (the `Entry` meta cell or the build option); `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_asked: Option<String>,
    /// Forward convolution layers of any kernel size in the file.
    pub n_conv_layers: usize,
    /// Distinct convolution depths.
    pub n_conv_depths: usize,
    /// Where depth comes from.
    pub depth_source: String,
    /// Filter shards per kernel size.
    pub kernels: Vec<KernelShard>,
    /// Stored layers.
    pub layers: Vec<LayerRecord>,
    /// Entries of the file not analysed, with reasons.
    pub skipped: Vec<(String, String)>,
    /// Reader remarks.
    pub notes: Vec<String>,
}

impl ModelRecord {
    /// The meta cell of `column`, if the model has a non-empty one.
    pub fn meta(&self, column: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == column)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The shard of a kernel size.
    pub fn kernel(&self, kernel: [usize; 2]) -> Option<&KernelShard> {
        self.kernels.iter().find(|k| k.kernel == kernel)
    }
}
