//! Streaming passes over the filter shards of a database: the coefficient range and the
//! per-model coefficient histograms. Memory is independent of the number of filters.

use super::basis::Basis;
use super::divergence::Bins;
use crate::db::record::ModelRecord;
use crate::db::shard::read_header;
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

/// Values per read chunk (288 KiB: 8192 3×3 filters), small enough to stay in the L2
/// cache between the read and the kernels (measured: 2.25 MiB chunks read on a helper thread
/// cost 10 % more CPU time, mapping the shards too).
const CHUNK_FLOATS: usize = 9 << 13;

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

/// Splits the filters of a shard, fed in order in pieces of any size, into runs of one layer.
struct RunSplitter<'a> {
    layers: &'a [LayerView],
    /// Taps per filter.
    k: usize,
    /// Filter number of the next filter fed.
    id: u64,
    /// First layer that may hold it.
    li: usize,
}

impl RunSplitter<'_> {
    /// Calls `f(layer, run)` for the runs of `buf` (whole filters; a partial filter at the
    /// end is dropped); transposed layers and filters outside every layer are left out.
    fn feed(&mut self, buf: &[f32], f: &mut impl FnMut(&LayerView, &[f32])) {
        let (layers, k) = (self.layers, self.k);
        let mut rest = buf;
        while k > 0 && rest.len() >= k {
            let n = (rest.len() / k) as u64;
            let id = self.id;
            while self.li < layers.len() && id >= layers[self.li].end {
                self.li += 1;
            }
            // filters up to the next layer boundary
            let (take, layer) = match layers.get(self.li) {
                Some(l) if id >= l.start => ((l.end - id).min(n), Some(l)),
                Some(l) => ((l.start - id).min(n), None),
                None => (n, None),
            };
            let take = take.max(1);
            let (run, tail) = rest.split_at(take as usize * k);
            if let Some(l) = layer.filter(|l| !l.skip) {
                f(l, run);
            }
            self.id += take;
            rest = tail;
        }
    }
}

/// `a[i] += b[i]` for `i` in `range`, as far as both slices reach.
fn add_into<T: Copy + std::ops::AddAssign>(a: &mut [T], b: &[T], range: std::ops::Range<usize>) {
    let end = range.end.min(a.len()).min(b.len());
    let start = range.start.min(end);
    for (x, &y) in a[start..end].iter_mut().zip(&b[start..end]) {
        *x += y;
    }
}

/// Reads the filters of a shard in chunks straight into an f32 buffer (one copy, from the
/// page cache; a chunk small enough to stay in the L2 cache while it is worked on).
struct ShardChunks {
    file: std::fs::File,
    /// Filters not read yet.
    remaining: u64,
    /// Taps per filter.
    k: usize,
    buf: Vec<f32>,
}

impl ShardChunks {
    /// Opens the shard at `path`; its header must describe exactly `n` float32 filters of
    /// `kh × kw` (as `ShardReader::open` requires).
    fn open(path: &std::path::Path, n: u64, kh: usize, kw: usize) -> std::io::Result<ShardChunks> {
        // unbuffered: the chunks go straight from the file into the buffer
        let mut file = std::fs::File::open(path)?;
        let k = read_header(&mut file, path, n, kh, kw)?;
        Ok(ShardChunks {
            file,
            remaining: n,
            k,
            buf: Vec::new(),
        })
    }

    /// The next chunk of whole filters, empty at the end.
    fn next_chunk(&mut self) -> std::io::Result<&[f32]> {
        use std::io::Read;
        let per_chunk = (CHUNK_FLOATS / self.k.max(1)).max(1);
        let n = self.remaining.min(per_chunk as u64) as usize;
        let len = n * self.k;
        self.buf.resize(len, 0.0);
        let chunk = &mut self.buf[..len];
        // SAFETY: the bytes of an initialised f32 slice, viewed as u8 (alignment 1, same
        // size in bytes); every bit pattern is a valid f32, so any bytes read leave valid
        // values behind
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<u8>(), len * 4) };
        self.file.read_exact(bytes)?;
        // the shard is little-endian (a no-op on little-endian machines)
        for v in chunk.iter_mut() {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
        self.remaining -= n as u64;
        Ok(chunk)
    }
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
    let path = db.dir.join(&shard.shard);
    let io = |e| DbError::Io(path.clone(), e);
    let mut r = ShardChunks::open(&path, shard.n_filters, kernel[0], kernel[1]).map_err(io)?;
    let layers = layer_views(m, kernel);
    let mut split = RunSplitter {
        layers: &layers,
        k: kernel[0] * kernel[1],
        id: 0,
        li: 0,
    };
    loop {
        let chunk = r.next_chunk().map_err(io)?;
        if chunk.is_empty() {
            return Ok(());
        }
        split.feed(chunk, &mut f);
    }
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
    /// The same bins for the vector kernels, when every edge below the last one is
    /// `i as f64 * step + lo` bit for bit (as `Bins::new` makes them).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    vec: Option<VecBins>,
}

/// Bins whose edges the vector kernels compute instead of loading: `e[i] = i * step + lo`
/// for every `i < n` (checked against the real edges on construction).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct VecBins {
    lo: f64,
    hi: f64,
    scale: f64,
    step: f64,
    /// `n − 1`.
    last: f64,
    /// `n` (the "outside" answer).
    n: f64,
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
        let scale = n as f64 / (hi - lo);
        let step = (hi - lo) / n as f64;
        let formula = n <= MAX_FAST_BINS
            && e[..n]
                .iter()
                .enumerate()
                .all(|(i, &ei)| (i as f64 * step + lo).to_bits() == ei.to_bits());
        let vec = formula.then_some(VecBins {
            lo,
            hi,
            scale,
            step,
            last: (n - 1) as f64,
            n: n as f64,
        });
        FastBins {
            lo,
            hi,
            scale,
            n,
            edges,
            bins: b,
            vec,
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
    let mut local = vec![0u32; 9 * (h.bins + 1)];
    hist_filters9(p, fb, ffb, limit, cells, run, &mut local, h);
    add_local(cells, &local, h);
}

