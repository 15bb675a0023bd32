//! Streaming passes over the filter shards of a database: the coefficient range and the
//! per-model coefficient histograms. Memory is independent of the number of filters.
//!
//! The folder, in the order the data flows:
//! - `shards`: a model's shard read in chunks of whole filters, split into runs of one layer;
//! - `project`: the 3×3 projection onto the basis and the fast bin index;
//! - `kernels`: the portable 3×3 range and histogram kernels;
//! - `simd` (x86-64): the same kernels on AVX-512 and AVX2, bit-identical to the portable ones;
//! - `passes`: the two passes over the models ([`coefficient_range`], [`model_histograms`])
//!   and their result, [`ModelHists`].

mod kernels;
mod passes;
mod project;
mod shards;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
mod tests;

pub use passes::{coefficient_range, model_histograms, ModelHists};
pub(crate) use shards::for_each_filter;

/// Histogram cells: overall, then the depth groups (first, ten deciles).
pub const CELLS: usize = 12;

/// Cell labels in order.
pub fn cell_labels() -> Vec<String> {
    let mut v = vec!["overall".to_string()];
    v.extend(crate::depth::ALL_BINS.iter().map(|b| b.label()));
    v
}
