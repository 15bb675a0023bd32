//! The "distribution shift" between two groups of filters: symmetric Kullback–Leibler
//! divergence of the coefficient histograms, weighted by explained variance.
//!
//! Everything reproduces the numerics of the authors' notebook (numpy / scipy) exactly:
//! `np.histogram(x, bins, range, density=True)` with numpy's uniform-bin index rule, empty bins
//! filled with float32 epsilon (in density units) and renormalised, `scipy.stats.entropy` in
//! both directions, and numpy's pairwise summation where the notebook sums arrays.

/// Number of histogram bins used by the authors.
pub const BINS: usize = 70;

pub use crate::numeric::{np_sum, Bins, EPS_F32};

/// `scipy.stats.entropy(p, q)`: Kullback–Leibler divergence in nats after normalising both.
pub fn kl(p: &[f64], q: &[f64]) -> f64 {
    let sp = np_sum(p);
    let sq = np_sum(q);
    let terms: Vec<f64> = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (x, y) = (a / sp, b / sq);
            if x > 0.0 && y > 0.0 {
                x * (x / y).ln()
            } else if x == 0.0 && y >= 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .collect();
    np_sum(&terms)
}

/// Symmetric KL: `KL(p‖q) + KL(q‖p)`.
pub fn kl_sym(p: &[f64], q: &[f64]) -> f64 {
    kl(p, q) + kl(q, p)
}

/// Variance-weighted symmetric KL over components: returns (Σ wᵢ·KLᵢ, per-component KLᵢ).
pub fn weighted_kl_sym(p: &[Vec<f64>], q: &[Vec<f64>], weights: &[f64]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = p.iter().zip(q).map(|(a, b)| kl_sym(a, b)).collect();
    let weighted: Vec<f64> = per.iter().zip(weights).map(|(k, w)| w * k).collect();
    (np_sum(&weighted), per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_matches_hand_values() {
        let p = [0.5, 0.5];
        let q = [0.25, 0.75];
        let want = 0.5 * (0.5f64 / 0.25).ln() + 0.5 * (0.5f64 / 0.75).ln();
        assert!((kl(&p, &q) - want).abs() < 1e-15);
        assert_eq!(kl(&p, &p), 0.0);
        assert_eq!(kl(&[1.0, 0.0], &[0.0, 1.0]), f64::INFINITY);
        let (w, per) = weighted_kl_sym(&[p.to_vec()], &[q.to_vec()], &[0.5]);
        assert!((w - 0.5 * per[0]).abs() < 1e-15);
    }
}
