//! The PCA basis of l∞-scaled filters, fitted from streamed sufficient statistics.
//!
//! Reproduces scikit-learn's `PCA(n_components=k²)` with the `covariance_eigh` solver:
//! `C = (XᵀX − n·μμᵀ)/(n − 1)`, eigen-decomposed, eigenvalues in descending order with negatives
//! clipped to 0, and the sign convention of scikit-learn ≥ 1.5: each component's entry of
//! largest magnitude is positive (the first such entry on ties).

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

pub use crate::numeric::Moments;

/// A fitted PCA basis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    /// Number of fitted vectors.
    pub n_samples: u64,
    /// Mean vector μ.
    pub mean: Vec<f64>,
    /// Components (rows), in order of decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component (eigenvalues of the sample covariance).
    pub explained_variance: Vec<f64>,
    /// `explained_variance / Σ explained_variance`.
    pub explained_variance_ratio: Vec<f64>,
    /// `sqrt(explained_variance · (n − 1))`.
    pub singular_values: Vec<f64>,
    /// Sign convention applied.
    pub sign_convention: String,
}

/// Why a basis cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasisError {
    /// Fewer vectors than dimensions (scikit-learn refuses too).
    #[error("PCA needs at least {needed} non-sparse filters, got {got}")]
    TooFew {
        /// Needed.
        needed: u64,
        /// Available.
        got: u64,
    },
}

impl Basis {
    /// Fits all `dim` components from sufficient statistics.
    pub fn fit(m: &Moments) -> Result<Basis, BasisError> {
        let k = m.dim;
        if m.n < k as u64 || m.n < 2 {
            return Err(BasisError::TooFew {
                needed: (k as u64).max(2),
                got: m.n,
            });
        }
        let n = m.n as f64;
        let mean = m.mean();
        let mut c = DMatrix::<f64>::zeros(k, k);
        for i in 0..k {
            for j in 0..k {
                c[(i, j)] = (m.outer[i * k + j] - n * mean[i] * mean[j]) / (n - 1.0);
            }
        }
        // exact symmetry (the sums are symmetric up to rounding order)
        for i in 0..k {
            for j in 0..i {
                let v = 0.5 * (c[(i, j)] + c[(j, i)]);
                c[(i, j)] = v;
                c[(j, i)] = v;
            }
        }
        let eig = SymmetricEigen::new(c);
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| {
            eig.eigenvalues[b]
                .partial_cmp(&eig.eigenvalues[a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut components = Vec::with_capacity(k);
        let mut variance = Vec::with_capacity(k);
        for &j in &order {
            let mut v: Vec<f64> = eig.eigenvectors.column(j).iter().copied().collect();
            // sklearn >= 1.5 svd_flip(u_based_decision=False): largest |loading| positive
            let mut arg = 0;
            for (i, x) in v.iter().enumerate() {
                if x.abs() > v[arg].abs() {
                    arg = i;
                }
            }
            if v[arg] < 0.0 {
                for x in v.iter_mut() {
                    *x = -*x;
                }
            }
            components.push(v);
            variance.push(eig.eigenvalues[j].max(0.0));
        }
        let total: f64 = crate::numeric::np_sum(&variance);
        let ratio = variance.iter().map(|v| v / total).collect();
        let singular_values = variance.iter().map(|v| (v * (n - 1.0)).sqrt()).collect();
        Ok(Basis {
            n_samples: m.n,
            mean,
            components,
            explained_variance: variance,
            explained_variance_ratio: ratio,
            singular_values,
            sign_convention: "largest |loading| positive (scikit-learn >= 1.5)".to_string(),
        })
    }

    /// Dimension of the filters.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The offsets `μ·cⱼ` subtracted from projections (scikit-learn's `mean @ components.T`).
    pub fn mean_projection(&self) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| c.iter().zip(&self.mean).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// Coefficients of `x` in this basis (`x·cⱼ − μ·cⱼ`, as `PCA.transform`).
    #[inline]
    pub fn transform_into(&self, x: &[f64], mean_proj: &[f64], out: &mut [f64]) {
        for (j, c) in self.components.iter().enumerate() {
            let mut s = 0.0;
            for (a, b) in x.iter().zip(c) {
                s += a * b;
            }
            out[j] = s - mean_proj[j];
        }
    }

    /// Cumulative explained-variance ratio.
    pub fn cumulative_ratio(&self) -> Vec<f64> {
        let mut acc = 0.0;
        self.explained_variance_ratio
            .iter()
            .map(|r| {
                acc += r;
                acc
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_an_axis_aligned_cloud() {
        // points spread along x (variance 4) and y (variance 1), mean (1, 2)
        let mut m = Moments::new(2);
        for (x, y) in [(-1.0, 2.0), (3.0, 2.0), (1.0, 1.0), (1.0, 3.0)] {
            m.add(&[x, y]);
        }
        let b = Basis::fit(&m).unwrap();
        assert_eq!(b.mean, vec![1.0, 2.0]);
        assert!((b.explained_variance[0] - 8.0 / 3.0).abs() < 1e-12);
        assert!((b.explained_variance[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!((b.components[0][0] - 1.0).abs() < 1e-12);
        assert!((b.components[1][1] - 1.0).abs() < 1e-12);
        assert!((b.explained_variance_ratio[0] - 0.8).abs() < 1e-12);
        let mp = b.mean_projection();
        let mut out = [0.0; 2];
        b.transform_into(&[3.0, 2.0], &mp, &mut out);
        assert!((out[0] - 2.0).abs() < 1e-12 && out[1].abs() < 1e-12);
    }

    #[test]
    fn refuses_too_few_samples() {
        let mut m = Moments::new(9);
        m.add(&[0.0; 9]);
        assert!(matches!(Basis::fit(&m), Err(BasisError::TooFew { .. })));
    }
}
