//! Streamed second moments of vectors: the sufficient statistics of a PCA basis.

use serde::{Deserialize, Serialize};

/// Streamed sufficient statistics of a set of k-dimensional vectors: count, Σx and Σxxᵀ (f64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Dimension k (e.g. 9 for 3×3 filters).
    pub dim: usize,
    /// Number of vectors.
    pub n: u64,
    /// Σx.
    pub sum: Vec<f64>,
    /// Σxxᵀ, row-major k×k.
    pub outer: Vec<f64>,
}

impl Moments {
    /// Empty statistics of dimension `dim`.
    pub fn new(dim: usize) -> Moments {
        Moments {
            dim,
            n: 0,
            sum: vec![0.0; dim],
            outer: vec![0.0; dim * dim],
        }
    }

    /// Adds one vector.
    #[inline]
    pub fn add(&mut self, x: &[f64]) {
        let k = self.dim;
        self.n += 1;
        for i in 0..k {
            self.sum[i] += x[i];
            let row = &mut self.outer[i * k..(i + 1) * k];
            let xi = x[i];
            for j in 0..k {
                row[j] += xi * x[j];
            }
        }
    }

    /// Adds another set's statistics.
    pub fn merge(&mut self, other: &Moments) {
        debug_assert_eq!(self.dim, other.dim);
        self.n += other.n;
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.outer.iter_mut().zip(&other.outer) {
            *a += b;
        }
    }

    /// The mean vector.
    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.n as f64).collect()
    }
}
