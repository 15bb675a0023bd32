//! The shifted sums of one selection, and the centred scatter (for the variance entropies)
//! and the uncentred sums (for the PCA basis) derived from them.

use super::super::variance_entropy::Moments as Centred;
use crate::numeric::Moments as Uncentred;

/// Shifted first and second sums of one selection.
#[derive(Debug, Clone)]
pub(crate) struct Shifted {
    /// Selected filters.
    pub n: usize,
    /// Taps per filter.
    pub k: usize,
    /// The shift `c`.
    pub shift: Vec<f64>,
    /// `Σ(x − c)`.
    pub sum: Vec<f64>,
    /// `Σ(x − c)(x − c)ᵀ`, `k × k` row-major, exactly symmetric.
    pub scatter: Vec<f64>,
}

impl Shifted {
    /// The centred scatter matrix with exactly zero rows and columns for constant taps.
    pub fn centred(&self) -> Centred {
        let (n, k) = (self.n, self.k);
        if n == 0 {
            return Centred {
                n,
                k,
                scatter: vec![0.0; k * k],
                zero_cols: k,
            };
        }
        let nf = n as f64;
        let dev: Vec<f64> = self.sum.iter().map(|s| s / nf).collect();
        let zero: Vec<bool> = (0..k).map(|t| self.scatter[t * k + t] == 0.0).collect();
        let mut scatter = vec![0f64; k * k];
        for a in 0..k {
            for b in a..k {
                let v = if zero[a] || zero[b] {
                    0.0
                } else {
                    self.scatter[a * k + b] - self.sum[a] * dev[b]
                };
                scatter[a * k + b] = v;
                scatter[b * k + a] = v;
            }
        }
        Centred {
            n,
            k,
            scatter,
            zero_cols: zero.iter().filter(|&&z| z).count(),
        }
    }

    /// The uncentred sums `Σx`, `Σxxᵀ` (the latter exactly symmetric).
    pub fn uncentred(&self) -> Uncentred {
        let k = self.k;
        let nf = self.n as f64;
        let (c, s) = (&self.shift, &self.sum);
        let mut outer = vec![0f64; k * k];
        for a in 0..k {
            for b in a..k {
                let v = self.scatter[a * k + b] + (c[a] * s[b] + s[a] * c[b]) + nf * c[a] * c[b];
                outer[a * k + b] = v;
                outer[b * k + a] = v;
            }
        }
        Uncentred {
            dim: k,
            n: self.n as u64,
            sum: s.iter().zip(c).map(|(s, c)| s + nf * c).collect(),
            outer,
        }
    }
}
