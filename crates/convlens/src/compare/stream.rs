//! Streaming passes over the filter shards of a database: the coefficient range and the
//! per-model coefficient histograms. Memory is independent of the number of filters.

use super::basis::Basis;
use super::divergence::Bins;
use crate::db::record::ModelRecord;
use crate::db::shard::ShardReader;
use crate::db::{Db, DbError};
use crate::depth::DepthBin;
use crate::measure::scale_filter;
use rayon::prelude::*;

/// Histogram cells: overall, then the depth groups (first, ten deciles).
pub const CELLS: usize = 12;

/// Cell labels in order.
pub fn cell_labels() -> Vec<String> {
    let mut v = vec!["overall".to_string()];
    v.extend(crate::depth::ALL_BINS.iter().map(|b| b.label()));
    v
}

/// Filters per read chunk (2.25 MiB of 3×3 filters).
const CHUNK: usize = 1 << 16;

/// Per-layer facts needed while streaming.
pub(crate) struct LayerView {
    start: u64,
    end: u64,
    limit: f64,
    cell: Option<usize>,
    skip: bool,
}

fn layer_views(m: &ModelRecord, kernel: [usize; 2]) -> Vec<LayerView> {
    let mut v: Vec<LayerView> = m
        .layers
        .iter()
        .filter(|l| l.kernel == kernel)
        .map(|l| LayerView {
            start: l.shard_start,
            end: l.shard_end,
            limit: l.layer_norm / 100.0,
            cell: l
                .depth_group
                .as_deref()
                .and_then(DepthBin::from_label)
                .map(|b| 1 + b.index()),
            skip: l.transposed,
        })
        .collect();
    v.sort_by_key(|l| l.start);
    v
}

