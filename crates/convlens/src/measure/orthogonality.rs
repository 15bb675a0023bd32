//! Orthogonality of a layer's out-channels (orthogonality.ipynb `ortho_cond`).

use rayon::prelude::*;

/// Rows per Gram strip: each strip is multiplied by the rows from its first row on, so only
/// the upper triangle (plus the lower half of the diagonal blocks) is computed.
const TILE: usize = 128;

/// Paper orthogonality of `n` rows of length `len` (row-major `rows`):
/// `1 - sum|W W^T - I| / (n (n - 1))` over the L2-normalised rows (a zero row stays zero, so an
/// all-zero layer gives `1 - 1/(n-1)`). NaN when `n < 2` or `rows.len() != n * len`.
pub fn orthogonality(rows: &[f32], n: usize, len: usize) -> f64 {
    if n < 2 || n.checked_mul(len) != Some(rows.len()) {
        return f64::NAN;
    }
    let denom = n as f64 * (n - 1) as f64;
    if len == 0 {
        // every row is zero: |0 - 1| on each diagonal entry
        return 1.0 - n as f64 / denom;
    }

    let mut a = vec![0f64; rows.len()];
    a.par_chunks_mut(len)
        .zip(rows.par_chunks(len))
        .for_each(|(dst, src)| {
            let t = src
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            let t = if t == 0.0 { 1.0 } else { t };
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f64::from(s) / t;
            }
        });

    // Upper triangle by strips: rows i0..i0+mi against rows i0..n.
    let mut c = vec![0f64; TILE.min(n) * n];
    let mut total = 0f64;
    for i0 in (0..n).step_by(TILE) {
        let mi = TILE.min(n - i0);
        let nj = n - i0;
        // SAFETY: A_I = rows i0..i0+mi of `a` (mi x len, row stride len) and
        // B = A_J^T for J = rows i0..n (len x nj: element (p, q) at (i0 + q) * len + p) lie inside
        // `a`, whose length is n * len; C is the first mi * nj <= TILE.min(n) * n entries of `c`,
        // row stride nj. beta = 0, so C is only written. `len`, `nj` <= isize::MAX because they
        // index existing allocations.
        unsafe {
            matrixmultiply::dgemm(
                mi,
                len,
                nj,
                1.0,
                a.as_ptr().add(i0 * len),
                len as isize,
                1,
                a.as_ptr().add(i0 * len),
                1,
                len as isize,
                0.0,
                c.as_mut_ptr(),
                nj as isize,
                1,
            );
        }
        for (r, row) in c[..mi * nj].chunks_exact(nj).enumerate() {
            // row r is global row i0 + r; its diagonal entry is at column r
            let off: f64 = row[r + 1..].iter().map(|x| x.abs()).sum();
            total += (row[r] - 1.0).abs() + 2.0 * off;
        }
    }
    1.0 - total / denom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_agree_with_a_naive_sum() {
        // 600 rows (3 tiles, last one partial) of 7 pseudo-random values, a few zero rows.
        let (n, len) = (600, 7);
        let mut state = 12345u64;
        let mut rows: Vec<f32> = (0..n * len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        for r in [0, 299, 599] {
            rows[r * len..(r + 1) * len].fill(0.0);
        }
        let norm: Vec<Vec<f64>> = rows
            .chunks(len)
            .map(|r| {
                let t = r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                let t = if t == 0.0 { 1.0 } else { t };
                r.iter().map(|&x| f64::from(x) / t).collect()
            })
            .collect();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                let g: f64 = norm[i].iter().zip(&norm[j]).map(|(a, b)| a * b).sum();
                s += (g - if i == j { 1.0 } else { 0.0 }).abs();
            }
        }
        let naive = 1.0 - s / (n * (n - 1)) as f64;
        let fast = orthogonality(&rows, n, len);
        assert!((naive - fast).abs() < 1e-12, "{naive} vs {fast}");
    }

    #[test]
    fn bad_sizes_give_nan() {
        assert!(orthogonality(&[1.0; 5], 2, 3).is_nan());
        assert!(orthogonality(&[1.0; 3], 1, 3).is_nan());
        assert!(orthogonality(&[], usize::MAX, 2).is_nan());
    }

    #[test]
    fn empty_rows_are_zero_rows() {
        assert!((orthogonality(&[], 8, 0) - (1.0 - 1.0 / 7.0)).abs() < 1e-15);
    }
}
