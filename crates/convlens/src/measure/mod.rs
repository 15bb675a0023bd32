//! Stage 3 — measure: the per-layer filter-quality metrics of Gavrikov & Keuper (sparsity,
//! variance entropy, orthogonality) plus the torchconvquality 0.3.0 variants and simple weight
//! norms.
//!
//! The definitions reproduce the reference oracle (`reference.py`, functions `layer_metrics`,
//! `notebook_sparsity`, `scale`, `entropy_cond`, `ortho_cond`, `tcq_sparsity`,
//! `tcq_variance_entropy`), generalised from 3x3 kernels to any `kh x kw` kernel: a *filter* is
//! one `kh*kw` slice of the OIHW weight, so a layer has `out_channels * in_per_group` filters.
//! All arithmetic is done in `f64` on the `f32` weights; results are bit-identical between runs
//! and independent of the number of threads.
//!
//! Undefined values are `NaN` (serialised as `null` by `serde_json`):
//! * entropy of fewer than 2 filters, orthogonality of fewer than 2 out-channels;
//! * shares of an empty layer;
//! * the torchconvquality entropy when a kernel tap is structurally zero (every filter of the
//!   set has the same value there, so a variance is exactly 0 and torch computes `0 * log 0`).
//!   The oracle's LAPACK SVD only returns that exact 0 for some tap positions (reliably for the
//!   first and last tap, rarely for middle taps); convlens applies the rule to every position.

mod fused;
mod norms;
mod orthogonality;
mod sparsity;
mod variance_entropy;

pub use orthogonality::orthogonality;
pub use sparsity::{sparse_mask, tcq_sparse_mask};
pub use variance_entropy::{
    entropy_base10, entropy_max_threshold, scale_filter, variance_spectrum, MAX_SPECTRUM_TAPS,
};

use crate::numeric::Moments;
use serde::Serialize;

/// Shape of a convolution weight in OIHW order (`groups` only affects
/// [`LayerMetrics::orthogonality_per_group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct LayerShape {
    /// Number of output channels (O).
    pub out_channels: usize,
    /// Input channels seen by one output channel (I = in_channels / groups).
    pub in_per_group: usize,
    /// Kernel height (H).
    pub kh: usize,
    /// Kernel width (W).
    pub kw: usize,
    /// Number of groups of the convolution (1 for a dense conv, `out_channels` for depthwise).
    pub groups: usize,
}

impl LayerShape {
    /// Number of taps of one filter (`kh * kw`), `None` on overflow.
    pub fn kernel_len(&self) -> Option<usize> {
        self.kh.checked_mul(self.kw)
    }

    /// Number of filters (`out_channels * in_per_group`), `None` on overflow.
    pub fn n_filters(&self) -> Option<usize> {
        self.out_channels.checked_mul(self.in_per_group)
    }

    /// Number of weights (`out_channels * in_per_group * kh * kw`), `None` on overflow.
    pub fn weight_len(&self) -> Option<usize> {
        self.n_filters()?.checked_mul(self.kernel_len()?)
    }
}

/// The torchconvquality 0.3.0 metrics of one layer (numpy port in `reference.py`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcqMetrics {
    /// Number of filters.
    pub n: usize,
    /// Share of filters whose taps are all strictly below `float32(max|w| * 0.01)`.
    pub sparsity: f64,
    /// Base-10 entropy of the variance spectrum of all raw filters.
    pub variance_entropy: f64,
    /// `variance_entropy / entropy_max_threshold(n)`.
    pub variance_entropy_norm: f64,
    /// As `variance_entropy`, over the filters that are not tcq-sparse.
    pub variance_entropy_clean: f64,
    /// `variance_entropy_clean / entropy_max_threshold(n_clean)`.
    pub variance_entropy_clean_norm: f64,
    /// Same value as [`LayerMetrics::orthogonality`].
    pub orthogonality: f64,
}