/// Reads the chunks of a shard on a helper thread, so that reading overlaps computing; the
/// buffers go back and forth over two small channels.
fn read_ahead(
    mut r: ShardReader,
    path: &std::path::Path,
    mut f: impl FnMut(&[f32]) -> Result<(), DbError>,
) -> Result<(), DbError> {
    use std::sync::mpsc::sync_channel;
    let (full_tx, full_rx) = sync_channel::<std::io::Result<Vec<f32>>>(2);
    let (empty_tx, empty_rx) = sync_channel::<Vec<f32>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(Vec::new());
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                match r.next_chunk(CHUNK, &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        if full_tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        // dropping the receiver on an early error stops the reader
        let full_rx = full_rx;
        while let Ok(chunk) = full_rx.recv() {
            let buf = chunk.map_err(|e| DbError::Io(path.to_path_buf(), e))?;
            f(&buf)?;
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}

/// Calls `f(layer, filters)` for every run of consecutive filters of one layer (whole filters
/// of `k` taps) of a model's shard of `kernel`; transposed layers and filters outside every
/// layer are left out.
fn for_each_run(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
    mut f: impl FnMut(&LayerView, &[f32]),
) -> Result<(), DbError> {
    let Some(shard) = m.kernel(kernel) else {
        return Ok(());
    };
    let k = kernel[0] * kernel[1];
    let path = db.dir.join(&shard.shard);
    let r = ShardReader::open(&path, shard.n_filters, kernel[0], kernel[1])
        .map_err(|e| DbError::Io(path.clone(), e))?;
    let layers = layer_views(m, kernel);
    let mut id: u64 = 0;
    let mut li = 0;
    read_ahead(r, &path, |buf| {
        let mut rest = buf;
        while rest.len() >= k {
            let n = (rest.len() / k) as u64;
            while li < layers.len() && id >= layers[li].end {
                li += 1;
            }
            // filters up to the next layer boundary
            let (take, layer) = match layers.get(li) {
                Some(l) if id >= l.start => ((l.end - id).min(n), Some(l)),
                Some(l) => ((l.start - id).min(n), None),
                None => (n, None),
            };
            let take = take.max(1);
            let (run, tail) = rest.split_at(take as usize * k);
            if let Some(l) = layer.filter(|l| !l.skip) {
                f(l, run);
            }
            id += take;
            rest = tail;
        }
        Ok(())
    })
}

/// Calls `f(layer, filter, sparse)` for every filter of a model's shard of `kernel`
/// (transposed layers left out; `sparse` by the paper rule against the stored layer norm).
pub(crate) fn for_each_filter(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
    mut f: impl FnMut(&LayerView, &[f32], bool),
) -> Result<(), DbError> {
    let k = kernel[0] * kernel[1];
    for_each_run(db, m, kernel, |l, run| {
        for filt in run.chunks_exact(k) {
            let linf = filt.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let sparse = f64::from(linf) <= l.limit;
            f(l, filt, sparse);
        }
    })
}

/// The basis laid out for 3×3 filters and 9 components: `ct[a][j]` = tap `a` of component `j`.
struct Proj9 {
    ct: [[f64; 9]; 9],
    mp: [f64; 9],
}

impl Proj9 {
    fn new(basis: &Basis, mp: &[f64]) -> Option<Proj9> {
        if basis.dim() != 9 || basis.components.len() != 9 || mp.len() != 9 {
            return None;
        }
        if basis.components.iter().any(|c| c.len() != 9) {
            return None;
        }
        let ct = std::array::from_fn(|a| std::array::from_fn(|j| basis.components[j][a]));
        Some(Proj9 {
            ct,
            mp: std::array::from_fn(|j| mp[j]),
        })
    }

    /// Largest |tap| of `f` and its coefficients: `scale_filter` then `Basis::transform_into`,
    /// with every sum in the same order (bit-identical).
    #[inline(always)]
    fn coefficients(&self, f: &[f32; 9]) -> (f32, [f64; 9]) {
        let mut den = 0f32;
        let mut nan = false;
        for &v in f {
            let a = v.abs();
            nan |= a.is_nan();
            den = den.max(a);
        }
        let d = if nan {
            f64::NAN
        } else if den == 0.0 {
            1.0
        } else {
            f64::from(den)
        };
        let mut x = [0.0f64; 9];
        for i in 0..9 {
            x[i] = f64::from(f[i]) / d;
        }
        let mut s = [0.0f64; 9];
        for (xa, row) in x.iter().zip(&self.ct) {
            for (sj, cj) in s.iter_mut().zip(row) {
                *sj += xa * cj;
            }
        }
        for (sj, mj) in s.iter_mut().zip(&self.mp) {
            *sj -= mj;
        }
        // `den` ignores NaN taps like the l∞ of the sparse test
        (den, s)
    }
}

/// Largest bin count of the vectorisable bin index.
const MAX_FAST_BINS: usize = 4096;

/// `Bins::index` with the division replaced by a product: the first guess may differ by one
/// bin near an edge, and the one-step edge correction then settles on the same bin.
struct FastBins<'a> {
    lo: f64,
    hi: f64,
    scale: f64,
    n: usize,
    /// The edges, padded (so that indexing needs no bounds check); `None` above
    /// [`MAX_FAST_BINS`] bins.
    edges: Option<Box<[f64; MAX_FAST_BINS + 1]>>,
    bins: &'a Bins,
}

impl<'a> FastBins<'a> {
    fn new(b: &'a Bins) -> FastBins<'a> {
        let e = b.edges();
        let n = b.len();
        let (lo, hi) = (e[0], e[n]);
        let edges = (n <= MAX_FAST_BINS).then(|| {
            let mut a = Box::new([f64::INFINITY; MAX_FAST_BINS + 1]);
            a[..=n].copy_from_slice(e);
            a
        });
        FastBins {
            lo,
            hi,
            scale: n as f64 / (hi - lo),
            n,
            edges,
            bins: b,
        }
    }

    #[inline(always)]
    fn index(&self, x: f64) -> Option<usize> {
        let i = self.index_or_n(x);
        (i < self.n).then_some(i)
    }

    /// The bin of `x`, or `n` when it is outside `[lo, hi]` (branch-free: vectorises).
    #[inline(always)]
    fn index_or_n(&self, x: f64) -> usize {
        let Some(e) = self.edges.as_deref() else {
            return self.bins.index(x).unwrap_or(self.n);
        };
        let n = self.n;
        let inside = x >= self.lo && x <= self.hi;
        let f = ((x - self.lo) * self.scale).max(0.0).min((n - 1) as f64);
        // n <= MAX_FAST_BINS: the mask changes nothing and proves the index in bounds
        let i = (f as usize) & (MAX_FAST_BINS - 1);
        // one step, as `Bins::index` corrects its first guess
        let down = usize::from(x < e[i] && i > 0);
        let up = usize::from(x >= e[i + 1] && i + 1 < n);
        if inside {
            i - down + up
        } else {
            n
        }
    }
}

/// Calls the 3×3 kernel `$f` compiled for the best vector unit of the machine (same
/// arithmetic, no fused multiply-add: results are identical on every path).
macro_rules! dispatch {
    ($f:ident($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has the features the function is compiled for
                unsafe { simd::avx512::$f($($a),*) }
            } else if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above
                unsafe { simd::avx2::$f($($a),*) }
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

/// Range pass over a run of 3×3 filters: per-component min and max of the coefficients.
#[inline(always)]
fn range_run9(p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
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
fn hist_run9(
    p: &Proj9,
    fb: &FastBins,
    ffb: Option<&FastBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &[f32],
    h: &mut ModelHists,
) {
    let nb = h.bins;
    let nf = h.fine_bins;
    // counts of this run (one slot more per component for "outside"), added to both cells
    // at the end: integer counts do not depend on the order
    let mut local = vec![0u32; 9 * (nb + 1)];
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
    for cell in cells.into_iter().flatten() {
        for j in 0..9 {
            let src = &local[j * (nb + 1)..j * (nb + 1) + nb];
            let dst = &mut h.counts[(cell * 9 + j) * nb..(cell * 9 + j + 1) * nb];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += u64::from(s);
            }
        }
    }
}

/// The 3×3 kernels compiled for wider vector units.
#[cfg(target_arch = "x86_64")]
mod simd {
    macro_rules! kernels {
        ($m:ident, $feat:literal) => {
            pub(super) mod $m {
                use super::super::{FastBins, ModelHists, Proj9};

                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn range_run9(
                    p: &Proj9,
                    run: &[f32],
                    l9: &mut [f64; 9],
                    h9: &mut [f64; 9],
                ) {
                    super::super::range_run9(p, run, l9, h9)
                }

                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn hist_run9(
                    p: &Proj9,
                    fb: &FastBins,
                    ffb: Option<&FastBins>,
                    limit: f64,
                    cells: [Option<usize>; 2],
                    run: &[f32],
                    h: &mut ModelHists,
                ) {
                    super::super::hist_run9(p, fb, ffb, limit, cells, run, h)
                }
            }
        };
    }
    kernels!(avx2, "avx2");
    kernels!(avx512, "avx512f,avx512dq,avx512vl");
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
    fn new(comps: usize, bins: usize, fine_bins: usize) -> Self {
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
        for (a, b) in self.n.iter_mut().zip(&o.n) {
            *a += b;
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        for (a, b) in self.fine.iter_mut().zip(&o.fine) {
            *a += b;
        }
        for (a, b) in self.sum.iter_mut().zip(&o.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&o.sum_sq) {
            *a += b;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::basis::Moments;

    /// SplitMix64 numbers in [-1, 1).
    fn values(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[test]
    fn fast_bin_index_agrees_with_bins_index() {
        for (lo, hi, n) in [
            (-2.531819329136921, 2.4491343644046824, 70),
            (-0.3, 7.1, 2048),
            (1.0, 1.0, 70),
            (-1.0, 1.0, MAX_FAST_BINS + 10),
        ] {
            let bins = Bins::new(lo, hi, n);
            let fb = FastBins::new(&bins);
            let e = bins.edges();
            let mut xs: Vec<f64> = values(n as u64, 20_000)
                .into_iter()
                .map(|v| lo + (v + 1.0) * 0.5 * (hi - lo) * 1.02 - 0.01 * (hi - lo))
                .collect();
            for &edge in e {
                xs.extend([edge, edge.next_up(), edge.next_down()]);
            }
            xs.extend([
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                lo - 1.0,
                hi + 1.0,
            ]);
            for x in xs {
                assert_eq!(fb.index(x), bins.index(x), "x = {x:e}, {n} bins");
            }
        }
    }

    #[test]
    fn projection_is_bit_identical_to_scale_and_transform() {
        let v = values(7, 9 * 500);
        let mut m = Moments::new(9);
        let mut x = [0.0; 9];
        for f in v.chunks_exact(9) {
            let f32s: Vec<f32> = f.iter().map(|&a| a as f32).collect();
            scale_filter(&f32s, &mut x);
            m.add(&x);
        }
        let basis = Basis::fit(&m).unwrap();
        let mp = basis.mean_projection();
        let p = Proj9::new(&basis, &mp).unwrap();
        let mut filters: Vec<[f32; 9]> = v
            .chunks_exact(9)
            .map(|f| std::array::from_fn(|i| f[i] as f32 * 0.03))
            .collect();
        filters.push([0.0; 9]);
        filters.push([1e-30, -2e-30, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3e-30]);
        let mut nan = [0.5f32; 9];
        nan[4] = f32::NAN;
        filters.push(nan);
        let mut c = vec![0.0; 9];
        for f in &filters {
            scale_filter(f, &mut x);
            basis.transform_into(&x, &mp, &mut c);
            let (linf, got) = p.coefficients(f);
            assert_eq!(linf, f.iter().fold(0f32, |a, &t| a.max(t.abs())));
            for j in 0..9 {
                assert_eq!(got[j].to_bits(), c[j].to_bits(), "{f:?} component {j}");
            }
        }
    }
}
