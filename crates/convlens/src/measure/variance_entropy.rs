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
use std::ops::Range;

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

/// Rows seen through several selections (see [`moments_many`]).
pub(crate) trait Selections: Sync {
    /// Number of selections.
    fn count(&self) -> usize;
    /// Appends to `out` the rows among `rows` that selection `sel` selects, in row order and
    /// as it sees them (`k` values each), and returns how many.
    fn rows(&self, rows: Range<usize>, sel: usize, out: &mut Vec<f64>) -> usize;
}

/// A single selection given by a closure writing row `i` into a buffer of `k` values and
/// returning whether the row is selected.
struct OneSelection<F> {
    k: usize,
    row: F,
}

impl<F: Fn(usize, &mut [f64]) -> bool + Sync> Selections for OneSelection<F> {
    fn count(&self) -> usize {
        1
    }

    fn rows(&self, rows: Range<usize>, _sel: usize, out: &mut Vec<f64>) -> usize {
        let mut buf = vec![0f64; self.k];
        let mut n = 0;
        for i in rows {
            if (self.row)(i, &mut buf) {
                out.extend_from_slice(&buf);
                n += 1;
            }
        }
        n
    }
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
    let mut all = moments_many(n_rows, k, &OneSelection { k, row });
    all.pop().unwrap_or(Moments {
        n: 0,
        k,
        scatter: vec![0.0; k * k],
        zero_cols: k,
    })
}

