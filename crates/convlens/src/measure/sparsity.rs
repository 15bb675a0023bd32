//! Sparse-filter rules: the paper's (sparsity.ipynb) and torchconvquality's.

use std::cmp::Ordering;

use super::norms::{filter_stats, FilterStats};

/// Number of whole filters of `k` taps in `filters` (0 when `k == 0`).
fn whole_filters(filters: &[f32], k: usize) -> usize {
    filters.len().checked_div(k).unwrap_or(0)
}

/// Paper sparsity rule: returns the layer norm `max|w|` and, per filter of `k` taps, whether it
/// is sparse (`max|f| <= layer_norm / 100`, in `f64`). A trailing partial filter is ignored;
/// NaN weights make the layer norm NaN and no filter sparse (numpy semantics).
pub fn sparse_mask(filters: &[f32], k: usize) -> (f64, Vec<bool>) {
    let n = whole_filters(filters, k);
    paper_mask(&filter_stats(filters, n, k))
}

/// torchconvquality rule: per filter of `k` taps, whether every tap satisfies
/// `|x| < float32(max|w| * 0.01)` (threshold 1 when `max|w| * 0.01 == 0`), compared in `f32`.
/// A trailing partial filter is ignored.
pub fn tcq_sparse_mask(filters: &[f32], k: usize) -> Vec<bool> {
    let n = whole_filters(filters, k);
    tcq_mask(&filter_stats(filters, n, k))
}

/// numpy `np.abs(w).max()` over the layer: NaN if any tap is NaN, 0 for an empty layer.
fn layer_max(s: &FilterStats) -> f32 {
    if s.has_nan.iter().any(|&h| h) {
        return f32::NAN;
    }
    s.max_abs.iter().fold(0f32, |a, &b| a.max(b))
}

pub(crate) fn paper_mask(s: &FilterStats) -> (f64, Vec<bool>) {
    let layer_norm = f64::from(layer_max(s));
    let limit = layer_norm / 100.0;
    let mask = (0..s.max_abs.len())
        .map(|i| f64::from(s.linf(i)) <= limit)
        .collect();
    (layer_norm, mask)
}

pub(crate) fn tcq_mask(s: &FilterStats) -> Vec<bool> {
    // reference.py: t = float(np.abs(w32).max()) * 0.01; t == 0 -> 1; float32(t).
    let mut t = f64::from(layer_max(s)) * 0.01;
    if t == 0.0 {
        t = 1.0;
    }
    let thr = t as f32;
    // sparse iff no tap satisfies |x| >= thr; NaN taps never satisfy it.
    s.max_abs
        .iter()
        .map(|&m| {
            !matches!(
                m.partial_cmp(&thr),
                Some(Ordering::Greater | Ordering::Equal)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tie_is_sparse_for_the_paper_but_not_for_tcq() {
        // layer max 100 -> paper limit 100/100 = 1.0, tcq threshold float32(100 * 0.01) = 1.0:
        // the filter with max 1.0 ties (sparse for `<=`, not for the strict `<`).
        let w = [100.0f32, 0.0, 1.0, -1.0, 0.5, 0.0];
        let (norm, paper) = sparse_mask(&w, 2);
        assert_eq!(norm, 100.0);
        assert_eq!(paper, vec![false, true, true]);
        assert_eq!(tcq_sparse_mask(&w, 2), vec![false, false, true]);
    }

    #[test]
    fn all_zero_layer() {
        let w = [0.0f32; 6];
        // paper: 0 <= 0 -> all sparse; tcq: t == 0 -> 1, 0 < 1 -> all sparse.
        assert_eq!(sparse_mask(&w, 3), (0.0, vec![true, true]));
        assert_eq!(tcq_sparse_mask(&w, 3), vec![true, true]);
    }

    #[test]
    fn nan_weights_follow_numpy() {
        let w = [f32::NAN, 0.0, 5.0, 1.0];
        let (norm, paper) = sparse_mask(&w, 2);
        assert!(norm.is_nan());
        assert_eq!(paper, vec![false, false]);
        // threshold NaN: no comparison is true -> every filter is tcq-sparse.
        assert_eq!(tcq_sparse_mask(&w, 2), vec![true, true]);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(sparse_mask(&[1.0, 2.0], 0), (0.0, vec![]));
        assert_eq!(tcq_sparse_mask(&[], 9), Vec::<bool>::new());
        // trailing partial filter ignored
        assert_eq!(sparse_mask(&[1.0, 2.0, 3.0], 2).1, vec![false]);
    }
}
