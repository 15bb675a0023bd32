//! l-inf scaling, variance spectra and their entropies (pca.ipynb `entropy_cond`, torchconvquality
//! `variance_entropy`).
//!
//! The oracle takes the singular values `s` of the centred filter matrix and uses
//! `v = s^2 / (n - 1)`; these are the eigenvalues of the sample covariance, computed here from a
//! `k x k` scatter matrix accumulated in `f64`. The column means are summed row by row in the
//! same order as numpy's `X.mean(axis=0)`, so the centred values are bit-identical to the
//! oracle's and a structurally zero tap (an exactly zero centred column) is detected exactly.

use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;

use super::norms::CHUNK;

/// Largest filter length (`kh * kw`) whose variance spectrum is computed (32x32 kernels); the
/// scatter matrix and eigen-decomposition grow as `k^2` and `k^3`.
pub const MAX_SPECTRUM_TAPS: usize = 1024;

/// Chunks of 9-tap filters per parallel group (scaled down for longer filters).
const GROUP: usize = 64;

/// Iteration cap of the symmetric eigen-solver (it converges in a few dozen sweeps; the cap
/// only guards against non-finite input).
const EIGEN_MAX_ITER: usize = 100_000;

/// Writes `f / max|f|` into `out` (a zero filter stays zero; NaN taps give NaN), as pca.ipynb
/// `scale()`. Only the first `min(f.len(), out.len())` values are written.
pub fn scale_filter(f: &[f32], out: &mut [f64]) {
    let mut den = 0f32;
    let mut nan = false;
    for &x in f {
        let a = x.abs();
        nan |= a.is_nan();
        den = den.max(a);
    }
    let den = if nan {
        f64::NAN
    } else if den == 0.0 {
        1.0
    } else {
        f64::from(den)
    };
    for (o, &x) in out.iter_mut().zip(f) {
        *o = f64::from(x) / den;
    }
}

/// Second moments of a selection of rows.
pub(crate) struct Moments {
    /// Number of selected rows.
    pub n: usize,
    /// Row length.
    pub k: usize,
    /// `k x k` row-major scatter matrix of the centred rows (exactly symmetric).
    pub scatter: Vec<f64>,
    /// Number of columns whose centred values are all exactly zero (k when `n == 0`).
    pub zero_cols: usize,
}