/// [`moments`] of several selections of the same rows at once, reading the rows once per
/// pass. Each selection's result is exactly what [`moments`] gives for it alone.
pub(crate) fn moments_many<S: Selections>(n_rows: usize, k: usize, row: &S) -> Vec<Moments> {
    let sels = row.count();
    let level = Level::detect();

    // Pass 1: per selection, the row sum in row order.
    let (sum, count) = level.pass1(n_rows, k, row, (CHUNK * 9 / k.max(1)).max(1));
    let mut mean = vec![0f64; sels * k];
    for (s, &n) in count.iter().enumerate() {
        for a in 0..k {
            mean[s * k + a] = sum[s * k + a] / n as f64;
        }
    }

    // Pass 2. Rows per chunk: about CHUNK 9-tap filters' worth of values. Chunks are processed
    // in groups whose partial scatters (group * k * k values) are added in chunk order.
    let rows_per_chunk = (CHUNK * 9 / k.max(1)).max(1);
    let group = (GROUP * 81 / (k * k).max(1)).max(1);
    let n_chunks = n_rows.div_ceil(rows_per_chunk);
    let mut scatter = vec![0f64; sels * k * k];
    let mut nonzero = vec![false; sels * k];
    for g0 in (0..n_chunks).step_by(group) {
        let parts: Vec<(Vec<f64>, Vec<bool>)> = (g0..n_chunks.min(g0 + group))
            .into_par_iter()
            .map_init(
                || Scratch::new(k, rows_per_chunk),
                |scratch, c| {
                    let rows = c * rows_per_chunk..n_rows.min((c + 1) * rows_per_chunk);
                    level.chunk_scatter(rows, &mean, row, scratch)
                },
            )
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
    (0..sels)
        .map(|s| Moments {
            n: count[s],
            k,
            scatter: scatter[s * k * k..(s + 1) * k * k].to_vec(),
            zero_cols: nonzero[s * k..(s + 1) * k]
                .iter()
                .filter(|&&nz| !nz)
                .count(),
        })
        .collect()
}

/// The vector instructions the row passes are compiled for: the same arithmetic, but the
/// conversions and divisions of a row vectorise on wider registers.
#[derive(Clone, Copy)]
enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    fn pass1<S: Selections>(
        self,
        n_rows: usize,
        k: usize,
        row: &S,
        chunk: usize,
    ) -> (Vec<f64>, Vec<usize>) {
        match self {
            Level::Baseline => pass1(n_rows, k, row, chunk),
            // SAFETY: `detect` found the feature.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { pass1_avx2(n_rows, k, row, chunk) },
            // SAFETY: `detect` found the feature.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { pass1_avx512(n_rows, k, row, chunk) },
        }
    }

    fn chunk_scatter<S: Selections>(
        self,
        rows: Range<usize>,
        mean: &[f64],
        row: &S,
        scratch: &mut Scratch,
    ) -> (Vec<f64>, Vec<bool>) {
        match self {
            Level::Baseline => chunk_scatter(rows, mean, row, scratch),
            // SAFETY: `detect` found the feature.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { chunk_scatter_avx2(rows, mean, row, scratch) },
            // SAFETY: `detect` found the feature.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { chunk_scatter_avx512(rows, mean, row, scratch) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pass1_avx512<S: Selections>(
    n: usize,
    k: usize,
    row: &S,
    chunk: usize,
) -> (Vec<f64>, Vec<usize>) {
    pass1(n, k, row, chunk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass1_avx2<S: Selections>(
    n: usize,
    k: usize,
    row: &S,
    chunk: usize,
) -> (Vec<f64>, Vec<usize>) {
    pass1(n, k, row, chunk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chunk_scatter_avx512<S: Selections>(
    rows: Range<usize>,
    mean: &[f64],
    row: &S,
    scratch: &mut Scratch,
) -> (Vec<f64>, Vec<bool>) {
    chunk_scatter(rows, mean, row, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_scatter_avx2<S: Selections>(
    rows: Range<usize>,
    mean: &[f64],
    row: &S,
    scratch: &mut Scratch,
) -> (Vec<f64>, Vec<bool>) {
    chunk_scatter(rows, mean, row, scratch)
}

/// Per selection: the sum of its rows in row order (`sels * k` values) and their number. The
/// rows are produced `chunk` at a time.
#[inline(always)]
fn pass1<S: Selections>(n_rows: usize, k: usize, row: &S, chunk: usize) -> (Vec<f64>, Vec<usize>) {
    let sels = row.count();
    let mut sum = vec![0f64; sels * k];
    let mut count = vec![0usize; sels];
    let mut buf = Vec::with_capacity(chunk * k);
    for r0 in (0..n_rows).step_by(chunk.max(1)) {
        let rows = r0..n_rows.min(r0 + chunk);
        for (s, n) in count.iter_mut().enumerate() {
            buf.clear();
            *n += row.rows(rows.clone(), s, &mut buf);
            let sum = &mut sum[s * k..(s + 1) * k];
            if k == 9 {
                // the common 3x3 kernel: a fixed length unrolls (same additions in order)
                add_rows::<9>(sum, &buf, 9);
            } else {
                add_rows::<0>(sum, &buf, k);
            }
        }
    }
    (sum, count)
}

/// Adds the rows of `k` values in `buf` to `sum`, row after row; `K` is `k` when non-zero.
#[inline(always)]
fn add_rows<const K: usize>(sum: &mut [f64], buf: &[f64], k: usize) {
    let k = if K > 0 { K } else { k };
    for r in buf.chunks_exact(k.max(1)) {
        for (acc, x) in sum.iter_mut().zip(r) {
            *acc += x;
        }
    }
}

/// Per-thread buffers of [`chunk_scatter`]: the selected rows of one chunk, and the same
/// rows centred and stored column by column.
struct Scratch {
    k: usize,
    cap: usize,
    rows: Vec<f64>,
    cols: Vec<f64>,
}

impl Scratch {
    fn new(k: usize, cap: usize) -> Scratch {
        Scratch {
            k,
            cap,
            rows: Vec::with_capacity(k * cap),
            cols: vec![0f64; k * cap],
        }
    }
}

/// For every selection: the scatter matrix (`k x k`) of its centred rows among `rows` (at most
/// `scratch.cap` rows), and per column whether any centred value is non-zero; concatenated
/// selection after selection.
#[inline(always)]
fn chunk_scatter<S: Selections>(
    rows: Range<usize>,
    mean: &[f64],
    row: &S,
    scratch: &mut Scratch,
) -> (Vec<f64>, Vec<bool>) {
    let sels = row.count();
    let Scratch {
        k,
        cap,
        rows: buf,
        cols,
    } = scratch;
    let (k, cap) = (*k, *cap);
    let mut scatter = vec![0f64; sels * k * k];
    let mut nonzero = vec![false; sels * k];
    for s in 0..sels {
        buf.clear();
        let r = row.rows(rows.clone(), s, buf).min(cap);
        // centre, column by column
        if k == 9 {
            centre_cols::<9>(buf, &mean[s * k..(s + 1) * k], cols, cap, r, 9);
        } else {
            centre_cols::<0>(buf, &mean[s * k..(s + 1) * k], cols, cap, r, k);
        }
        let col = |a: usize| &cols[a * cap..a * cap + r];
        for a in 0..k {
            nonzero[s * k + a] = col(a).iter().fold(false, |nz, &x| nz | (x != 0.0));
        }
        let sm = &mut scatter[s * k * k..(s + 1) * k * k];
        for a in 0..k {
            // dot(col a, col b) for b = a..k, four at a time (a lone one is padded with col a)
            for b0 in (a..k).step_by(4) {
                let pick = |j: usize| col(if b0 + j < k { b0 + j } else { a });
                let d = dot4(col(a), [pick(0), pick(1), pick(2), pick(3)]);
                for (j, &d) in d.iter().enumerate() {
                    let b = b0 + j;
                    if b < k {
                        sm[a * k + b] = d;
                        sm[b * k + a] = d;
                    }
                }
            }
        }
    }
    (scatter, nonzero)
}

/// Writes `rows[j * k + a] - mean[a]` to `cols[a * cap + j]` for the first `r` rows; `K` is
/// `k` when non-zero.
#[inline(always)]
fn centre_cols<const K: usize>(
    rows: &[f64],
    mean: &[f64],
    cols: &mut [f64],
    cap: usize,
    r: usize,
    k: usize,
) {
    let k = if K > 0 { K } else { k };
    for (j, row) in rows.chunks_exact(k.max(1)).take(r).enumerate() {
        for (a, (&x, &m)) in row.iter().zip(mean).enumerate() {
            cols[a * cap + j] = x - m;
        }
    }
}

/// `acc + x * y` element-wise (a separate multiply and add, like `dot`).
#[inline(always)]
fn lanes_mul_add(x: &[f64; 8], y: &[f64; 8], mut acc: [f64; 8]) -> [f64; 8] {
    for ((s, &a), &b) in acc.iter_mut().zip(x).zip(y) {
        *s += a * b;
    }
    acc
}

/// `[dot(x, y[0]), .., dot(x, y[3])]`, bit for bit (all slices of `x.len()`), computed
/// together so that the four independent sums overlap (each `dot` alone waits on its own
/// additions). Uses AVX2 where the CPU has it; the arithmetic is the same either way.
fn dot4(x: &[f64], y: [&[f64]; 4]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && y.iter().all(|y| y.len() == x.len()) {
            // SAFETY: the CPU has AVX2 and every `y` is as long as `x`.
            return unsafe { dot4_avx2(x, y) };
        }
    }
    dot4_body(x, y)
}

/// [`dot4`] with AVX2 vectors: lanes 0-3 and 4-7 of the 8 partial sums of each product in two
/// registers, the same separate multiply and add per lane.
///
/// # Safety
/// The CPU must have AVX2 and every `y[i]` must hold `x.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(x: &[f64], y: [&[f64]; 4]) -> [f64; 4] {
    use std::arch::x86_64::{
        __m256d, _mm256_add_pd, _mm256_loadu_pd, _mm256_mul_pd, _mm256_setzero_pd, _mm256_storeu_pd,
    };
    let m = x.len() - x.len() % 8;
    let mut lo = [_mm256_setzero_pd(); 4];
    let mut hi = [_mm256_setzero_pd(); 4];
    let mut q = 0;
    while q < m {
        // SAFETY: q + 8 <= m <= x.len() == y[i].len().
        unsafe {
            let xl = _mm256_loadu_pd(x.as_ptr().add(q));
            let xh = _mm256_loadu_pd(x.as_ptr().add(q + 4));
            for i in 0..4 {
                let yp = y[i].as_ptr().add(q);
                lo[i] = _mm256_add_pd(lo[i], _mm256_mul_pd(xl, _mm256_loadu_pd(yp)));
                hi[i] = _mm256_add_pd(hi[i], _mm256_mul_pd(xh, _mm256_loadu_pd(yp.add(4))));
            }
        }
        q += 8;
    }
    let lanes = |l: __m256d, h: __m256d| {
        let mut acc = [0f64; 8];
        // SAFETY: `acc` holds 8 values: two stores of 4.
        unsafe {
            _mm256_storeu_pd(acc.as_mut_ptr(), l);
            _mm256_storeu_pd(acc.as_mut_ptr().add(4), h);
        }
        acc
    };
    let mut out = [0f64; 4];
    for i in 0..4 {
        out[i] = finish_dot(x, y[i], m, lanes(lo[i], hi[i]));
    }
    out
}

/// Combines the 8 partial sums of `dot` over `x[..m]` with the sequential tail past `m`.
#[inline(always)]
fn finish_dot(x: &[f64], y: &[f64], m: usize, acc: [f64; 8]) -> f64 {
    let mut tail = 0f64;
    for (a, b) in x[m..].iter().zip(&y[m..]) {
        tail += a * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The next 8 values of `c`, if there are 8 more.
#[inline(always)]
fn next8<'a>(c: &mut std::slice::ChunksExact<'a, f64>) -> Option<&'a [f64; 8]> {
    c.next().and_then(|c| c.first_chunk::<8>())
}

#[inline(always)]
fn dot4_body(x: &[f64], y: [&[f64]; 4]) -> [f64; 4] {
    let m = x.len() - x.len() % 8;
    let (mut a0, mut a1, mut a2, mut a3) = ([0f64; 8], [0f64; 8], [0f64; 8], [0f64; 8]);
    let mut ys = y.map(|y| y[..m].chunks_exact(8));
    for xs in x[..m].chunks_exact(8) {
        let (Some(xs), Some(y0), Some(y1), Some(y2), Some(y3)) = (
            xs.first_chunk::<8>(),
            next8(&mut ys[0]),
            next8(&mut ys[1]),
            next8(&mut ys[2]),
            next8(&mut ys[3]),
        ) else {
            break;
        };
        a0 = lanes_mul_add(xs, y0, a0);
        a1 = lanes_mul_add(xs, y1, a1);
        a2 = lanes_mul_add(xs, y2, a2);
        a3 = lanes_mul_add(xs, y3, a3);
    }
    [
        finish_dot(x, y[0], m, a0),
        finish_dot(x, y[1], m, a1),
        finish_dot(x, y[2], m, a2),
        finish_dot(x, y[3], m, a3),
    ]
}

/// Dot product with 8 interleaved partial sums (vectorisable, fixed summation order).
#[cfg(test)]
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
    fn dot4_is_dot_bit_for_bit() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for len in [0, 1, 7, 8, 9, 63, 64, 100] {
            let x: Vec<f64> = (0..len).map(|_| next()).collect();
            let ys: Vec<Vec<f64>> = (0..4)
                .map(|_| (0..len).map(|_| next() * 1e3).collect())
                .collect();
            let y4 = [&ys[0][..], &ys[1][..], &ys[2][..], &ys[3][..]];
            for got in [dot4(&x, y4), dot4_body(&x, y4)] {
                for (g, y) in got.iter().zip(&ys) {
                    assert_eq!(g.to_bits(), dot(&x, y).to_bits(), "len {len}");
                }
            }
        }
    }

    #[test]
    fn many_selections_equal_single_ones() {
        // 3 selections of 20000 rows of 9 (several chunks, partial last chunk)
        let (n, k) = (20_000, 9);
        let rows: Vec<f64> = (0..n * k)
            .map(|i| ((i * 7919) % 1013) as f64 / 97.0 - 5.0)
            .collect();
        struct Three<'a>(&'a [f64], usize);
        impl Three<'_> {
            fn row(&self, i: usize, s: usize, b: &mut [f64]) -> bool {
                let k = self.1;
                b.copy_from_slice(&self.0[i * k..(i + 1) * k]);
                if s == 1 {
                    for x in b.iter_mut() {
                        *x /= 3.0;
                    }
                }
                match s {
                    0 => true,
                    1 => !i.is_multiple_of(3),
                    _ => i % 7 == 1,
                }
            }
        }
        impl Selections for Three<'_> {
            fn count(&self) -> usize {
                3
            }
            fn rows(&self, rows: Range<usize>, s: usize, out: &mut Vec<f64>) -> usize {
                let mut b = vec![0.0; self.1];
                let mut n = 0;
                for i in rows {
                    if self.row(i, s, &mut b) {
                        out.extend_from_slice(&b);
                        n += 1;
                    }
                }
                n
            }
        }
        let three = Three(&rows, k);
        let many = moments_many(n, k, &three);
        for (s, m) in many.iter().enumerate() {
            let one = moments(n, k, |i, b| three.row(i, s, b));
            assert_eq!(m.n, one.n);
            assert_eq!(m.zero_cols, one.zero_cols);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&m.scatter), bits(&one.scatter));
        }
        // and the scatter is the plain sum of centred products (up to rounding)
        let m = &many[0];
        let mean: Vec<f64> = (0..k)
            .map(|a| (0..n).map(|i| rows[i * k + a]).sum::<f64>() / n as f64)
            .collect();
        let s01: f64 = (0..n)
            .map(|i| (rows[i * k] - mean[0]) * (rows[i * k + 1] - mean[1]))
            .sum();
        assert!((m.scatter[1] - s01).abs() <= 1e-9 * s01.abs().max(1.0));
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