/// All per-layer metrics of one convolution weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerMetrics {
    /// Number of filters (`out_channels * in_per_group`).
    pub n_filters: usize,
    /// Largest absolute weight of the layer.
    pub layer_norm: f64,
    /// Filters whose largest absolute tap is `<= layer_norm / 100` (paper rule).
    pub sparse_filters: usize,
    /// `sparse_filters / n_filters` (NaN for an empty layer).
    pub sparsity: f64,
    /// `n_filters - sparse_filters`.
    pub n_nonsparse: usize,
    /// Paper entropy: base-10 entropy of the variance spectrum of the l-inf scaled non-sparse
    /// filters (NaN below 2 such filters; NaN, like every entropy, when `kh * kw` exceeds
    /// [`MAX_SPECTRUM_TAPS`]).
    pub variance_entropy: f64,
    /// Paper orthogonality of the out-channels (rows of `in_per_group * kh * kw` raw weights).
    pub orthogonality: f64,
    /// Mean over groups of the orthogonality within each group, for grouped convolutions with at
    /// least 2 out-channels per group; `None` otherwise.
    pub orthogonality_per_group: Option<f64>,
    /// Sum of absolute weights.
    pub l1_norm: f64,
    /// Euclidean (Frobenius) norm of the whole weight.
    pub l2_norm: f64,
    /// Mean Euclidean norm of the filters (NaN for an empty layer).
    pub mean_filter_l2: f64,
    /// torchconvquality 0.3.0 variants.
    pub tcq: TcqMetrics,
    /// Count, Σx and Σxxᵀ (full `k × k`, exactly symmetric) of the l∞-scaled non-sparse
    /// filters, the filters of `variance_entropy`: the sufficient statistics of the PCA basis.
    /// As precise as summing the products directly in `f64`. `None` when `kh * kw` exceeds
    /// [`MAX_SPECTRUM_TAPS`]. Not serialised.
    #[serde(skip)]
    pub basis_moments: Option<Moments>,
}

/// Count, Σx and Σxxᵀ of the l∞-scaled non-sparse filters among `w` (`k` taps each): the
/// [`LayerMetrics::basis_moments`] of a layer holding these filters in this order, without the
/// other metrics. `None` when `k` is 0 or above [`MAX_SPECTRUM_TAPS`] or `w` is not whole
/// filters.
pub fn basis_moments(w: &[f32], k: usize) -> Option<Moments> {
    if k == 0 || k > MAX_SPECTRUM_TAPS || !w.len().is_multiple_of(k) {
        return None;
    }
    let n = w.len() / k;
    let stats = norms::filter_stats(w, n, k);
    let (_, paper_sparse) = sparsity::paper_mask(&stats);
    let tcq_sparse = sparsity::tcq_mask(&stats);
    let sums = fused::layer_sums(&fused::Layer {
        w,
        n,
        k,
        stats: &stats,
        paper_sparse: &paper_sparse,
        tcq_sparse: &tcq_sparse,
        // as `measure_layer` runs it, so that the bits are the same
        clean: tcq_sparse.iter().any(|&s| s),
    });
    sums.first().map(fused::Shifted::uncentred)
}

