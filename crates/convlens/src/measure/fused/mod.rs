//! One pass over a layer's filters for the three filter sets of the variance entropies: the
//! paper's l∞-scaled non-sparse filters (selection 0), torchconvquality's raw filters (1) and
//! its raw non-sparse filters (2).
//!
//! Per selection the pass accumulates, in `f64`, the *shifted* sums `Σ(x − c)` and
//! `Σ(x − c)(x − c)ᵀ` around a fixed shift vector `c`; the centred scatter is then
//! `S_c − n·(m − c)(m − c)ᵀ` with `m − c = Σ(x − c)/n`, and the uncentred sums of selection 0
//! (the PCA basis statistics) are `Σx = Σ(x − c) + n·c`,
//! `Σxxᵀ = S_c + c·Σ(x − c)ᵀ + Σ(x − c)·cᵀ + n·ccᵀ`. The rounding of these few terms is of the
//! order of that of summing the products directly: on the fixture models the result is within
//! 2e-14 of `sqrt(Σx_a² Σx_b²)` of the db build's direct sums; element by element (entries that
//! cancel included) within 1.7e-12 relative of exact sums, the direct sums within 2.6e-12.
//!
//! **Shift.** `c[t]` is the lower median of tap `t` over the first (at most [`SHIFT_ROWS`])
//! selected filters, so it is close to the mean (the cancellation in `S_c − n(m−c)(m−c)ᵀ` costs
//! about `|m − c|² / σ²` ulps, small even for a large common offset) *and* it is one of the
//! selected values of its column. Hence a column is constant over the selection iff every
//! `x[t] − c[t]` is exactly 0 iff the shifted diagonal `S_c[t][t]` is exactly 0 (squares of
//! differences of these values never underflow to 0). For the raw selections (1 and 2, the
//! only ones whose zero columns are used: torchconvquality's rules) such a column is what the
//! oracle sees as an exactly zero centred column: for `f32` values, `n` equal values sum exactly in `f64`
//! (`n < 2^29`), so numpy's mean is that value. Its scatter row and column are set to 0 and it
//! is counted in `zero_cols`. Selections 1 and 2 share one shift (taken from selection 2's
//! filters, a subset of selection 1's) and one product per pair of taps.
//!
//! **Scaling.** A scaled tap is `x / den` (`den` = the filter's l∞ norm; 1 for a zero filter,
//! NaN with a NaN tap), computed as `q = x·r`, `r = 1/den`, corrected once with fused
//! multiply-adds (`q + r·(x − q·den)`, Markstein): the correctly rounded quotient, i.e. the
//! value [`super::scale_filter`] writes (up to the sign of a zero, which no sum sees), without
//! a division per tap.
//!
//! **Order.** Filters are split into fixed chunks processed in parallel and summed in chunk
//! order, so results are bit-identical for any number of threads. 3×3 filters go through a
//! vector kernel (8 filters per lane group: AVX-512, AVX2 or portable code, all with the same
//! per-lane operations, so the same bits); other kernel sizes through a scalar loop.

mod dispatch;
mod kernel9;
mod lane;
mod shifted;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use shifted::Shifted;

use super::norms::FilterStats;
use dispatch::{run_chunks, Level};

/// Filters per parallel work item of the 3×3 kernel (a multiple of [`BLOCK`]). Fixed, so that
/// partial sums are always combined in the same order.
const CHUNK9: usize = 2048;

/// 3×3 chunks summed in parallel at a time (their partial sums, 270 values each, are then
/// added in chunk order: the grouping does not change the result).
const CHUNK9_GROUP: usize = 256;

/// Filters transposed at once by the 3×3 kernel: 8 lane groups of 8.
const BLOCK: usize = 64;

/// Number of leading selected filters whose per-tap median is the shift.
const SHIFT_ROWS: usize = 256;

/// Largest number of partial-sum values (over all chunks of a group) held at once by the
/// generic kernel; bounds memory for long filters.
const GROUP_VALUES: usize = 1 << 21;

