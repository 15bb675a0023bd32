//! The portable 3×3 kernels of the two passes over a run of filters of one layer: the
//! per-component range of the coefficients, and the histogram counts, fine-grid counts and
//! sums of the non-sparse filters. The vector kernels (`simd`) give exactly their results.

use super::passes::ModelHists;
use super::project::{FastBins, Proj9};

/// Range pass over a run of 3×3 filters: per-component min and max of the coefficients.
#[inline(always)]
pub(super) fn range_run9(p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
    for filt in run.chunks_exact(9) {
        let Ok(f) = <&[f32; 9]>::try_from(filt) else {
            continue;
        };
        let (_, c) = p.coefficients(f);
        for j in 0..9 {
            l9[j] = l9[j].min(c[j]);
            h9[j] = h9[j].max(c[j]);
        }
    }
}

/// Histogram pass over a run of 3×3 filters of one layer (sparse limit `limit`, `cells`).
#[inline(always)]
pub(super) fn hist_run9(
    p: &Proj9,
    fb: &FastBins,
    ffb: Option<&FastBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &[f32],
    h: &mut ModelHists,
) {
    let mut local = vec![0u32; 9 * (h.bins + 1)];
    hist_filters9(p, fb, ffb, limit, cells, run, &mut local, h);
    add_local(cells, &local, h);
}

/// The scalar histogram kernel: counts of the non-sparse filters of `run` into `local` (per
/// component `bins + 1` slots, the last one for "outside"), everything else into `h`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn hist_filters9(
    p: &Proj9,
    fb: &FastBins,
    ffb: Option<&FastBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &[f32],
    local: &mut [u32],
    h: &mut ModelHists,
) {
    let nb = h.bins;
    let nf = h.fine_bins;
    for filt in run.chunks_exact(9) {
        let Ok(f) = <&[f32; 9]>::try_from(filt) else {
            continue;
        };
        let (linf, c) = p.coefficients(f);
        if f64::from(linf) <= limit {
            continue;
        }
        let mut idx = [0usize; 9];
        for (ij, &cj) in idx.iter_mut().zip(&c) {
            *ij = fb.index_or_n(cj);
        }
        let mut fidx = [usize::MAX; 9];
        if let Some(ff) = ffb {
            for (ij, &cj) in fidx.iter_mut().zip(&c) {
                *ij = ff.index_or_n(cj);
            }
        }
        for (j, &ij) in idx.iter().enumerate() {
            if let Some(c) = local.get_mut(j * (nb + 1) + ij) {
                *c += 1;
            }
        }
        for cell in cells.into_iter().flatten() {
            h.n[cell] += 1;
            let base = cell * 9;
            for (j, &fj) in fidx.iter().enumerate() {
                if fj < nf {
                    h.fine[(base + j) * nf + fj] += 1;
                }
            }
            let sum = &mut h.sum[base..base + 9];
            for j in 0..9 {
                sum[j] += c[j];
            }
            let sq = &mut h.sum_sq[base..base + 9];
            for j in 0..9 {
                sq[j] += c[j] * c[j];
            }
        }
    }
}

/// Adds the counts of a run (see [`hist_filters9`]; `local` may hold several copies of them
/// one after the other) to both cells: integer counts do not depend on the order.
pub(super) fn add_local(cells: [Option<usize>; 2], local: &[u32], h: &mut ModelHists) {
    let nb = h.bins;
    for cell in cells.into_iter().flatten() {
        for copy in local.chunks_exact(9 * (nb + 1)) {
            for j in 0..9 {
                let src = &copy[j * (nb + 1)..j * (nb + 1) + nb];
                let dst = &mut h.counts[(cell * 9 + j) * nb..(cell * 9 + j + 1) * nb];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += u64::from(s);
                }
            }
        }
    }
}
