//! The two streaming passes over the models' shards: the coefficient range
//! ([`coefficient_range`]) and the per-model coefficient histograms ([`model_histograms`],
//! [`ModelHists`]); 3×3 filters go through the kernels of the best vector unit.

use super::kernels::{hist_run9, range_run9};
use super::project::{FastBins, Proj9};
use super::shards::{for_each_filter, for_each_run};
#[cfg(target_arch = "x86_64")]
use super::simd;
use super::CELLS;
use crate::compare::basis::Basis;
use crate::compare::divergence::Bins;
use crate::db::{Db, DbError};
use crate::measure::scale_filter;
use rayon::prelude::*;

/// Calls the 3×3 kernel `$f` compiled for the best vector unit of the machine: the vector
/// kernels work on blocks of filters (one f64 lane per filter) with the same arithmetic per
/// filter as the scalar kernel (no fused multiply-add, same order) and add the sums in
/// filter order, so the results are identical on every path.
macro_rules! dispatch {
    ($f:ident($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = simd::Avx512::detect() {
                simd::avx512::$f(t, $($a),*)
            } else if let Some(t) = simd::Avx2::detect() {
                simd::avx2::$f(t, $($a),*)
            } else {
                $f($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f($($a),*)
        }
    }};
}

/// Global `[min, max]` of the coefficients of all scaled filters (sparse ones included) of
/// the given models, as the notebook computes it. `None` when there is no filter.
pub fn coefficient_range(
    db: &Db,
    models: &[usize],
    kernel: [usize; 2],
    basis: &Basis,
) -> Result<Option<(f64, f64)>, DbError> {
    let mp = basis.mean_projection();
    let k = kernel[0] * kernel[1];
    let p9 = if k == 9 { Proj9::new(basis, &mp) } else { None };
    let parts: Vec<Result<(f64, f64), DbError>> = models
        .par_iter()
        .map(|&i| {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            match &p9 {
                Some(p) => {
                    let mut l9 = [f64::INFINITY; 9];
                    let mut h9 = [f64::NEG_INFINITY; 9];
                    for_each_run(db, &db.models[i], kernel, |_, run| {
                        dispatch!(range_run9(p, run, &mut l9, &mut h9))
                    })?;
                    for j in 0..9 {
                        lo = lo.min(l9[j]);
                        hi = hi.max(h9[j]);
                    }
                }
                None => {
                    let mut x = vec![0.0; k];
                    let mut c = vec![0.0; k];
                    for_each_filter(db, &db.models[i], kernel, |_, filt, _| {
                        scale_filter(filt, &mut x);
                        basis.transform_into(&x, &mp, &mut c);
                        for &v in &c {
                            lo = lo.min(v);
                            hi = hi.max(v);
                        }
                    })?;
                }
            }
            Ok((lo, hi))
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in parts {
        let (a, b) = p?;
        lo = lo.min(a);
        hi = hi.max(b);
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

/// `a[i] += b[i]` for `i` in `range`, as far as both slices reach.
fn add_into<T: Copy + std::ops::AddAssign>(a: &mut [T], b: &[T], range: std::ops::Range<usize>) {
    let end = range.end.min(a.len()).min(b.len());
    let start = range.start.min(end);
    for (x, &y) in a[start..end].iter_mut().zip(&b[start..end]) {
        *x += y;
    }
}

/// Coefficient histograms of one model's non-sparse filters: per cell (overall, depth groups)
/// and component, counts over the shared bins; optionally a fine grid for density estimates
/// and the first two moments of the coefficients per cell and component.
#[derive(Debug, Clone)]
pub struct ModelHists {
    /// Components.
    pub comps: usize,
    /// Bins per histogram.
    pub bins: usize,
    /// Non-sparse filters per cell.
    pub n: [u64; CELLS],
    /// Counts, `[cell][component][bin]` flattened.
    pub counts: Vec<u64>,
    /// Fine-grid points per histogram (0 when not collected).
    pub fine_bins: usize,
    /// Fine-grid counts, `[cell][component][fine bin]` flattened.
    pub fine: Vec<u32>,
    /// Σc per `[cell][component]`.
    pub sum: Vec<f64>,
    /// Σc² per `[cell][component]`.
    pub sum_sq: Vec<f64>,
}

impl ModelHists {
    pub(super) fn new(comps: usize, bins: usize, fine_bins: usize) -> Self {
        ModelHists {
            comps,
            bins,
            n: [0; CELLS],
            counts: vec![0; CELLS * comps * bins],
            fine_bins,
            fine: vec![0; CELLS * comps * fine_bins],
            sum: vec![0.0; CELLS * comps],
            sum_sq: vec![0.0; CELLS * comps],
        }
    }

    /// Adds another model's histograms.
    pub fn merge(&mut self, o: &ModelHists) {
        add_into(&mut self.n, &o.n, 0..CELLS);
        add_into(&mut self.counts, &o.counts, 0..o.counts.len());
        add_into(&mut self.fine, &o.fine, 0..o.fine.len());
        add_into(&mut self.sum, &o.sum, 0..o.sum.len());
        add_into(&mut self.sum_sq, &o.sum_sq, 0..o.sum_sq.len());
    }

    /// Adds one cell of another model's histograms (the other cells are left as they are).
    pub fn merge_cell(&mut self, o: &ModelHists, cell: usize) {
        let same_shape = (self.comps, self.bins, self.fine_bins) == (o.comps, o.bins, o.fine_bins)
            && self.counts.len() == o.counts.len()
            && self.fine.len() == o.fine.len()
            && self.sum.len() == o.sum.len()
            && self.sum_sq.len() == o.sum_sq.len();
        if cell >= CELLS || !same_shape {
            return;
        }
        let (c, b, f) = (self.comps, self.bins, self.fine_bins);
        add_into(&mut self.n, &o.n, cell..cell + 1);
        add_into(
            &mut self.counts,
            &o.counts,
            cell * c * b..(cell + 1) * c * b,
        );
        add_into(&mut self.fine, &o.fine, cell * c * f..(cell + 1) * c * f);
        add_into(&mut self.sum, &o.sum, cell * c..(cell + 1) * c);
        add_into(&mut self.sum_sq, &o.sum_sq, cell * c..(cell + 1) * c);
    }

    /// An empty set of histograms shaped like `self`.
    pub fn empty_like(&self) -> ModelHists {
        ModelHists::new(self.comps, self.bins, self.fine_bins)
    }

    /// Counts of one cell and component.
    pub fn counts(&self, cell: usize, comp: usize) -> &[u64] {
        let o = (cell * self.comps + comp) * self.bins;
        &self.counts[o..o + self.bins]
    }

    /// Fine-grid counts of one cell and component.
    pub fn fine(&self, cell: usize, comp: usize) -> &[u32] {
        let o = (cell * self.comps + comp) * self.fine_bins;
        &self.fine[o..o + self.fine_bins]
    }
}

/// Per-model coefficient histograms of the non-sparse filters (pass 2 of the shift).
pub fn model_histograms(
    db: &Db,
    models: &[usize],
    kernel: [usize; 2],
    basis: &Basis,
    bins: &Bins,
    fine: Option<&Bins>,
) -> Result<Vec<ModelHists>, DbError> {
    let mp = basis.mean_projection();
    let k = kernel[0] * kernel[1];
    let comps = basis.components.len();
    let p9 = if k == 9 { Proj9::new(basis, &mp) } else { None };
    let fb = FastBins::new(bins);
    let ffb = fine.map(FastBins::new);
    models
        .par_iter()
        .map(|&i| {
            let mut h = ModelHists::new(comps, bins.len(), fine.map_or(0, |f| f.len()));
            match &p9 {
                Some(p) => {
                    for_each_run(db, &db.models[i], kernel, |l, run| {
                        let cells = [Some(0), l.cell];
                        let ff = ffb.as_ref();
                        dispatch!(hist_run9(p, &fb, ff, l.limit, cells, run, &mut h))
                    })?;
                }
                None => {
                    let mut x = vec![0.0; k];
                    let mut c = vec![0.0; k];
                    for_each_filter(db, &db.models[i], kernel, |l, filt, sparse| {
                        if sparse {
                            return;
                        }
                        scale_filter(filt, &mut x);
                        basis.transform_into(&x, &mp, &mut c);
                        for cell in [Some(0), l.cell].into_iter().flatten() {
                            h.n[cell] += 1;
                            for (j, &v) in c.iter().enumerate() {
                                if let Some(b) = fb.index(v) {
                                    h.counts[(cell * comps + j) * h.bins + b] += 1;
                                }
                                if let Some(fb) = ffb.as_ref().and_then(|f| f.index(v)) {
                                    h.fine[(cell * comps + j) * h.fine_bins + fb] += 1;
                                }
                                h.sum[cell * comps + j] += v;
                                h.sum_sq[cell * comps + j] += v * v;
                            }
                        }
                    })?;
                }
            }
            Ok(h)
        })
        .collect()
}
