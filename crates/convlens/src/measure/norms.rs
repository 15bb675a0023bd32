//! One pass over the filters: per-filter maxima for the sparsity rules and whole-layer norms.

use rayon::prelude::*;

/// Filters per parallel work item. Fixed (not derived from the thread count) so that partial
/// sums are always combined in the same order.
pub(crate) const CHUNK: usize = 4096;

/// Per-filter maxima and layer sums of one layer.
pub(crate) struct FilterStats {
    /// Per filter: largest `|x|` ignoring NaN taps (0 for an empty filter).
    pub max_abs: Vec<f32>,
    /// Per filter: whether any tap is NaN.
    pub has_nan: Vec<bool>,
    /// Sum of `|x|` over the layer.
    pub l1: f64,
    /// Sum of `x^2` over the layer.
    pub l2_sq: f64,
    /// Sum over filters of the filter's Euclidean norm.
    pub sum_filter_l2: f64,
}

impl FilterStats {
    /// numpy's `np.abs(f).max()` of filter `i` (NaN if any tap is NaN).
    pub fn linf(&self, i: usize) -> f32 {
        if self.has_nan[i] {
            f32::NAN
        } else {
            self.max_abs[i]
        }
    }
}

/// Computes [`FilterStats`] of `n` filters of `k` taps stored contiguously in `w`
/// (`w.len() >= n * k`).
pub(crate) fn filter_stats(w: &[f32], n: usize, k: usize) -> FilterStats {
    let mut max_abs = vec![0f32; n];
    let mut has_nan = vec![false; n];
    let partials: Vec<(f64, f64, f64)> = max_abs
        .par_chunks_mut(CHUNK)
        .zip(has_nan.par_chunks_mut(CHUNK))
        .enumerate()
        .map(|(c, (mx, nan))| chunk_stats(&w[c * CHUNK * k..], k, mx, nan))
        .collect();
    let (mut l1, mut l2_sq, mut sum_filter_l2) = (0f64, 0f64, 0f64);
    for (a, b, c) in partials {
        l1 += a;
        l2_sq += b;
        sum_filter_l2 += c;
    }
    FilterStats {
        max_abs,
        has_nan,
        l1,
        l2_sq,
        sum_filter_l2,
    }
}

/// Maxima of the filters of one chunk (`mx.len()` filters from the start of `w`) and the
/// chunk's partial sums `(l1, l2, sum of filter l2)`, summed in filter order.
fn chunk_stats(w: &[f32], k: usize, mx: &mut [f32], nan: &mut [bool]) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { chunk_stats_avx2(w, k, mx, nan) };
        }
    }
    chunk_stats_body(w, k, mx, nan)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_stats_avx2(
    w: &[f32],
    k: usize,
    mx: &mut [f32],
    nan: &mut [bool],
) -> (f64, f64, f64) {
    chunk_stats_body(w, k, mx, nan)
}

#[inline(always)]
fn chunk_stats_body(w: &[f32], k: usize, mx: &mut [f32], nan: &mut [bool]) -> (f64, f64, f64) {
    if k == 9 {
        // the common 3x3 kernel: a fixed length unrolls (same operations in the same order)
        filters_stats::<9>(w, 9, mx, nan)
    } else {
        filters_stats::<0>(w, k, mx, nan)
    }
}

/// The loop of [`chunk_stats`]; `K` is `k` when non-zero (a compile-time filter length).
#[inline(always)]
fn filters_stats<const K: usize>(
    w: &[f32],
    k: usize,
    mx: &mut [f32],
    nan: &mut [bool],
) -> (f64, f64, f64) {
    let k = if K > 0 { K } else { k };
    let (mut l1, mut l2, mut fl2) = (0f64, 0f64, 0f64);
    for (i, (m, h)) in mx.iter_mut().zip(nan.iter_mut()).enumerate() {
        let f = &w[i * k..(i + 1) * k];
        let (mut fm, mut fnan, mut fl1, mut fsq) = (0f32, false, 0f64, 0f64);
        for &x in f {
            let a = x.abs();
            fnan |= a.is_nan();
            fm = fm.max(a);
            fl1 += f64::from(a);
            fsq += f64::from(x) * f64::from(x);
        }
        *m = fm;
        *h = fnan;
        l1 += fl1;
        l2 += fsq;
        fl2 += fsq.sqrt();
    }
    (l1, l2, fl2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_of_a_hand_made_layer() {
        // 2 filters of 4 taps.
        let w = [3.0f32, -4.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let s = filter_stats(&w, 2, 4);
        assert_eq!(s.max_abs, vec![4.0, 1.0]);
        assert_eq!(s.has_nan, vec![false, false]);
        assert_eq!(s.l1, 8.0);
        assert_eq!(s.l2_sq, 26.0);
        assert_eq!(s.sum_filter_l2, 6.0);
    }

    #[test]
    fn nan_taps_are_flagged_and_ignored_by_the_max() {
        let w = [f32::NAN, 2.0, -1.0, 0.5];
        let s = filter_stats(&w, 2, 2);
        assert_eq!(s.max_abs, vec![2.0, 1.0]);
        assert!(s.linf(0).is_nan());
        assert_eq!(s.linf(1), 1.0);
    }
}