/// Accumulates the scatter matrix of the rows selected by `row` among `n_rows`.
///
/// `row(i, buf)` writes row `i` (length `k`) into `buf` and returns whether it is selected.
/// Pass 1 (the mean) is sequential in row order, like numpy's axis-0 reduction; pass 2 (the
/// scatter) runs on fixed chunks in parallel, combined in chunk order.
pub(crate) fn moments<F>(n_rows: usize, k: usize, row: F) -> Moments
where
    F: Fn(usize, &mut [f64]) -> bool + Sync,
{
    let mut sum = vec![0f64; k];
    let mut buf = vec![0f64; k];
    let mut n = 0usize;
    for i in 0..n_rows {
        if row(i, &mut buf) {
            n += 1;
            for (s, x) in sum.iter_mut().zip(&buf) {
                *s += x;
            }
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();

    // Rows per chunk: about CHUNK 9-tap filters' worth of values. Chunks are processed in
    // groups whose partial scatters (group * k * k values) are added in chunk order.
    let rows_per_chunk = (CHUNK * 9 / k.max(1)).max(1);
    let group = (GROUP * 81 / (k * k).max(1)).max(1);
    let n_chunks = n_rows.div_ceil(rows_per_chunk);
    let mut scatter = vec![0f64; k * k];
    let mut nonzero = vec![false; k];
    for g0 in (0..n_chunks).step_by(group) {
        let parts: Vec<(Vec<f64>, Vec<bool>)> = (g0..n_chunks.min(g0 + group))
            .into_par_iter()
            .map(|c| {
                let rows = c * rows_per_chunk..n_rows.min((c + 1) * rows_per_chunk);
                chunk_scatter(rows, rows_per_chunk, k, &mean, &row)
            })
            .collect();
        for (s, nz) in parts {
            for (a, b) in scatter.iter_mut().zip(&s) {
                *a += b;
            }
            for (a, b) in nonzero.iter_mut().zip(&nz) {
                *a |= b;
            }
        }
    }
    Moments {
        n,
        k,
        scatter,
        zero_cols: nonzero.iter().filter(|&&nz| !nz).count(),
    }
}

/// Scatter matrix (`k x k`) of the centred selected rows in `rows`, and per column whether any
/// centred value is non-zero.
fn chunk_scatter<F>(
    rows: std::ops::Range<usize>,
    cap: usize,
    k: usize,
    mean: &[f64],
    row: &F,
) -> (Vec<f64>, Vec<bool>)
where
    F: Fn(usize, &mut [f64]) -> bool,
{
    // centred selected rows, stored column by column
    let mut cols = vec![0f64; k * cap];
    let mut buf = vec![0f64; k];
    let mut r = 0usize;
    for i in rows {
        if !row(i, &mut buf) {
            continue;
        }
        for (a, (b, m)) in buf.iter().zip(mean).enumerate() {
            cols[a * cap + r] = b - m;
        }
        r += 1;
    }
    let col = |a: usize| &cols[a * cap..a * cap + r];
    let nonzero = (0..k).map(|a| col(a).iter().any(|&x| x != 0.0)).collect();
    let mut s = vec![0f64; k * k];
    for a in 0..k {
        for b in a..k {
            let d = dot(col(a), col(b));
            s[a * k + b] = d;
            s[b * k + a] = d;
        }
    }
    (s, nonzero)
}

/// Dot product with 8 interleaved partial sums (vectorisable, fixed summation order).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (xc, xr) = x.split_at(x.len() - x.len() % 8);
    let yc = &y[..xc.len()];
    for (xs, ys) in xc.chunks_exact(8).zip(yc.chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += xs[j] * ys[j];
        }
    }
    let mut tail = 0f64;
    for (a, b) in xr.iter().zip(&y[xc.len()..]) {
        tail += a * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Descending eigenvalues of the sample covariance `scatter / (n - 1)`, negatives clipped to 0;
/// `k` NaNs when `n < 2` or the matrix is not finite.
fn spectrum(m: &Moments) -> Vec<f64> {
    let k = m.k;
    if m.n < 2 || m.scatter.iter().any(|v| !v.is_finite()) {
        return vec![f64::NAN; k];
    }
    if k == 0 {
        return Vec::new();
    }
    let denom = (m.n - 1) as f64;
    let cov = DMatrix::from_fn(k, k, |r, c| m.scatter[r * k + c] / denom);
    let Some(eig) = SymmetricEigen::try_new(cov, f64::EPSILON, EIGEN_MAX_ITER) else {
        return vec![f64::NAN; k];
    };
    let mut v: Vec<f64> = eig
        .eigenvalues
        .iter()
        .map(|&x| if x > 0.0 { x } else { 0.0 })
        .collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

/// Descending eigenvalues of the sample covariance (denominator `n - 1`) of `n = rows.len() / k`
/// rows of length `k` (row-major), negatives clipped to 0: the PCA variance spectrum. Returns `k`
/// NaNs when there are fewer than 2 rows, and nothing when `k > MAX_SPECTRUM_TAPS`; a trailing
/// partial row is ignored.
pub fn variance_spectrum(rows: &[f64], k: usize) -> Vec<f64> {
    if k > MAX_SPECTRUM_TAPS {
        return Vec::new();
    }
    let n = rows.len().checked_div(k).unwrap_or(0);
    let m = moments(n, k, |i, buf| {
        buf.copy_from_slice(&rows[i * k..(i + 1) * k]);
        true
    });
    spectrum(&m)
}

/// `scipy.special.entr`: `-x ln x` for `x > 0`, 0 at 0, `-inf` below 0, NaN for NaN.
fn entr(x: f64) -> f64 {
    if x > 0.0 {
        -x * x.ln()
    } else if x == 0.0 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        f64::NEG_INFINITY
    }
}

/// Base-10 Shannon entropy of a spectrum normalised to sum 1, with the semantics of
/// `scipy.stats.entropy(v, base=10)`: zero entries contribute 0, an all-zero spectrum gives NaN,
/// an empty one 0.
pub fn entropy_base10(spectrum: &[f64]) -> f64 {
    let sum: f64 = spectrum.iter().sum();
    let s: f64 = spectrum.iter().map(|&v| entr(v / sum)).sum();
    s / std::f64::consts::LN_10
}

/// torchconvquality's `_entropy_max_threshold(n)`: a logistic fit in `log2 n` of the entropy of
/// random filters, used as the divisor of the `_norm` entropies (negative for `n <= 2`).
pub fn entropy_max_threshold(n: usize) -> f64 {
    let (l, x0, k, b) = (1.2618047, 2.30436435, 0.88767525, -0.31050834);
    l / (1.0 + (-k * ((n as f64).log2() - x0)).exp()) + b
}

/// Paper entropy (`entropy_cond`) of the selected rows: NaN below 2 rows.
pub(crate) fn paper_entropy(m: &Moments) -> f64 {
    if m.n < 2 {
        return f64::NAN;
    }
    entropy_base10(&spectrum(m))
}

/// torchconvquality `variance_entropy` and its normalised value of the selected rows.
///
/// 0 rows: 0 (and `0 / threshold(0) = -0`); 1 row: NaN (`0 / 0` variance); all centred values
/// zero: 0; a structurally zero tap (exactly zero centred column) with any other non-zero
/// variance: NaN (torch's `0 * log10(0)`); otherwise `-sum r log10 r` over the variance ratios.
/// Eigenvalues that are zero only up to rounding (rank deficiency of `n <= k` rows) are skipped,
/// like the tiny non-zero singular values the oracle's SVD returns for them.
pub(crate) fn tcq_entropy(m: &Moments) -> (f64, f64) {
    let e = match m.n {
        0 => 0.0,
        1 => f64::NAN,
        _ => {
            let v = spectrum(m);
            let mut den: f64 = v.iter().sum();
            if den == 0.0 {
                den = 1.0;
            }
            let ratio: Vec<f64> = v.iter().map(|x| x / den).collect();
            let ratio_sum: f64 = ratio.iter().sum();
            if ratio_sum == 0.0 {
                0.0
            } else if m.zero_cols > 0 {
                f64::NAN
            } else {
                -ratio
                    .iter()
                    .filter(|&&r| r != 0.0)
                    .map(|&r| r * r.log10())
                    .sum::<f64>()
            }
        }
    };
    (e, e / entropy_max_threshold(m.n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_moments(rows: &[f64], k: usize) -> Moments {
        moments(rows.len() / k, k, |i, b| {
            b.copy_from_slice(&rows[i * k..(i + 1) * k]);
            true
        })
    }

    #[test]
    fn scale_keeps_zero_filters_and_divides_by_linf() {
        let mut out = [9.0; 3];
        scale_filter(&[0.0, 0.0, 0.0], &mut out);
        assert_eq!(out, [0.0; 3]);
        scale_filter(&[1.0, -4.0, 2.0], &mut out);
        assert_eq!(out, [0.25, -1.0, 0.5]);
    }

    #[test]
    fn scatter_of_a_hand_made_matrix() {
        // rows (0,0) (2,0) (1,3): mean (1,1); centred (-1,-1) (1,-1) (0,2)
        let m = raw_moments(&[0.0, 0.0, 2.0, 0.0, 1.0, 3.0], 2);
        assert_eq!(m.n, 3);
        assert_eq!(m.scatter, vec![2.0, 0.0, 0.0, 6.0]);
        assert_eq!(m.zero_cols, 0);
        assert_eq!(spectrum(&m), vec![3.0, 1.0]);
    }

    #[test]
    fn spectrum_is_nan_below_two_rows() {
        assert!(variance_spectrum(&[1.0, 2.0], 2).iter().all(|v| v.is_nan()));
        assert_eq!(variance_spectrum(&[1.0], 0), Vec::<f64>::new());
    }

    #[test]
    fn entropy_semantics_of_scipy() {
        assert!((entropy_base10(&[1.0, 1.0]) - 2f64.log10()).abs() < 1e-15);
        assert!((entropy_base10(&[2.0, 2.0, 0.0]) - 2f64.log10()).abs() < 1e-15);
        assert_eq!(entropy_base10(&[5.0]), 0.0);
        assert!(entropy_base10(&[0.0, 0.0]).is_nan());
        assert_eq!(entropy_base10(&[]), 0.0);
    }

    #[test]
    fn tcq_entropy_edge_cases() {
        let e0 = tcq_entropy(&raw_moments(&[], 3));
        assert_eq!(e0.0, 0.0);
        assert!(e0.1 == 0.0 && e0.1.is_sign_negative());
        assert!(tcq_entropy(&raw_moments(&[1.0, 2.0, 3.0], 3)).0.is_nan());
        // identical rows: all centred values zero -> 0
        assert_eq!(tcq_entropy(&raw_moments(&[1.0, 2.0, 1.0, 2.0], 2)).0, 0.0);
        // column 0 constant: a variance ratio is exactly zero -> NaN
        let m = raw_moments(&[1.0, 2.0, 1.0, 5.0, 1.0, -3.0], 2);
        assert_eq!(m.zero_cols, 1);
        assert!(tcq_entropy(&m).0.is_nan());
        assert!(paper_entropy(&m).is_finite());
    }
}
