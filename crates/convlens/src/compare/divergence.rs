//! The "distribution shift" between two groups of filters: symmetric Kullback–Leibler
//! divergence of the coefficient histograms, weighted by explained variance.
//!
//! Everything reproduces the numerics of the authors' notebook (numpy / scipy) exactly:
//! `np.histogram(x, bins, range, density=True)` with numpy's uniform-bin index rule, empty bins
//! filled with float32 epsilon (in density units) and renormalised, `scipy.stats.entropy` in
//! both directions, and numpy's pairwise summation where the notebook sums arrays.

/// Number of histogram bins used by the authors.
pub const BINS: usize = 70;

/// float32 machine epsilon, the notebook's fill value for empty bins.
pub const EPS_F32: f64 = f32::EPSILON as f64;

/// Summation in numpy's order (`np.sum` of a contiguous float64 array: pairwise with 8
/// accumulators), so that sums agree bit for bit with the notebooks.
pub fn np_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut s = 0.0;
        for &x in a {
            s += x;
        }
        s
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// Uniform histogram bins over `[lo, hi]` with numpy's edges (`np.linspace`) and index rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    lo: f64,
    hi: f64,
    edges: Vec<f64>,
}

impl Bins {
    /// `n` equal bins over `[lo, hi]` (numpy widens an empty range to `[lo − 0.5, hi + 0.5]`).
    pub fn new(lo: f64, hi: f64, n: usize) -> Bins {
        let n = n.max(1);
        let (lo, hi) = if lo == hi {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        let step = (hi - lo) / n as f64;
        let mut edges: Vec<f64> = (0..=n)
            .map(|i| {
                if step == 0.0 {
                    (i as f64 / n as f64) * (hi - lo) + lo
                } else {
                    i as f64 * step + lo
                }
            })
            .collect();
        edges[n] = hi;
        Bins { lo, hi, edges }
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.edges.len() - 1
    }

    /// Always false (a histogram has at least one bin).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `len() + 1` bin edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The bin of `x`, `None` outside `[lo, hi]` (the last bin is closed).
    #[inline]
    pub fn index(&self, x: f64) -> Option<usize> {
        if !(x >= self.lo && x <= self.hi) {
            return None;
        }
        let n = self.len();
        let f = ((x - self.lo) / (self.hi - self.lo)) * n as f64;
        let mut i = f as usize;
        if i >= n {
            i = n - 1;
        }
        if x < self.edges[i] {
            i = i.saturating_sub(1);
        } else if i != n - 1 && x >= self.edges[i + 1] {
            i += 1;
        }
        Some(i)
    }

    /// `np.histogram(..., density=True)` of the counted values: counts / bin width / total.
    pub fn density(&self, counts: &[u64]) -> Vec<f64> {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(self.edges.windows(2))
            .map(|(&c, e)| c as f64 / (e[1] - e[0]) / total as f64)
            .collect()
    }

    /// The notebook's discrete distribution: density, zero bins set to float32 epsilon, then
    /// normalised to sum 1. `None` when nothing was counted.
    pub fn probabilities(&self, counts: &[u64]) -> Option<Vec<f64>> {
        if counts.iter().all(|&c| c == 0) {
            return None;
        }
        let mut v = self.density(counts);
        for x in v.iter_mut() {
            if *x == 0.0 {
                *x = EPS_F32;
            }
        }
        let s = np_sum(&v);
        Some(v.into_iter().map(|x| x / s).collect())
    }
}

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
    fn edges_and_indices_follow_numpy() {
        let b = Bins::new(-1.0, 2.0, 3);
        assert_eq!(b.edges(), &[-1.0, 0.0, 1.0, 2.0]);
        assert_eq!(b.index(-1.0), Some(0));
        assert_eq!(b.index(0.0), Some(1));
        assert_eq!(b.index(1.999), Some(2));
        assert_eq!(b.index(2.0), Some(2)); // last bin closed
        assert_eq!(b.index(2.0000001), None);
        assert_eq!(b.index(f64::NAN), None);
        // np.histogram([0.1, 0.2, 0.3], bins=10, range=(0, 1)) puts 0.3 in bin 2 (edge 0.30000000000000004)
        let b = Bins::new(0.0, 1.0, 10);
        assert_eq!(b.index(0.3), Some(2));
        assert_eq!(b.index(0.1), Some(1));
    }

    #[test]
    fn probabilities_fill_empty_bins_with_eps() {
        let b = Bins::new(0.0, 2.0, 2);
        let p = b.probabilities(&[4, 0]).unwrap();
        // density [4/1/4, 0] = [1, 0] -> [1, eps] -> normalised
        assert_eq!(b.density(&[4, 0]), vec![1.0, 0.0]);
        assert_eq!(p[0], 1.0 / (1.0 + EPS_F32));
        assert_eq!(p[1], EPS_F32 / (1.0 + EPS_F32));
        assert!(b.probabilities(&[0, 0]).is_none());
    }

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

    #[test]
    fn pairwise_sum_matches_numpy_order() {
        // 1e16 + 1 + 1 ... : numpy's 8-accumulator order differs from a left fold
        let mut a = vec![1.0f64; 17];
        a[0] = 1e16;
        let np = np_sum(&a);
        // r0 = 1e16 + 1 (lost) + ..., numpy: ((r0+r1)+(r2+r3))+... with r0 = 1e16+1 = 1e16, others 2
        let expected = ((1e16 + 2.0) + (2.0 + 2.0)) + ((2.0 + 2.0) + (2.0 + 2.0)) + 1.0;
        assert_eq!(np, expected);
    }
}