/// A layer's filters with what the selections need (all slices hold `n` entries, `w` holds
/// `n * k` values).
pub(crate) struct Layer<'a> {
    /// The filters, `k` taps each.
    pub w: &'a [f32],
    /// Number of filters.
    pub n: usize,
    /// Taps per filter.
    pub k: usize,
    /// Per-filter maxima (l∞ norms).
    pub stats: &'a FilterStats,
    /// Paper sparsity per filter (selection 0 is the complement).
    pub paper_sparse: &'a [bool],
    /// torchconvquality sparsity per filter (selection 2 is the complement).
    pub tcq_sparse: &'a [bool],
    /// Whether selection 2 is computed (otherwise it equals selection 1).
    pub clean: bool,
}

/// The l∞ divisor of a filter as pca.ipynb `scale()` uses it: NaN with a NaN tap, 1 for a zero
/// filter.
#[inline(always)]
fn divisor(max_abs: f32, has_nan: bool) -> f64 {
    if has_nan {
        f64::NAN
    } else if max_abs == 0.0 {
        1.0
    } else {
        f64::from(max_abs)
    }
}

/// `x / den` given `r = 1 / den` (see the module documentation).
#[inline(always)]
fn scaled(x: f64, den: f64, r: f64) -> f64 {
    let q = x * r;
    let e = (-q).mul_add(den, x);
    e.mul_add(r, q)
}

/// Lower median of `v` (total order), 0 when empty.
fn lower_median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// Per-tap lower medians of the first [`SHIFT_ROWS`] filters among `rows` (as `value` sees
/// tap `t` of filter `i`).
fn shift_of(
    k: usize,
    rows: impl Iterator<Item = usize>,
    value: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let picked: Vec<usize> = rows.take(SHIFT_ROWS).collect();
    let mut col = Vec::with_capacity(picked.len());
    (0..k)
        .map(|t| {
            col.clear();
            col.extend(picked.iter().map(|&i| value(i, t)));
            lower_median(&mut col)
        })
        .collect()
}

/// Shifted sums of the selections of `lay`: selections 0 and 1, and 2 when `lay.clean`.
pub(crate) fn layer_sums(lay: &Layer) -> Vec<Shifted> {
    let (k, n) = (lay.k, lay.n);
    let stats = lay.stats;
    let den = |i: usize| divisor(stats.max_abs[i], stats.has_nan[i]);
    let c0 = shift_of(k, (0..n).filter(|&i| !lay.paper_sparse[i]), |i, t| {
        let d = den(i);
        scaled(f64::from(lay.w[i * k + t]), d, 1.0 / d)
    });
    let n0 = lay.paper_sparse.iter().filter(|&&s| !s).count();
    let n2 = lay.tcq_sparse.iter().filter(|&&s| !s).count();
    let raw = |i: usize, t: usize| f64::from(lay.w[i * k + t]);
    let c1 = if lay.clean && n2 > 0 {
        shift_of(k, (0..n).filter(|&i| !lay.tcq_sparse[i]), raw)
    } else {
        shift_of(k, 0..n, raw)
    };
    let sels = if lay.clean { 3 } else { 2 };
    let level = Level::detect();
    let total = if k == 9 {
        let c0: [f64; 9] = std::array::from_fn(|t| c0[t]);
        let c1: [f64; 9] = std::array::from_fn(|t| c1[t]);
        run_chunks(n, CHUNK9, CHUNK9_GROUP, sels, 9, |rows| {
            level.chunk9(lay, &c0, &c1, rows)
        })
    } else {
        let kk = k.max(1);
        let rows = (CHUNK9 * 9 / kk).max(64);
        let group = (GROUP_VALUES / (sels * (k * k + k)).max(1)).max(1);
        run_chunks(n, rows, group, sels, k, |rows| {
            level.chunk_generic(lay, &c0, &c1, rows)
        })
    };
    let counts = [n0, n, n2];
    let shifts = [c0, c1.clone(), c1];
    (0..sels)
        .map(|s| {
            let mut scatter = total.s[s * k * k..(s + 1) * k * k].to_vec();
            for a in 0..k {
                for b in 0..a {
                    scatter[a * k + b] = scatter[b * k + a];
                }
            }
            Shifted {
                n: counts[s],
                k,
                shift: shifts[s].clone(),
                sum: total.t[s * k..(s + 1) * k].to_vec(),
                scatter,
            }
        })
        .collect()
}
