//! First-layer (stem) perturbation analysis: does the first convolution, with the ReLU after
//! it, remove an input perturbation?
//!
//! Gavrikov & Keuper observe that the first layer of adversarially robust models holds many
//! nearly identical filters whose weight sits in the centre tap (≈ 1×1 convolutions) and that,
//! with its ReLU, this layer removes much of an adversarial perturbation. This module measures
//! that for any model, without a deep-learning runtime:
//!
//! - [`StemModel::load`] finds the first layer of a checkpoint (the plain `Conv` reading the
//!   graph input for ONNX, see [`StemModel::from_checkpoint`] for files without a graph), folds
//!   the BatchNorm that follows it and records what was done in [`StemInfo`];
//! - [`StemModel::forward`] runs conv + ReLU; [`StemModel::perturbation`] measures, per filter
//!   and in total, how much a perturbation changes the activation before and after the ReLU;
//! - [`StemModel::filter_shapes`] measures the filters themselves (centre-tap share, pairwise
//!   cosine similarity, near-duplicates);
//! - [`StemModel::worst_case_gain`] finds the L∞-bounded perturbation that changes the stem's
//!   output most (projected gradient ascent on the stem alone);
//! - [`analyse`] and [`analyse_zoo`] put it together per model and per zoo, with the data of the
//!   figure (filter, clean activation, perturbed activation, difference) and a robust-vs-normal
//!   summary ([`zoo_summary`]).
//!
//! All sums are accumulated in `f64` in a fixed order: results do not depend on the number of
//! threads.
//!
//! The files of this folder, one concept each: `load.rs` reads a model and picks its first
//! layer, `batch_norm.rs` finds the BatchNorm after it, `setup.rs` sets the stem up with that
//! BatchNorm folded in; `images.rs` holds the images and their normalisation; `forward.rs` the
//! convolution, the forward pass, the perturbation sums and the filter shapes; `worst_case.rs`
//! the projected-gradient search; `analysis.rs` the per-model and per-zoo rows; `figure.rs` the
//! figure's data.

mod analysis;
mod batch_norm;
mod figure;
mod forward;
mod images;
mod load;
mod setup;
mod worst_case;

pub use analysis::{
    analyse, analyse_zoo, zoo_summary, AnalysisOptions, FilterRow, GroupMeans, ModelRow,
    StemReport, ZooEntry, ZooSummary,
};
pub use figure::{figure, FigureColumn, StemFigure};
pub use forward::{Activations, Change, FilterShape, Perturbation};
pub use images::{choose_normalization, image_array, Batch, ImageSet, Normalization};
pub use load::{BnChoice, LoadOptions};
pub use worst_case::{PgdOptions, WorstCase};

use crate::read::ReadError;
use serde::Serialize;
use std::path::PathBuf;

/// Largest kernel side of a stem.
pub const MAX_KERNEL: usize = 64;
/// Largest stride.
pub const MAX_STRIDE: usize = 64;
/// Largest dilation.
pub const MAX_DILATION: usize = 64;
/// Largest padding on one side.
pub const MAX_PAD: usize = 1024;
/// Largest number of input channels of a stem (and of images).
pub const MAX_IN_CHANNELS: usize = 4096;
/// Largest number of output channels of a stem.
pub const MAX_OUT_CHANNELS: usize = 1 << 16;
/// Largest image side.
pub const MAX_IMAGE_SIDE: usize = 1 << 14;
/// Largest number of activation values one call produces (images × channels × positions).
pub const MAX_ACTIVATIONS: usize = 1 << 27;
/// Largest number of projected-gradient steps.
pub const MAX_STEPS: usize = 100_000;
/// BatchNorm epsilon assumed when the file does not say (PyTorch's default).
pub const DEFAULT_BN_EPS: f64 = 1e-5;

/// Why a stem could not be analysed. Messages say what is wrong; the caller adds the file.
#[derive(Debug, thiserror::Error)]
pub enum StemError {
    /// The model file could not be read (the message names it).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file could not be opened.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The checkpoint holds no convolution weight at all.
    #[error("no convolution layer found ({0})")]
    NoConv(String),
    /// The first layer of the model is not a plain convolution.
    #[error("the first layer is not a plain convolution: {0}")]
    NotPlainConv(String),
    /// The first convolution cannot be analysed (shape, attributes, weights).
    #[error("unsupported first layer {layer:?}: {reason}")]
    Unsupported {
        /// Layer name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// The requested BatchNorm cannot be used.
    #[error("batch norm {name:?}: {reason}")]
    BatchNorm {
        /// Name prefix of the BatchNorm.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Images, perturbations or normalisation are unusable.
    #[error("images: {0}")]
    Images(String),
    /// An analysis option is out of range.
    #[error("invalid option: {0}")]
    Options(String),
}

fn unsupported(layer: &str, reason: impl Into<String>) -> StemError {
    StemError::Unsupported {
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

fn images_err(msg: impl Into<String>) -> StemError {
    StemError::Images(msg.into())
}

/// What was used as the stem and how it was set up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemInfo {
    /// Layer name (node name, or the weight name without `.weight`).
    pub layer: String,
    /// Name of the weight tensor.
    pub weight_name: String,
    /// Output channels (filters).
    pub out_channels: usize,
    /// Input channels of the layer (image channels).
    pub in_channels: usize,
    /// Groups.
    pub groups: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Zero padding (top, left, bottom, right).
    pub pads: [usize; 4],
    /// Dilation (vertical, horizontal).
    pub dilation: [usize; 2],
    /// Where stride and padding come from (graph attributes, options, or assumed).
    pub geometry: String,
    /// True when the layer has its own bias.
    pub has_bias: bool,
    /// The BatchNorm folded into the weights and bias, if any.
    pub batch_norm: Option<String>,
    /// How the BatchNorm was found, or why none was folded.
    pub batch_norm_rule: String,
    /// Operator(s) applied to the stem's output in the graph (after the folded BatchNorm), when
    /// the file has a graph.
    pub followed_by: Option<String>,
    /// Remarks (assumptions, other consumers of the input, ...).
    pub notes: Vec<String>,
}

/// The first convolution of a model, with any BatchNorm folded in, ready to run.
#[derive(Debug, Clone)]
pub struct StemModel {
    /// Model name (file name without format suffixes).
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// What was used and how.
    pub info: StemInfo,
    /// Effective weights (BatchNorm folded), OIHW (out, in/groups, kh, kw), C-contiguous.
    weight: Vec<f64>,
    /// Effective bias per output channel.
    bias: Vec<f64>,
}

impl StemModel {
    /// Effective weights (BatchNorm folded), OIHW, C-contiguous.
    pub fn weights(&self) -> &[f64] {
        &self.weight
    }

    /// Effective bias per output channel.
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }
}
