//! The histogram kernel on blocks of filters: bin slots computed lane by lane, counts into
//! two copies (even and odd lanes), fine-grid counts and the sums of the kept filters.

use super::super::kernels::{add_local, hist_filters9};
use super::super::passes::ModelHists;
use super::super::project::{FastBins, Proj9, VecBins};
use super::{coefficients, Simd, MAX_LANES};

/// `FastBins::index_or_n` per lane plus `off`, as f64 (`n` outside the bins and where
/// `keep` is off).
#[inline(always)]
fn bin_slot<S: Simd>(s: S, b: &VecBins, x: S::V, keep: S::M, off: S::V) -> S::V {
    let one = s.splat(1.0);
    let (lo, last) = (s.splat(b.lo), s.splat(b.last));
    let inside = s.le_and(s.ge_and(keep, x, lo), x, s.splat(b.hi));
    // the guess as the scalar one; in the lanes inside, (x − lo) · scale >= 0 makes its
    // `max(0)` a no-op, the other lanes answer n whatever the guess
    let i = s.trunc(s.min(s.mul(s.sub(x, lo), s.splat(b.scale)), last));
    // the edges e[i], e[i + 1] exactly as `Bins::new` computes them (checked in
    // `FastBins::new`; e[i + 1] only matters for i + 1 < n)
    let step = s.splat(b.step);
    let e0 = s.add(s.mul(i, step), lo);
    let e1 = s.add(s.mul(s.add(i, one), step), lo);
    // no `i > 0` test: e[0] = lo, and x >= lo in the lanes inside
    let down = s.lt(x, e0);
    let up = s.ge_and(s.lt(i, last), x, e1);
    let r = s.add_if(up, s.sub_if(down, i, one), one);
    s.add(s.select(inside, r, s.splat(b.n)), off)
}

/// Adds one to `local[slot]` for the slots of the lanes of a block (slots out of range
/// are ignored).
#[inline(always)]
fn count_slots<S: Simd>(off: &[[i32; MAX_LANES]; 9], local: &mut [u32]) {
    for lane in 0..S::LANES {
        for o in off {
            if let Some(x) = local.get_mut(o[lane] as usize) {
                *x += 1;
            }
        }
    }
}

/// Adds one to the fine-grid count of every cell at the fine bins of a block (`nf` and
/// above, or negative: none).
#[inline(always)]
fn count_fine<S: Simd>(fidx: &[[i32; MAX_LANES]; 9], cells: &[usize], nf: usize, fine: &mut [u32]) {
    for &cell in cells {
        for lane in 0..S::LANES {
            for (j, fj) in fidx.iter().enumerate() {
                let fj = fj[lane] as usize;
                if fj < nf {
                    if let Some(x) = fine.get_mut((cell * 9 + j) * nf + fj) {
                        *x += 1;
                    }
                }
            }
        }
    }
}

/// Histogram pass (see `super::super::kernels::hist_run9`) on blocks, the tail scalar.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn hist_run9_v<S: Simd>(
    s: S,
    p: &Proj9,
    fb: &FastBins,
    ffb: Option<&FastBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &[f32],
    h: &mut ModelHists,
) {
    // two copies of the counts (see `hist_blocks`)
    let mut local = vec![0u32; 2 * 9 * (h.bins + 1)];
    let tail = match (fb.vec, ffb.map(|f| f.vec), cells) {
        // a cell twice would need both sums in one: left to the scalar kernel
        (_, _, [Some(a), Some(b)]) if a == b => run,
        (Some(vb), None, _) => hist_blocks(s, p, &vb, None, limit, cells, run, &mut local, h),
        (Some(vb), Some(Some(vf)), _) => {
            hist_blocks(s, p, &vb, Some(&vf), limit, cells, run, &mut local, h)
        }
        // edges that do not follow `Bins::new`'s rule: scalar
        _ => run,
    };
    hist_filters9(p, fb, ffb, limit, cells, tail, &mut local, h);
    add_local(cells, &local, h);
}

/// The whole blocks of `run` into `local` (two copies of the counts) and `h`; returns
/// the rest.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn hist_blocks<'r, S: Simd>(
    s: S,
    p: &Proj9,
    vb: &VecBins,
    vfb: Option<&VecBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &'r [f32],
    local: &mut [u32],
    h: &mut ModelHists,
) -> &'r [f32] {
    let cell_list: Vec<usize> = cells.into_iter().flatten().collect();
    if cell_list.is_empty() {
        // nothing is counted
        return run;
    }
    // the sums of (at most) two cells; a missing second cell sums into a spare slot
    let (mut sum, mut sq) = ([[0.0; 9]; 2], [[0.0; 9]; 2]);
    for (k, &cell) in cell_list.iter().take(2).enumerate() {
        sum[k].copy_from_slice(&h.sum[cell * 9..cell * 9 + 9]);
        sq[k].copy_from_slice(&h.sum_sq[cell * 9..cell * 9 + 9]);
    }
    let mut acc = s.acc_load(&sum, &sq);
    let nb1 = h.bins + 1;
    let nf = h.fine_bins;
    let lim = s.splat(limit);
    let zero = s.splat(0.0);
    // count slots: per component `bins + 1` (the last for "outside" and sparse filters),
    // even lanes in the first copy of the counts, odd ones in the second (so that two
    // filters in a row never wait on the same counter)
    let copy = s.alternate(0.0, (9 * nb1) as f64);
    let mut base = [zero; 9];
    for (j, bj) in base.iter_mut().enumerate() {
        *bj = s.add(s.splat((j * nb1) as f64), copy);
    }
    // slots of the previous block, counted a block later (loading them right after the
    // vector stores would stall); -1 = none
    let mut off = [[-1i32; MAX_LANES]; 9];
    let mut fidx = [[-1i32; MAX_LANES]; 9];
    let blocks = run.chunks_exact(9 * S::LANES);
    let tail = blocks.remainder();
    let mut kept = 0u64;
    for block in blocks {
        let Some(t) = s.taps(block) else {
            continue;
        };
        let (den, c) = coefficients(s, p, &t);
        // kept unless `den <= limit`, as the scalar test
        let keep = s.nle(den, lim);
        let kb = s.bits(keep);
        kept += u64::from(kb.count_ones());
        count_slots::<S>(&off, local);
        if vfb.is_some() {
            count_fine::<S>(&fidx, &cell_list, nf, &mut h.fine);
        }
        for j in 0..9 {
            s.store_i32(bin_slot(s, vb, c[j], keep, base[j]), &mut off[j]);
        }
        if let Some(vf) = vfb {
            for j in 0..9 {
                s.store_i32(bin_slot(s, vf, c[j], keep, zero), &mut fidx[j]);
            }
        }
        s.accumulate(&c, kb, &mut acc);
    }
    count_slots::<S>(&off, local);
    if vfb.is_some() {
        count_fine::<S>(&fidx, &cell_list, nf, &mut h.fine);
    }
    s.acc_store(&acc, &mut sum, &mut sq);
    for (k, &cell) in cell_list.iter().take(2).enumerate() {
        h.n[cell] += kept;
        h.sum[cell * 9..cell * 9 + 9].copy_from_slice(&sum[k]);
        h.sum_sq[cell * 9..cell * 9 + 9].copy_from_slice(&sq[k]);
    }
    tail
}