/// The scalar histogram kernel: counts of the non-sparse filters of `run` into `local` (per
/// component `bins + 1` slots, the last one for "outside"), everything else into `h`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn hist_filters9(
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
fn add_local(cells: [Option<usize>; 2], local: &[u32], h: &mut ModelHists) {
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

/// The 3×3 kernels on blocks of filters in structure-of-arrays form: one f64 lane per
/// filter (8 with AVX-512, 4 with AVX2), a scalar tail for the rest of a run.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{add_local, hist_filters9, range_run9, FastBins, ModelHists, Proj9, VecBins};
    use std::arch::x86_64::*;

    /// Most lanes of any vector unit.
    const MAX_LANES: usize = 8;

    /// The f64 vector operations the kernels need, for one vector unit. A value of a type
    /// that implements it proves that the CPU has that unit (see `detect`), which is what
    /// makes the intrinsics in the methods sound. Every method is one intrinsic or a few.
    pub(super) trait Simd: Copy {
        /// Filters per block (f64 lanes).
        const LANES: usize;
        /// f64 vector.
        type V: Copy;
        /// Lane mask.
        type M: Copy;
        /// Σc and Σc² of two cells, components 0..8.
        type Acc: Copy;
        fn splat(self, x: f64) -> Self::V;
        /// `even` in the even lanes, `odd` in the odd ones.
        fn alternate(self, even: f64, odd: f64) -> Self::V;
        /// Tap `a` of filter `i` in lane `i` of vector `a`: the first `9 × LANES` values of
        /// `f` read as `LANES` 3×3 filters (`None` when `f` is shorter).
        fn taps(self, f: &[f32]) -> Option<[Self::V; 9]>;
        fn add(self, a: Self::V, b: Self::V) -> Self::V;
        fn sub(self, a: Self::V, b: Self::V) -> Self::V;
        fn mul(self, a: Self::V, b: Self::V) -> Self::V;
        fn div(self, a: Self::V, b: Self::V) -> Self::V;
        /// `m ? a + b : a` per lane.
        fn add_if(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
        /// `m ? a − b : a` per lane.
        fn sub_if(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
        /// `a < b ? a : b` per lane (so `b` when either is NaN).
        fn min(self, a: Self::V, b: Self::V) -> Self::V;
        /// `a > b ? a : b` per lane (so `b` when either is NaN).
        fn max(self, a: Self::V, b: Self::V) -> Self::V;
        fn abs(self, a: Self::V) -> Self::V;
        /// Rounds toward zero.
        fn trunc(self, a: Self::V) -> Self::V;
        fn lt(self, a: Self::V, b: Self::V) -> Self::M;
        fn eq(self, a: Self::V, b: Self::V) -> Self::M;
        /// `!(a <= b)` (true when either is NaN).
        fn nle(self, a: Self::V, b: Self::V) -> Self::M;
        /// Lanes where `a` is NaN.
        fn nan(self, a: Self::V) -> Self::M;
        /// `m && a >= b` per lane.
        fn ge_and(self, m: Self::M, a: Self::V, b: Self::V) -> Self::M;
        /// `m && a <= b` per lane.
        fn le_and(self, m: Self::M, a: Self::V, b: Self::V) -> Self::M;
        fn or(self, a: Self::M, b: Self::M) -> Self::M;
        /// `m ? a : b` per lane.
        fn select(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
        /// Bit `i` set when lane `i` is set.
        fn bits(self, m: Self::M) -> u32;
        /// The lanes, in the first `LANES` slots of `out`.
        fn store(self, a: Self::V, out: &mut [f64; MAX_LANES]);
        /// The lanes truncated to i32 (values must fit), in the first `LANES` slots of `out`.
        fn store_i32(self, a: Self::V, out: &mut [i32; MAX_LANES]);
        /// Sums starting from `sum`, `sq`.
        fn acc_load(self, sum: &[[f64; 9]; 2], sq: &[[f64; 9]; 2]) -> Self::Acc;
        /// The sums of `acc`.
        fn acc_store(self, acc: &Self::Acc, sum: &mut [[f64; 9]; 2], sq: &mut [[f64; 9]; 2]);
        /// Adds the components of the kept filters of a block (bit `i` of `keep` for lane
        /// `i`), and their squares, to both cells of `acc`, filter after filter in lane
        /// order: each sum sees the same additions in the same order as in the scalar
        /// kernel.
        fn accumulate(self, c: &[Self::V; 9], keep: u32, acc: &mut Self::Acc);
    }

    /// Proof that the CPU has AVX-512 F/DQ/VL and AVX2.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(());

    impl Avx512 {
        /// `Some` on a CPU with the features.
        #[inline]
        pub(super) fn detect() -> Option<Avx512> {
            (is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx2"))
            .then_some(Avx512(()))
        }
    }

    /// Proof that the CPU has AVX2.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(());

    impl Avx2 {
        /// `Some` on a CPU with the feature.
        #[inline]
        pub(super) fn detect() -> Option<Avx2> {
            is_x86_feature_detected!("avx2").then_some(Avx2(()))
        }
    }

    /// Sums of two cells in AVX-512 registers: components 0..8 in a vector, 8 alone.
    #[derive(Clone, Copy)]
    pub(super) struct Acc512 {
        s: [__m512d; 2],
        q: [__m512d; 2],
        s8: [f64; 2],
        q8: [f64; 2],
    }

    /// Sums of two cells in AVX2 registers: components 0..4 and 4..8 in vectors, 8 alone.
    #[derive(Clone, Copy)]
    pub(super) struct Acc256 {
        s: [[__m256d; 2]; 2],
        q: [[__m256d; 2]; 2],
        s8: [f64; 2],
        q8: [f64; 2],
    }

    impl Simd for Avx512 {
        const LANES: usize = 8;
        type V = __m512d;
        type M = __mmask8;
        type Acc = Acc512;
        #[inline(always)]
        fn splat(self, x: f64) -> __m512d {
            // SAFETY (every `unsafe` block of this impl): `self` proves the CPU has
            // AVX-512 F/DQ/VL and AVX2 (`Avx512::detect`); memory accesses are checked
            // where they are made.
            unsafe { _mm512_set1_pd(x) }
        }
        #[inline(always)]
        fn alternate(self, even: f64, odd: f64) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_setr_pd(even, odd, even, odd, even, odd, even, odd) }
        }
        #[inline(always)]
        fn taps(self, f: &[f32]) -> Option<[__m512d; 9]> {
            let f = f.get(..72)?;
            // SAFETY: see `splat`; the loads read `f[9 i..9 i + 8]` for i < 8 and the
            // gather `f[9 i + 8]`: at most index 71 of a slice of 72.
            unsafe {
                let p = f.as_ptr();
                // taps 0..8 of filter i in rows[i], then an 8 × 8 transpose
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, ri) in r.iter_mut().enumerate() {
                    *ri = _mm256_loadu_ps(p.add(9 * i));
                }
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let idx = _mm256_setr_epi32(8, 17, 26, 35, 44, 53, 62, 71);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                    _mm256_i32gather_ps::<4>(p, idx),
                ];
                let mut t = [_mm512_setzero_pd(); 9];
                for (ta, &ca) in t.iter_mut().zip(&cols) {
                    *ta = _mm512_cvtps_pd(ca);
                }
                Some(t)
            }
        }
        #[inline(always)]
        fn add(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_add_pd(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_sub_pd(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_mul_pd(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_div_pd(a, b) }
        }
        #[inline(always)]
        fn add_if(self, m: __mmask8, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_mask_add_pd(a, m, a, b) }
        }
        #[inline(always)]
        fn sub_if(self, m: __mmask8, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_mask_sub_pd(a, m, a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_min_pd(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_max_pd(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_abs_pd(a) }
        }
        #[inline(always)]
        fn trunc(self, a: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        fn lt(self, a: __m512d, b: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_cmp_pd_mask::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        fn eq(self, a: __m512d, b: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(a, b) }
        }
        #[inline(always)]
        fn nle(self, a: __m512d, b: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_cmp_pd_mask::<_CMP_NLE_UQ>(a, b) }
        }
        #[inline(always)]
        fn nan(self, a: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(a, a) }
        }
        #[inline(always)]
        fn ge_and(self, m: __mmask8, a: __m512d, b: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_mask_cmp_pd_mask::<_CMP_GE_OQ>(m, a, b) }
        }
        #[inline(always)]
        fn le_and(self, m: __mmask8, a: __m512d, b: __m512d) -> __mmask8 {
            // SAFETY: see `splat`.
            unsafe { _mm512_mask_cmp_pd_mask::<_CMP_LE_OQ>(m, a, b) }
        }
        #[inline(always)]
        fn or(self, a: __mmask8, b: __mmask8) -> __mmask8 {
            a | b
        }
        #[inline(always)]
        fn select(self, m: __mmask8, a: __m512d, b: __m512d) -> __m512d {
            // SAFETY: see `splat`.
            unsafe { _mm512_mask_blend_pd(m, b, a) }
        }
        #[inline(always)]
        fn bits(self, m: __mmask8) -> u32 {
            u32::from(m)
        }
        #[inline(always)]
        fn store(self, a: __m512d, out: &mut [f64; MAX_LANES]) {
            // SAFETY: see `splat`; `out` holds 8 f64 (unaligned store).
            unsafe { _mm512_storeu_pd(out.as_mut_ptr(), a) }
        }
        #[inline(always)]
        fn store_i32(self, a: __m512d, out: &mut [i32; MAX_LANES]) {
            // SAFETY: see `splat`; `out` holds 8 i32 = 256 bits (unaligned store).
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm512_cvttpd_epi32(a)) }
        }
        #[inline(always)]
        fn acc_load(self, sum: &[[f64; 9]; 2], sq: &[[f64; 9]; 2]) -> Acc512 {
            // SAFETY: see `splat`; loads of 8 f64 from arrays of 9.
            unsafe {
                Acc512 {
                    s: [
                        _mm512_loadu_pd(sum[0].as_ptr()),
                        _mm512_loadu_pd(sum[1].as_ptr()),
                    ],
                    q: [
                        _mm512_loadu_pd(sq[0].as_ptr()),
                        _mm512_loadu_pd(sq[1].as_ptr()),
                    ],
                    s8: [sum[0][8], sum[1][8]],
                    q8: [sq[0][8], sq[1][8]],
                }
            }
        }
        #[inline(always)]
        fn acc_store(self, acc: &Acc512, sum: &mut [[f64; 9]; 2], sq: &mut [[f64; 9]; 2]) {
            for k in 0..2 {
                // SAFETY: see `splat`; stores of 8 f64 into arrays of 9.
                unsafe {
                    _mm512_storeu_pd(sum[k].as_mut_ptr(), acc.s[k]);
                    _mm512_storeu_pd(sq[k].as_mut_ptr(), acc.q[k]);
                }
                sum[k][8] = acc.s8[k];
                sq[k][8] = acc.q8[k];
            }
        }
        #[inline(always)]
        fn accumulate(self, c: &[__m512d; 9], keep: u32, acc: &mut Acc512) {
            // SAFETY: see `splat`; a store of 8 f64 into an array of 8.
            unsafe {
                // rows[i]: components 0..8 of filter i (8 × 8 transpose)
                let t0 = _mm512_unpacklo_pd(c[0], c[1]);
                let t1 = _mm512_unpackhi_pd(c[0], c[1]);
                let t2 = _mm512_unpacklo_pd(c[2], c[3]);
                let t3 = _mm512_unpackhi_pd(c[2], c[3]);
                let t4 = _mm512_unpacklo_pd(c[4], c[5]);
                let t5 = _mm512_unpackhi_pd(c[4], c[5]);
                let t6 = _mm512_unpacklo_pd(c[6], c[7]);
                let t7 = _mm512_unpackhi_pd(c[6], c[7]);
                let u0 = _mm512_shuffle_f64x2::<0x88>(t0, t2);
                let u1 = _mm512_shuffle_f64x2::<0x88>(t1, t3);
                let u2 = _mm512_shuffle_f64x2::<0xDD>(t0, t2);
                let u3 = _mm512_shuffle_f64x2::<0xDD>(t1, t3);
                let u4 = _mm512_shuffle_f64x2::<0x88>(t4, t6);
                let u5 = _mm512_shuffle_f64x2::<0x88>(t5, t7);
                let u6 = _mm512_shuffle_f64x2::<0xDD>(t4, t6);
                let u7 = _mm512_shuffle_f64x2::<0xDD>(t5, t7);
                let rows = [
                    _mm512_shuffle_f64x2::<0x88>(u0, u4),
                    _mm512_shuffle_f64x2::<0x88>(u1, u5),
                    _mm512_shuffle_f64x2::<0x88>(u2, u6),
                    _mm512_shuffle_f64x2::<0x88>(u3, u7),
                    _mm512_shuffle_f64x2::<0xDD>(u0, u4),
                    _mm512_shuffle_f64x2::<0xDD>(u1, u5),
                    _mm512_shuffle_f64x2::<0xDD>(u2, u6),
                    _mm512_shuffle_f64x2::<0xDD>(u3, u7),
                ];
                let mut c8 = [0.0; MAX_LANES];
                _mm512_storeu_pd(c8.as_mut_ptr(), c[8]);
                for (i, (&row, &v)) in rows.iter().zip(&c8).enumerate() {
                    if keep >> i & 1 == 0 {
                        continue;
                    }
                    let sq = _mm512_mul_pd(row, row);
                    let sq8 = v * v;
                    for k in 0..2 {
                        acc.s[k] = _mm512_add_pd(acc.s[k], row);
                        acc.q[k] = _mm512_add_pd(acc.q[k], sq);
                        acc.s8[k] += v;
                        acc.q8[k] += sq8;
                    }
                }
            }
        }
    }

    impl Simd for Avx2 {
        const LANES: usize = 4;
        type V = __m256d;
        type M = __m256d;
        type Acc = Acc256;
        #[inline(always)]
        fn splat(self, x: f64) -> __m256d {
            // SAFETY (every `unsafe` block of this impl): `self` proves the CPU has AVX2
            // (`Avx2::detect`); memory accesses are checked where they are made.
            unsafe { _mm256_set1_pd(x) }
        }
        #[inline(always)]
        fn alternate(self, even: f64, odd: f64) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_setr_pd(even, odd, even, odd) }
        }
        #[inline(always)]
        fn taps(self, f: &[f32]) -> Option<[__m256d; 9]> {
            let f = f.get(..36)?;
            // SAFETY: see `splat`; the loads read `f[9 i..9 i + 8]` for i < 4 and the
            // gather `f[9 i + 8]`: at most index 35 of a slice of 36.
            unsafe {
                let p = f.as_ptr();
                // taps 0..8 of filter i in r[i]; two 4 × 4 transposes at once (the 128-bit
                // halves): tap a in the low half of u[a], tap a + 4 in the high half
                let r = [
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(9)),
                    _mm256_loadu_ps(p.add(18)),
                    _mm256_loadu_ps(p.add(27)),
                ];
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let u = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                ];
                let mut t = [_mm256_setzero_pd(); 9];
                for (a, &ua) in u.iter().enumerate() {
                    t[a] = _mm256_cvtps_pd(_mm256_castps256_ps128(ua));
                    t[a + 4] = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(ua));
                }
                let idx = _mm_setr_epi32(8, 17, 26, 35);
                t[8] = _mm256_cvtps_pd(_mm_i32gather_ps::<4>(p, idx));
                Some(t)
            }
        }
        #[inline(always)]
        fn add(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_add_pd(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_sub_pd(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_mul_pd(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_div_pd(a, b) }
        }
        #[inline(always)]
        fn add_if(self, m: __m256d, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_blendv_pd(a, _mm256_add_pd(a, b), m) }
        }
        #[inline(always)]
        fn sub_if(self, m: __m256d, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_blendv_pd(a, _mm256_sub_pd(a, b), m) }
        }
        #[inline(always)]
        fn min(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_min_pd(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_max_pd(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_andnot_pd(_mm256_set1_pd(-0.0), a) }
        }
        #[inline(always)]
        fn trunc(self, a: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        fn lt(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_cmp_pd::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        fn eq(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_cmp_pd::<_CMP_EQ_OQ>(a, b) }
        }
        #[inline(always)]
        fn nle(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_cmp_pd::<_CMP_NLE_UQ>(a, b) }
        }
        #[inline(always)]
        fn nan(self, a: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_cmp_pd::<_CMP_UNORD_Q>(a, a) }
        }
        #[inline(always)]
        fn ge_and(self, m: __m256d, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_and_pd(m, _mm256_cmp_pd::<_CMP_GE_OQ>(a, b)) }
        }
        #[inline(always)]
        fn le_and(self, m: __m256d, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_and_pd(m, _mm256_cmp_pd::<_CMP_LE_OQ>(a, b)) }
        }
        #[inline(always)]
        fn or(self, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_or_pd(a, b) }
        }
        #[inline(always)]
        fn select(self, m: __m256d, a: __m256d, b: __m256d) -> __m256d {
            // SAFETY: see `splat`.
            unsafe { _mm256_blendv_pd(b, a, m) }
        }
        #[inline(always)]
        fn bits(self, m: __m256d) -> u32 {
            // SAFETY: see `splat`.
            unsafe { _mm256_movemask_pd(m) as u32 }
        }
        #[inline(always)]
        fn store(self, a: __m256d, out: &mut [f64; MAX_LANES]) {
            // SAFETY: see `splat`; `out` holds at least 4 f64 (unaligned store).
            unsafe { _mm256_storeu_pd(out.as_mut_ptr(), a) }
        }
        #[inline(always)]
        fn store_i32(self, a: __m256d, out: &mut [i32; MAX_LANES]) {
            // SAFETY: see `splat`; `out` holds at least 4 i32 = 128 bits (unaligned store).
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm256_cvttpd_epi32(a)) }
        }
        #[inline(always)]
        fn acc_load(self, sum: &[[f64; 9]; 2], sq: &[[f64; 9]; 2]) -> Acc256 {
            // SAFETY: see `splat`; loads of 4 f64 at offsets 0 and 4 of arrays of 9.
            unsafe {
                let ld = |a: &[f64; 9]| {
                    [
                        _mm256_loadu_pd(a.as_ptr()),
                        _mm256_loadu_pd(a[4..].as_ptr()),
                    ]
                };
                Acc256 {
                    s: [ld(&sum[0]), ld(&sum[1])],
                    q: [ld(&sq[0]), ld(&sq[1])],
                    s8: [sum[0][8], sum[1][8]],
                    q8: [sq[0][8], sq[1][8]],
                }
            }
        }
        #[inline(always)]
        fn acc_store(self, acc: &Acc256, sum: &mut [[f64; 9]; 2], sq: &mut [[f64; 9]; 2]) {
            for k in 0..2 {
                // SAFETY: see `splat`; stores of 4 f64 at offsets 0 and 4 of arrays of 9.
                unsafe {
                    _mm256_storeu_pd(sum[k].as_mut_ptr(), acc.s[k][0]);
                    _mm256_storeu_pd(sum[k][4..].as_mut_ptr(), acc.s[k][1]);
                    _mm256_storeu_pd(sq[k].as_mut_ptr(), acc.q[k][0]);
                    _mm256_storeu_pd(sq[k][4..].as_mut_ptr(), acc.q[k][1]);
                }
                sum[k][8] = acc.s8[k];
                sq[k][8] = acc.q8[k];
            }
        }
        #[inline(always)]
        fn accumulate(self, c: &[__m256d; 9], keep: u32, acc: &mut Acc256) {
            let lo = transpose4(self, [c[0], c[1], c[2], c[3]]);
            let hi = transpose4(self, [c[4], c[5], c[6], c[7]]);
            let mut c8 = [0.0; MAX_LANES];
            self.store(c[8], &mut c8);
            for i in 0..4 {
                if keep >> i & 1 == 0 {
                    continue;
                }
                let v = c8[i];
                let sq8 = v * v;
                // SAFETY: see `splat`.
                unsafe {
                    let (lq, hq) = (_mm256_mul_pd(lo[i], lo[i]), _mm256_mul_pd(hi[i], hi[i]));
                    for k in 0..2 {
                        acc.s[k][0] = _mm256_add_pd(acc.s[k][0], lo[i]);
                        acc.s[k][1] = _mm256_add_pd(acc.s[k][1], hi[i]);
                        acc.q[k][0] = _mm256_add_pd(acc.q[k][0], lq);
                        acc.q[k][1] = _mm256_add_pd(acc.q[k][1], hq);
                        acc.s8[k] += v;
                        acc.q8[k] += sq8;
                    }
                }
            }
        }
    }

    /// Rows of a 4 × 4 block given as columns.
    #[inline(always)]
    fn transpose4(_: Avx2, c: [__m256d; 4]) -> [__m256d; 4] {
        // SAFETY: the `Avx2` argument proves the CPU has AVX2
        unsafe {
            let t0 = _mm256_unpacklo_pd(c[0], c[1]);
            let t1 = _mm256_unpackhi_pd(c[0], c[1]);
            let t2 = _mm256_unpacklo_pd(c[2], c[3]);
            let t3 = _mm256_unpackhi_pd(c[2], c[3]);
            [
                _mm256_permute2f128_pd::<0x20>(t0, t2),
                _mm256_permute2f128_pd::<0x20>(t1, t3),
                _mm256_permute2f128_pd::<0x31>(t0, t2),
                _mm256_permute2f128_pd::<0x31>(t1, t3),
            ]
        }
    }

    /// l∞ (NaN taps ignored) and coefficients of the filters of a block, lane by lane the
    /// arithmetic of [`Proj9::coefficients`] in the same order.
    #[inline(always)]
    fn coefficients<S: Simd>(s: S, p: &Proj9, t: &[S::V; 9]) -> (S::V, [S::V; 9]) {
        let zero = s.splat(0.0);
        let mut den = zero;
        let mut nan = s.nan(t[0]);
        for &v in t {
            // `max` keeps `den` when the tap is NaN, like `f32::max`
            den = s.max(s.abs(v), den);
            nan = s.or(nan, s.nan(v));
        }
        let d = s.select(s.eq(den, zero), s.splat(1.0), den);
        let d = s.select(nan, s.splat(f64::NAN), d);
        let mut x = *t;
        for xa in &mut x {
            *xa = s.div(*xa, d);
        }
        // component after component (fewer live registers); each sum in tap order
        let mut c = [zero; 9];
        for (j, cj) in c.iter_mut().enumerate() {
            let mut acc = zero;
            for (xa, row) in x.iter().zip(&p.ct) {
                acc = s.add(acc, s.mul(*xa, s.splat(row[j])));
            }
            *cj = s.sub(acc, s.splat(p.mp[j]));
        }
        (den, c)
    }

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
    fn count_fine<S: Simd>(
        fidx: &[[i32; MAX_LANES]; 9],
        cells: &[usize],
        nf: usize,
        fine: &mut [u32],
    ) {
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

    /// Range pass (see `super::range_run9`) on blocks, the tail scalar.
    #[inline(always)]
    fn range_run9_v<S: Simd>(s: S, p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
        let blocks = run.chunks_exact(9 * S::LANES);
        let tail = blocks.remainder();
        let mut lo = [s.splat(f64::INFINITY); 9];
        let mut hi = [s.splat(f64::NEG_INFINITY); 9];
        for block in blocks {
            let Some(t) = s.taps(block) else {
                continue;
            };
            let (_, c) = coefficients(s, p, &t);
            for j in 0..9 {
                // NaN coefficients leave the bounds alone, like `f64::min`
                lo[j] = s.min(c[j], lo[j]);
                hi[j] = s.max(c[j], hi[j]);
            }
        }
        let mut buf = [0.0; MAX_LANES];
        for j in 0..9 {
            s.store(lo[j], &mut buf);
            l9[j] = buf[..S::LANES].iter().fold(l9[j], |a, &b| a.min(b));
            s.store(hi[j], &mut buf);
            h9[j] = buf[..S::LANES].iter().fold(h9[j], |a, &b| a.max(b));
        }
        range_run9(p, tail, l9, h9);
    }

    /// Histogram pass (see `super::hist_run9`) on blocks, the tail scalar.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn hist_run9_v<S: Simd>(
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

    /// The entry points of one vector unit: safe, since the token proves the CPU has it.
    macro_rules! kernels {
        ($m:ident, $t:ty, $feat:literal) => {
            pub(in super::super) mod $m {
                use super::super::{FastBins, ModelHists, Proj9};
                use super::{hist_run9_v, range_run9_v, $t};

                #[target_feature(enable = $feat)]
                fn range_inner(
                    t: $t,
                    p: &Proj9,
                    run: &[f32],
                    l9: &mut [f64; 9],
                    h9: &mut [f64; 9],
                ) {
                    range_run9_v(t, p, run, l9, h9)
                }

                /// `super::super::range_run9` on this vector unit.
                pub(in super::super::super) fn range_run9(
                    t: $t,
                    p: &Proj9,
                    run: &[f32],
                    l9: &mut [f64; 9],
                    h9: &mut [f64; 9],
                ) {
                    // SAFETY: `t` proves the CPU has the features `range_inner` is compiled for
                    unsafe { range_inner(t, p, run, l9, h9) }
                }

                #[target_feature(enable = $feat)]
                #[allow(clippy::too_many_arguments)]
                fn hist_inner(
                    t: $t,
                    p: &Proj9,
                    fb: &FastBins,
                    ffb: Option<&FastBins>,
                    limit: f64,
                    cells: [Option<usize>; 2],
                    run: &[f32],
                    h: &mut ModelHists,
                ) {
                    hist_run9_v(t, p, fb, ffb, limit, cells, run, h)
                }

                /// `super::super::hist_run9` on this vector unit.
                #[allow(clippy::too_many_arguments)]
                pub(in super::super::super) fn hist_run9(
                    t: $t,
                    p: &Proj9,
                    fb: &FastBins,
                    ffb: Option<&FastBins>,
                    limit: f64,
                    cells: [Option<usize>; 2],
                    run: &[f32],
                    h: &mut ModelHists,
                ) {
                    // SAFETY: `t` proves the CPU has the features `hist_inner` is compiled for
                    unsafe { hist_inner(t, p, fb, ffb, limit, cells, run, h) }
                }
            }
        };
    }
    kernels!(avx512, Avx512, "avx512f,avx512dq,avx512vl,avx2");
    kernels!(avx2, Avx2, "avx2");
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

    /// A vector unit of this machine, or the portable kernels.
    #[derive(Clone, Copy, Debug)]
    enum Unit {
        Scalar,
        #[cfg(target_arch = "x86_64")]
        Avx2,
        #[cfg(target_arch = "x86_64")]
        Avx512,
    }

    /// The vector units of this machine (each is checked against `Unit::Scalar`).
    fn vector_units() -> Vec<Unit> {
        #[allow(unused_mut)]
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if simd::Avx2::detect().is_some() {
                v.push(Unit::Avx2);
            } else {
                eprintln!("no AVX2 on this machine: its kernels are not checked");
            }
            if simd::Avx512::detect().is_some() {
                v.push(Unit::Avx512);
            } else {
                eprintln!("no AVX-512 on this machine: its kernels are not checked");
            }
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn hist_on(
        u: Unit,
        p: &Proj9,
        fb: &FastBins,
        ffb: Option<&FastBins>,
        limit: f64,
        cells: [Option<usize>; 2],
        run: &[f32],
        h: &mut ModelHists,
    ) {
        match u {
            Unit::Scalar => hist_run9(p, fb, ffb, limit, cells, run, h),
            #[cfg(target_arch = "x86_64")]
            Unit::Avx2 => simd::avx2::hist_run9(
                simd::Avx2::detect().unwrap(),
                p,
                fb,
                ffb,
                limit,
                cells,
                run,
                h,
            ),
            #[cfg(target_arch = "x86_64")]
            Unit::Avx512 => simd::avx512::hist_run9(
                simd::Avx512::detect().unwrap(),
                p,
                fb,
                ffb,
                limit,
                cells,
                run,
                h,
            ),
        }
    }

    fn range_on(u: Unit, p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
        match u {
            Unit::Scalar => range_run9(p, run, l9, h9),
            #[cfg(target_arch = "x86_64")]
            Unit::Avx2 => simd::avx2::range_run9(simd::Avx2::detect().unwrap(), p, run, l9, h9),
            #[cfg(target_arch = "x86_64")]
            Unit::Avx512 => {
                simd::avx512::range_run9(simd::Avx512::detect().unwrap(), p, run, l9, h9)
            }
        }
    }

    /// Bit-identical floats (any NaN equals any NaN: NaN payloads are not part of the result).
    fn same_f64(what: &str, a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what}[{i}]: {x:e} vs {y:e}"
            );
        }
    }

    fn same_hists(what: &str, a: &ModelHists, b: &ModelHists) {
        assert_eq!(a.n, b.n, "{what}: n");
        assert_eq!(a.counts, b.counts, "{what}: counts");
        assert_eq!(a.fine, b.fine, "{what}: fine counts");
        same_f64(&format!("{what}: Σc"), &a.sum, &b.sum);
        same_f64(&format!("{what}: Σc²"), &a.sum_sq, &b.sum_sq);
    }

    /// A run of filters of one layer, its sparse limit and its cells.
    type Run<'a> = (&'a [f32], f64, [Option<usize>; 2]);

    /// Feeds `runs` (with their limits and cells) to every unit and checks that the vector
    /// units give exactly the scalar kernels' histograms, sums and ranges.
    fn check_units(what: &str, p: &Proj9, bins: &Bins, fine: Option<&Bins>, runs: &[Run]) {
        let fb = FastBins::new(bins);
        let ffb = fine.map(FastBins::new);
        let fresh = || ModelHists::new(9, bins.len(), fine.map_or(0, |f| f.len()));
        let mut want = fresh();
        let (mut wl, mut wh) = ([f64::INFINITY; 9], [f64::NEG_INFINITY; 9]);
        for &(run, limit, cells) in runs {
            hist_on(
                Unit::Scalar,
                p,
                &fb,
                ffb.as_ref(),
                limit,
                cells,
                run,
                &mut want,
            );
            range_on(Unit::Scalar, p, run, &mut wl, &mut wh);
        }
        for u in vector_units() {
            let mut got = fresh();
            let (mut gl, mut gh) = ([f64::INFINITY; 9], [f64::NEG_INFINITY; 9]);
            for &(run, limit, cells) in runs {
                hist_on(u, p, &fb, ffb.as_ref(), limit, cells, run, &mut got);
                range_on(u, p, run, &mut gl, &mut gh);
            }
            same_hists(&format!("{what} {u:?}"), &want, &got);
            same_f64(&format!("{what} {u:?} min"), &wl, &gl);
            same_f64(&format!("{what} {u:?} max"), &wh, &gh);
        }
    }

    /// A basis fitted to pseudo-random filters, as the study fits one.
    fn fitted_projection() -> Proj9 {
        let v = values(7, 9 * 500);
        let mut m = Moments::new(9);
        let mut x = [0.0; 9];
        for f in v.chunks_exact(9) {
            let f32s: Vec<f32> = f.iter().map(|&a| a as f32).collect();
            scale_filter(&f32s, &mut x);
            m.add(&x);
        }
        let basis = Basis::fit(&m).unwrap();
        Proj9::new(&basis, &basis.mean_projection()).unwrap()
    }

    /// The identity basis with a zero mean: the coefficients are the scaled taps, exactly.
    fn identity_projection() -> Proj9 {
        Proj9 {
            ct: std::array::from_fn(|a| std::array::from_fn(|j| f64::from(u8::from(a == j)))),
            mp: [0.0; 9],
        }
    }

    /// Pseudo-random 3×3 filters: dense ones of varied scale, sparse (tiny) ones, zero ones.
    fn random_filters(seed: u64, n: usize) -> Vec<f32> {
        let v = values(seed, n * 10);
        let mut out = Vec::with_capacity(n * 9);
        for f in v.chunks_exact(10) {
            let kind = ((f[9] + 1.0) * 8.0) as usize;
            let scale = match kind {
                0 => 0.0,
                1 | 2 => 1e-4,
                _ => 0.05 * (kind as f64),
            };
            out.extend(f[..9].iter().map(|&a| (a * scale) as f32));
        }
        out
    }

    /// Every run length 0..40 (so every tail length of 8- and 4-lane blocks), with sparse
    /// filters mixed in, on bins narrower than the coefficients (some fall outside; the
    /// bins' ends are coefficients of the runs, so some fall exactly on them).
    #[test]
    fn vector_kernels_match_scalar_on_random_runs() {
        for (name, p) in [
            ("fitted", fitted_projection()),
            ("identity", identity_projection()),
        ] {
            let data = random_filters(11, (0..40).sum::<usize>() + 40);
            let mut runs = Vec::new();
            let mut at = 0;
            for len in 0..40 {
                // layers alternate between two depth cells and none
                let cells = [Some(0), [Some(3), Some(7), None][len % 3]];
                runs.push((&data[at * 9..(at + len) * 9], 1e-3, cells));
                at += len;
            }
            let mut cs: Vec<f64> = data
                .chunks_exact(9)
                .flat_map(|f| p.coefficients(f.try_into().unwrap()).1)
                .collect();
            cs.sort_by(f64::total_cmp);
            let (lo, hi) = (cs[cs.len() / 20], cs[cs.len() - cs.len() / 20]);
            for n in [1, 7, 70] {
                let bins = Bins::new(lo, hi, n);
                check_units(&format!("{name} {n} bins"), &p, &bins, None, &runs);
            }
            let bins = Bins::new(lo, hi, 70);
            let fine = Bins::new(lo, hi, 2048);
            check_units(&format!("{name} fine"), &p, &bins, Some(&fine), &runs);
            // one run of everything, all filters kept, none kept
            let all = [(&data[..], 0.0, [Some(0), Some(5)])];
            check_units(&format!("{name} all"), &p, &bins, Some(&fine), &all);
            let none = [(&data[..], 1e9, [Some(0), Some(5)])];
            check_units(&format!("{name} none kept"), &p, &bins, None, &none);
            // a single cell, and the same cell twice (left to the scalar kernel)
            let one = [(&data[..], 1e-3, [Some(2), None])];
            check_units(&format!("{name} one cell"), &p, &bins, None, &one);
            let twice = [(&data[..], 1e-3, [Some(4), Some(4)])];
            check_units(&format!("{name} same cell twice"), &p, &bins, None, &twice);
        }
    }

    /// With the identity basis the coefficients are the taps: filters with taps exactly on
    /// the edges of 64 bins over [-1, 1] (and one float either side of them).
    #[test]
    fn vector_kernels_match_scalar_on_bin_edges() {
        let p = identity_projection();
        let bins = Bins::new(-1.0, 1.0, 64);
        let fine = Bins::new(-1.0, 1.0, 2048);
        let mut taps: Vec<f32> = Vec::new();
        for &e in bins.edges() {
            let e = e as f32;
            taps.extend([e, e.next_up(), e.next_down()]);
        }
        taps.extend([-1.5, 1.5, 0.0, -0.0]);
        // filters whose largest |tap| is 1 (so the scaled taps are the taps)
        let mut data = Vec::new();
        for (i, w) in taps.chunks(8).enumerate() {
            let mut f = [0.0f32; 9];
            f[..w.len()].copy_from_slice(w);
            f[8] = if i % 2 == 0 { 1.0 } else { -1.0 };
            let big = f[..8].iter().any(|v| v.abs() > 1.0);
            if !big {
                data.extend_from_slice(&f);
            }
            // the same taps at other positions
            f.rotate_left(3);
            if !big {
                data.extend_from_slice(&f);
            }
        }
        assert!(data.len() / 9 > 40);
        for start in 0..9 {
            let runs = [(&data[start * 9..], 0.5, [Some(0), Some(1)])];
            check_units("edges", &p, &bins, Some(&fine), &runs);
        }
    }

    /// NaN and infinite taps (never stored by a database) give the scalar kernels' answers
    /// too, and no out-of-bounds access.
    #[test]
    fn vector_kernels_match_scalar_on_nan_and_inf() {
        let p = fitted_projection();
        let mut data = random_filters(5, 64);
        for (i, v) in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
        ]
        .into_iter()
        .enumerate()
        {
            let len = data.len();
            data[i * 37 % len] = v;
            data[(i * 53 + 200) % len] = v;
        }
        let bins = Bins::new(-2.0, 2.0, 70);
        let fine = Bins::new(-2.0, 2.0, 2048);
        let runs = [(&data[..], 1e-3, [Some(0), Some(2)])];
        check_units("nan/inf", &p, &bins, Some(&fine), &runs);
        let runs = [(&data[..], f64::NAN, [Some(0), Some(2)])];
        check_units("nan limit", &p, &bins, None, &runs);
    }

    /// Edges that do not follow `Bins::new`'s rule (a range too narrow for a non-zero step)
    /// leave the histogram to the scalar kernel, with the same result.
    #[test]
    fn bins_without_the_edge_rule_fall_back_to_scalar() {
        // (hi − lo) / 70 is 0: `Bins::new` spaces the edges by another rule
        let bins = Bins::new(0.0, f64::from_bits(1), 70);
        let fb = FastBins::new(&bins);
        assert!(fb.vec.is_none());
        let p = fitted_projection();
        let data = random_filters(3, 50);
        check_units(
            "no rule",
            &p,
            &bins,
            None,
            &[(&data[..], 1e-3, [Some(0), Some(1)])],
        );
        let ok = Bins::new(-2.5, 2.4, 70);
        assert!(FastBins::new(&ok).vec.is_some());
    }

    /// Sparse limit, cells and first filter of a run.
    type LayerRun = (f64, [Option<usize>; 2], u64);

    /// Every model of a database built from the repository's fixtures: the vector kernels
    /// give exactly the scalar kernels' results run by run, and the chunked reader yields
    /// the shard's filters.
    #[test]
    fn vector_kernels_match_scalar_on_the_fixture_database() {
        use crate::db::build::{build, BuildOptions};
        let zoo = convlens_testdata::fixture("zoo/cifar10-mini");
        let dir = std::env::temp_dir().join(format!("convlens-stream-simd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = BuildOptions {
            meta: Some(zoo.join("meta.csv")),
            formats: vec!["safetensors".into()],
            ..Default::default()
        };
        build(&zoo, &dir, &opts, &|_, _, _| {}).unwrap();
        let db = Db::open(&dir).unwrap();
        assert!(db.models.len() >= 4, "{} models", db.models.len());
        // a basis of all the stored filters, as the study fits one
        let mut m = Moments::new(9);
        let mut x = [0.0; 9];
        for model in &db.models {
            for_each_filter(&db, model, [3, 3], |_, f, sparse| {
                if !sparse {
                    scale_filter(f, &mut x);
                    m.add(&x);
                }
            })
            .unwrap();
        }
        let basis = Basis::fit(&m).unwrap();
        let all: Vec<usize> = (0..db.models.len()).collect();
        let (lo, hi) = coefficient_range(&db, &all, [3, 3], &basis)
            .unwrap()
            .unwrap();
        let p = Proj9::new(&basis, &basis.mean_projection()).unwrap();
        let bins = Bins::new(lo, hi, 70);
        let fine = Bins::new(lo, hi, 2048);
        let mut checked = 0;
        for model in &db.models {
            let Some(shard) = model.kernel([3, 3]) else {
                continue;
            };
            // the runs, as the passes see them
            let mut runs: Vec<(Vec<f32>, LayerRun)> = Vec::new();
            let mut at = 0u64;
            for_each_run(&db, model, [3, 3], |l, run| {
                // where the run starts: the first filter of its layer at or after `at`
                let start = at.max(l.start);
                runs.push((run.to_vec(), (l.limit, [Some(0), l.cell], start)));
                at = start + (run.len() / 9) as u64;
            })
            .unwrap();
            // the runs hold exactly the shard's filters of their layers
            let path = db.dir.join(&shard.shard);
            let whole = crate::db::shard::read_filters(
                &path,
                shard.n_filters,
                3,
                3,
                0,
                shard.n_filters as usize,
            )
            .unwrap();
            let mut n_in_layers = 0;
            for l in layer_views(model, [3, 3]).iter().filter(|l| !l.skip) {
                n_in_layers += l.end - l.start;
            }
            let n_runs: u64 = runs.iter().map(|r| (r.0.len() / 9) as u64).sum();
            assert_eq!(n_runs, n_in_layers, "{}: filters in runs", model.name);
            for (run, (_, _, start)) in &runs {
                let s = *start as usize * 9;
                assert!(
                    whole[s..s + run.len()] == run[..],
                    "{}: run at {start}",
                    model.name
                );
            }
            let views: Vec<Run> = runs.iter().map(|(r, l)| (&r[..], l.0, l.1)).collect();
            check_units(&model.name, &p, &bins, Some(&fine), &views);
            checked += 1;
        }
        assert!(checked >= 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The chunked reader refuses a shard whose header does not describe the expected
    /// filters, or that is cut short, and reads one that spans several chunks.
    #[test]
    fn shard_chunks_check_the_header_and_the_length() {
        use crate::db::shard::write_npy_f32;
        let dir = std::env::temp_dir().join(format!("convlens-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.npy");
        let n = CHUNK_FLOATS / 9 * 2 + 5;
        let data: Vec<f32> = (0..n * 9).map(|i| i as f32 * 0.25 - 3.0).collect();
        write_npy_f32(&p, &[n, 3, 3], &data).unwrap();
        let mut r = ShardChunks::open(&p, n as u64, 3, 3).unwrap();
        let mut got = Vec::new();
        let mut chunks = 0;
        loop {
            let c = r.next_chunk().unwrap();
            if c.is_empty() {
                break;
            }
            assert!(c.len() <= CHUNK_FLOATS && c.len().is_multiple_of(9));
            got.extend_from_slice(c);
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert!(got == data);
        // another filter count or kernel size in the header
        let e = ShardChunks::open(&p, n as u64 + 1, 3, 3).err().unwrap();
        assert!(
            e.to_string().contains("shard header does not describe"),
            "{e}"
        );
        assert!(ShardChunks::open(&p, n as u64, 1, 9).is_err());
        // cut short: the header promises more filters than the file holds
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let mut r = ShardChunks::open(&p, n as u64, 3, 3).unwrap();
        let mut err = None;
        for _ in 0..4 {
            match r.next_chunk() {
                Ok([]) => break,
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
        // not even a header
        std::fs::write(&p, b"\x93NUMPY").unwrap();
        assert!(ShardChunks::open(&p, n as u64, 3, 3).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
