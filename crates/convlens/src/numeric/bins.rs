//! Histograms on a fixed grid of uniform bins, with numpy's edges and index rule.

use super::np_sum;

/// float32 machine epsilon, the notebooks' fill value for empty bins.
pub const EPS_F32: f64 = f32::EPSILON as f64;

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
}