/// Measures one convolution layer given its OIHW `f32` weights.
///
/// # Panics
/// If `w.len()` differs from `shape.weight_len()` (a caller bug: the weights and the shape come
/// from the same tensor).
pub fn measure_layer(w: &[f32], shape: &LayerShape) -> LayerMetrics {
    let k = shape.kernel_len();
    let n = shape.n_filters();
    assert!(
        shape.weight_len() == Some(w.len()),
        "measure_layer: {} weights do not match shape {shape:?}",
        w.len()
    );
    // Both are Some after the assertion.
    let (k, n) = (k.unwrap_or(0), n.unwrap_or(0));

    let stats = norms::filter_stats(w, n, k);
    let (layer_norm, paper_sparse) = sparsity::paper_mask(&stats);
    let tcq_sparse = sparsity::tcq_mask(&stats);

    let sparse_filters = paper_sparse.iter().filter(|&&s| s).count();
    let n_nonsparse = n - sparse_filters;

    let tcq_sparse_count = tcq_sparse.iter().filter(|&&s| s).count();
    let e = if k <= MAX_SPECTRUM_TAPS {
        entropies(&fused::Layer {
            w,
            n,
            k,
            stats: &stats,
            paper_sparse: &paper_sparse,
            tcq_sparse: &tcq_sparse,
            clean: tcq_sparse_count > 0,
        })
    } else {
        let nan = f64::NAN;
        Entropies {
            paper: nan,
            tcq: (nan, nan),
            clean: (nan, nan),
            basis: None,
        }
    };
    let Entropies {
        paper: variance_entropy,
        tcq: (ve, ve_n),
        clean: (vc, vc_n),
        basis: basis_moments,
    } = e;

    let row_len = shape.in_per_group.saturating_mul(k);
    let ortho = orthogonality(w, shape.out_channels, row_len);
    let orthogonality_per_group = per_group_orthogonality(w, shape, row_len);

    let share = |count: usize| {
        if n == 0 {
            f64::NAN
        } else {
            count as f64 / n as f64
        }
    };
    LayerMetrics {
        n_filters: n,
        layer_norm,
        sparse_filters,
        sparsity: share(sparse_filters),
        n_nonsparse,
        variance_entropy,
        orthogonality: ortho,
        orthogonality_per_group,
        l1_norm: stats.l1,
        l2_norm: stats.l2_sq.sqrt(),
        mean_filter_l2: if n == 0 {
            f64::NAN
        } else {
            stats.sum_filter_l2 / n as f64
        },
        tcq: TcqMetrics {
            n,
            sparsity: share(tcq_sparse_count),
            variance_entropy: ve,
            variance_entropy_norm: ve_n,
            variance_entropy_clean: vc,
            variance_entropy_clean_norm: vc_n,
            orthogonality: ortho,
        },
        basis_moments,
    }
}

/// The variance entropies of a layer and the sums of the paper entropy's filters.
struct Entropies {
    /// Paper entropy.
    paper: f64,
    /// tcq entropy of all filters and its normalised value.
    tcq: (f64, f64),
    /// tcq entropy of the non-tcq-sparse filters and its normalised value.
    clean: (f64, f64),
    /// Uncentred sums of the l-inf scaled non-sparse filters.
    basis: Option<Moments>,
}

/// [`Entropies`] of a layer.
fn entropies(lay: &fused::Layer) -> Entropies {
    // One pass for the selections: 0 = the paper's l-inf scaled non-sparse filters; 1 =
    // torchconvquality's raw filters, all; 2 = raw, not tcq-sparse (only when some are).
    let sums = fused::layer_sums(lay);
    let variance_entropy = sums
        .first()
        .map_or(f64::NAN, |s| variance_entropy::paper_entropy(&s.centred()));
    let nan = (f64::NAN, f64::NAN);
    let (ve, ve_n) = sums
        .get(1)
        .map_or(nan, |s| variance_entropy::tcq_entropy(&s.centred()));
    let (vc, vc_n) = match sums.get(2) {
        Some(clean) => variance_entropy::tcq_entropy(&clean.centred()),
        None => (ve, ve_n),
    };
    Entropies {
        paper: variance_entropy,
        tcq: (ve, ve_n),
        clean: (vc, vc_n),
        basis: sums.first().map(fused::Shifted::uncentred),
    }
}

/// Mean of the per-group orthogonality for grouped convs with >= 2 out-channels per group.
fn per_group_orthogonality(w: &[f32], shape: &LayerShape, row_len: usize) -> Option<f64> {
    let g = shape.groups;
    if g < 2 {
        return None;
    }
    let per = shape.out_channels / g;
    if per < 2 || per * g != shape.out_channels {
        return None;
    }
    let block = per * row_len;
    let sum: f64 = (0..g)
        .map(|gi| orthogonality(&w[gi * block..(gi + 1) * block], per, row_len))
        .sum();
    Some(sum / g as f64)
}
