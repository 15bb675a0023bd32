//! One pass over a layer's filters for the three filter sets of the variance entropies: the
//! paper's l∞-scaled non-sparse filters (selection 0), torchconvquality's raw filters (1) and
//! its raw non-sparse filters (2).
//!
//! Per selection the pass accumulates, in `f64`, the *shifted* sums `Σ(x − c)` and
//! `Σ(x − c)(x − c)ᵀ` around a fixed shift vector `c`; the centred scatter is then
//! `S_c − n·(m − c)(m − c)ᵀ` with `m − c = Σ(x − c)/n`, and the uncentred sums of selection 0
//! (the PCA basis statistics) are `Σx = Σ(x − c) + n·c`,
//! `Σxxᵀ = S_c + c·Σ(x − c)ᵀ + Σ(x − c)·cᵀ + n·ccᵀ`. The rounding of these few terms is of the
//! order of that of summing the products directly: on the fixture models the result is within
//! 2e-14 of `sqrt(Σx_a² Σx_b²)` of the db build's direct sums; element by element (entries that
//! cancel included) within 1.7e-12 relative of exact sums, the direct sums within 2.6e-12.
//!
//! **Shift.** `c[t]` is the lower median of tap `t` over the first (at most [`SHIFT_ROWS`])
//! selected filters, so it is close to the mean (the cancellation in `S_c − n(m−c)(m−c)ᵀ` costs
//! about `|m − c|² / σ²` ulps, small even for a large common offset) *and* it is one of the
//! selected values of its column. Hence a column is constant over the selection iff every
//! `x[t] − c[t]` is exactly 0 iff the shifted diagonal `S_c[t][t]` is exactly 0 (squares of
//! differences of these values never underflow to 0). For the raw selections (1 and 2, the
//! only ones whose zero columns are used: torchconvquality's rules) such a column is what the
//! oracle sees as an exactly zero centred column: for `f32` values, `n` equal values sum exactly in `f64`
//! (`n < 2^29`), so numpy's mean is that value. Its scatter row and column are set to 0 and it
//! is counted in `zero_cols`. Selections 1 and 2 share one shift (taken from selection 2's
//! filters, a subset of selection 1's) and one product per pair of taps.
//!
//! **Scaling.** A scaled tap is `x / den` (`den` = the filter's l∞ norm; 1 for a zero filter,
//! NaN with a NaN tap), computed as `q = x·r`, `r = 1/den`, corrected once with fused
//! multiply-adds (`q + r·(x − q·den)`, Markstein): the correctly rounded quotient, i.e. the
//! value [`super::scale_filter`] writes (up to the sign of a zero, which no sum sees), without
//! a division per tap.
//!
//! **Order.** Filters are split into fixed chunks processed in parallel and summed in chunk
//! order, so results are bit-identical for any number of threads. 3×3 filters go through a
//! vector kernel (8 filters per lane group: AVX-512, AVX2 or portable code, all with the same
//! per-lane operations, so the same bits); other kernel sizes through a scalar loop.

use rayon::prelude::*;
use std::ops::Range;

use super::norms::FilterStats;
use super::variance_entropy::Moments as Centred;
use crate::numeric::Moments as Uncentred;

/// Filters per parallel work item of the 3×3 kernel (a multiple of [`BLOCK`]). Fixed, so that
/// partial sums are always combined in the same order.
const CHUNK9: usize = 2048;

/// 3×3 chunks summed in parallel at a time (their partial sums, 270 values each, are then
/// added in chunk order: the grouping does not change the result).
const CHUNK9_GROUP: usize = 256;

/// Filters transposed at once by the 3×3 kernel: 8 lane groups of 8.
const BLOCK: usize = 64;

/// Number of leading selected filters whose per-tap median is the shift.
const SHIFT_ROWS: usize = 256;

/// Largest number of partial-sum values (over all chunks of a group) held at once by the
/// generic kernel; bounds memory for long filters.
const GROUP_VALUES: usize = 1 << 21;

/// A layer's filters with what the selections need (all slices hold `n` entries, `w` holds
/// `n * k` values).
pub(crate) struct Layer<'a> {
    /// The filters, `k` taps each.
    pub w: &'a [f32],
    /// Number of filters.
    pub n: usize,
    /// Taps per filter.
    pub k: usize,
    /// Per-filter maxima (l∞ norms).
    pub stats: &'a FilterStats,
    /// Paper sparsity per filter (selection 0 is the complement).
    pub paper_sparse: &'a [bool],
    /// torchconvquality sparsity per filter (selection 2 is the complement).
    pub tcq_sparse: &'a [bool],
    /// Whether selection 2 is computed (otherwise it equals selection 1).
    pub clean: bool,
}

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

/// The l∞ divisor of a filter as pca.ipynb `scale()` uses it: NaN with a NaN tap, 1 for a zero
/// filter.
#[inline(always)]
fn divisor(max_abs: f32, has_nan: bool) -> f64 {
    if has_nan {
        f64::NAN
    } else if max_abs == 0.0 {
        1.0
    } else {
        f64::from(max_abs)
    }
}

/// `x / den` given `r = 1 / den` (see the module documentation).
#[inline(always)]
fn scaled(x: f64, den: f64, r: f64) -> f64 {
    let q = x * r;
    let e = (-q).mul_add(den, x);
    e.mul_add(r, q)
}

/// Lower median of `v` (total order), 0 when empty.
fn lower_median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// Per-tap lower medians of the first [`SHIFT_ROWS`] filters among `rows` (as `value` sees
/// tap `t` of filter `i`).
fn shift_of(
    k: usize,
    rows: impl Iterator<Item = usize>,
    value: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let picked: Vec<usize> = rows.take(SHIFT_ROWS).collect();
    let mut col = Vec::with_capacity(picked.len());
    (0..k)
        .map(|t| {
            col.clear();
            col.extend(picked.iter().map(|&i| value(i, t)));
            lower_median(&mut col)
        })
        .collect()
}

/// Shifted sums of the selections of `lay`: selections 0 and 1, and 2 when `lay.clean`.
pub(crate) fn layer_sums(lay: &Layer) -> Vec<Shifted> {
    let (k, n) = (lay.k, lay.n);
    let stats = lay.stats;
    let den = |i: usize| divisor(stats.max_abs[i], stats.has_nan[i]);
    let c0 = shift_of(k, (0..n).filter(|&i| !lay.paper_sparse[i]), |i, t| {
        let d = den(i);
        scaled(f64::from(lay.w[i * k + t]), d, 1.0 / d)
    });
    let n0 = lay.paper_sparse.iter().filter(|&&s| !s).count();
    let n2 = lay.tcq_sparse.iter().filter(|&&s| !s).count();
    let raw = |i: usize, t: usize| f64::from(lay.w[i * k + t]);
    let c1 = if lay.clean && n2 > 0 {
        shift_of(k, (0..n).filter(|&i| !lay.tcq_sparse[i]), raw)
    } else {
        shift_of(k, 0..n, raw)
    };
    let sels = if lay.clean { 3 } else { 2 };
    let level = Level::detect();
    let total = if k == 9 {
        let c0: [f64; 9] = std::array::from_fn(|t| c0[t]);
        let c1: [f64; 9] = std::array::from_fn(|t| c1[t]);
        run_chunks(n, CHUNK9, CHUNK9_GROUP, sels, 9, |rows| {
            level.chunk9(lay, &c0, &c1, rows)
        })
    } else {
        let kk = k.max(1);
        let rows = (CHUNK9 * 9 / kk).max(64);
        let group = (GROUP_VALUES / (sels * (k * k + k)).max(1)).max(1);
        run_chunks(n, rows, group, sels, k, |rows| {
            level.chunk_generic(lay, &c0, &c1, rows)
        })
    };
    let counts = [n0, n, n2];
    let shifts = [c0, c1.clone(), c1];
    (0..sels)
        .map(|s| {
            let mut scatter = total.s[s * k * k..(s + 1) * k * k].to_vec();
            for a in 0..k {
                for b in 0..a {
                    scatter[a * k + b] = scatter[b * k + a];
                }
            }
            Shifted {
                n: counts[s],
                k,
                shift: shifts[s].clone(),
                sum: total.t[s * k..(s + 1) * k].to_vec(),
                scatter,
            }
        })
        .collect()
}

/// Partial sums of some filters: per selection, `Σd` (`t`, `k` values each) and the upper
/// triangle of `Σddᵀ` (`s`, `k × k` row-major each; the lower triangle is unused).
struct Sums {
    s: Vec<f64>,
    t: Vec<f64>,
}

impl Sums {
    fn new(sels: usize, k: usize) -> Sums {
        Sums {
            s: vec![0.0; sels * k * k],
            t: vec![0.0; sels * k],
        }
    }

    fn add(&mut self, o: &Sums) {
        for (a, b) in self.s.iter_mut().zip(&o.s) {
            *a += b;
        }
        for (a, b) in self.t.iter_mut().zip(&o.t) {
            *a += b;
        }
    }
}

/// Runs `chunk` on consecutive ranges of `rows` filters (in parallel, `group` ranges at a time)
/// and adds the results in range order.
fn run_chunks<F>(n: usize, rows: usize, group: usize, sels: usize, k: usize, chunk: F) -> Sums
where
    F: Fn(Range<usize>) -> Sums + Sync,
{
    let n_chunks = n.div_ceil(rows);
    let mut total = Sums::new(sels, k);
    for g0 in (0..n_chunks).step_by(group) {
        let parts: Vec<Sums> = (g0..n_chunks.min(g0 + group))
            .into_par_iter()
            .map(|c| chunk(c * rows..n.min((c + 1) * rows)))
            .collect();
        for p in &parts {
            total.add(p);
        }
    }
    total
}

/// The instruction set the kernels are compiled for (the same results on each).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("fma") {
                if is_x86_feature_detected!("avx512f") {
                    return Level::Avx512;
                }
                if is_x86_feature_detected!("avx2") {
                    return Level::Avx2;
                }
            }
        }
        Level::Portable
    }

    fn chunk9(self, lay: &Layer, c0: &[f64; 9], c1: &[f64; 9], rows: Range<usize>) -> Sums {
        match (self, lay.clean) {
            // SAFETY: the portable lanes need no CPU feature.
            (Level::Portable, false) => unsafe {
                chunk9::<Portable, false, 15, 9>(lay, c0, c1, rows)
            },
            // SAFETY: as above.
            (Level::Portable, true) => unsafe {
                chunk9::<Portable, true, 15, 9>(lay, c0, c1, rows)
            },
            // SAFETY (all x86 arms): `detect` found the features.
            #[cfg(target_arch = "x86_64")]
            (Level::Avx2, false) => unsafe { chunk9_avx2::<false>(lay, c0, c1, rows) },
            #[cfg(target_arch = "x86_64")]
            (Level::Avx2, true) => unsafe { chunk9_avx2::<true>(lay, c0, c1, rows) },
            #[cfg(target_arch = "x86_64")]
            (Level::Avx512, false) => unsafe { chunk9_avx512::<false>(lay, c0, c1, rows) },
            #[cfg(target_arch = "x86_64")]
            (Level::Avx512, true) => unsafe { chunk9_avx512::<true>(lay, c0, c1, rows) },
        }
    }

    fn chunk_generic(self, lay: &Layer, c0: &[f64], c1: &[f64], rows: Range<usize>) -> Sums {
        match self {
            Level::Portable => chunk_generic(lay, c0, c1, rows),
            // SAFETY: `detect` found the features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { chunk_generic_avx2(lay, c0, c1, rows) },
            // SAFETY: `detect` found the features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { chunk_generic_avx512(lay, c0, c1, rows) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk9_avx512<const CLEAN: bool>(
    lay: &Layer,
    c0: &[f64; 9],
    c1: &[f64; 9],
    rows: Range<usize>,
) -> Sums {
    // SAFETY: compiled with, and (caller's contract) running on, AVX-512F and FMA.
    unsafe { chunk9::<x86::Z, CLEAN, 9, 9>(lay, c0, c1, rows) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk9_avx2<const CLEAN: bool>(
    lay: &Layer,
    c0: &[f64; 9],
    c1: &[f64; 9],
    rows: Range<usize>,
) -> Sums {
    // SAFETY: compiled with, and (caller's contract) running on, AVX2 and FMA.
    unsafe { chunk9::<x86::Y, CLEAN, 5, 3>(lay, c0, c1, rows) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_generic_avx512(lay: &Layer, c0: &[f64], c1: &[f64], rows: Range<usize>) -> Sums {
    chunk_generic(lay, c0, c1, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_generic_avx2(lay: &Layer, c0: &[f64], c1: &[f64], rows: Range<usize>) -> Sums {
    chunk_generic(lay, c0, c1, rows)
}

/// Sums of the filters `rows`, any `k`: one filter at a time. Selection 0 adds `d·d` with fused
/// multiply-adds; selections 1 and 2 add the same rounded product `d·d`.
#[inline(always)]
fn chunk_generic(lay: &Layer, c0: &[f64], c1: &[f64], rows: Range<usize>) -> Sums {
    let k = lay.k;
    let sels = if lay.clean { 3 } else { 2 };
    let mut out = Sums::new(sels, k);
    let (s0, rest) = out.s.split_at_mut(k * k);
    let (s1, s2) = rest.split_at_mut(k * k);
    let (t0, rest) = out.t.split_at_mut(k);
    let (t1, t2) = rest.split_at_mut(k);
    let mut d0 = vec![0f64; k];
    let mut d1 = vec![0f64; k];
    for i in rows {
        let f = &lay.w[i * k..(i + 1) * k];
        if !lay.paper_sparse[i] {
            let den = divisor(lay.stats.max_abs[i], lay.stats.has_nan[i]);
            let r = 1.0 / den;
            for ((d, &x), &c) in d0.iter_mut().zip(f).zip(c0) {
                *d = scaled(f64::from(x), den, r) - c;
            }
            for a in 0..k {
                t0[a] += d0[a];
                let da = d0[a];
                for (s, &db) in s0[a * k + a..(a + 1) * k].iter_mut().zip(&d0[a..]) {
                    *s = da.mul_add(db, *s);
                }
            }
        }
        for ((d, &x), &c) in d1.iter_mut().zip(f).zip(c1) {
            *d = f64::from(x) - c;
        }
        let second = lay.clean && !lay.tcq_sparse[i];
        for a in 0..k {
            let da = d1[a];
            t1[a] += da;
            let row = a * k + a..(a + 1) * k;
            if second {
                t2[a] += da;
                for ((s, u), &db) in s1[row.clone()]
                    .iter_mut()
                    .zip(s2[row].iter_mut())
                    .zip(&d1[a..])
                {
                    let p = da * db;
                    *s += p;
                    *u += p;
                }
            } else {
                for (s, &db) in s1[row].iter_mut().zip(&d1[a..]) {
                    *s += da * db;
                }
            }
        }
    }
    out
}

/// Eight `f64` lanes (one per filter) with the operations of the 3×3 kernel; every
/// implementation computes each lane exactly as the portable one.
///
/// # Safety
/// An implementation may use instructions the CPU lacks (`x86::Z`: AVX-512F and FMA;
/// `x86::Y`: AVX2 and FMA). Its methods may only run where those are available: only through
/// [`chunk9`], whose callers guarantee it.
unsafe trait Lane: Copy {
    /// A per-lane selection.
    type Mask: Copy;
    fn zero() -> Self;
    fn splat(x: f64) -> Self;
    /// Tap `t` of 8 filters of 9 taps (`f[9 * l + t]` in lane `l`) converted to `f64`, for
    /// `t = 0..9`.
    fn gather9(f: &[f32; 72]) -> [Self; 9];
    fn load(x: &[f64; 8]) -> Self;
    /// [`divisor`] of 8 filters given their maxima and their NaN flags as bits.
    fn divisors(max_abs: &[f32; 8], nan: u8) -> Self;
    fn to_array(self) -> [f64; 8];
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// `self * b + c`, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `c - self * b`, rounded once.
    fn neg_mul_add(self, b: Self, c: Self) -> Self;
    /// Lane `l` selected iff bit `l` of `bits` is set.
    fn mask(bits: u8) -> Self::Mask;
    /// `x` in the selected lanes, +0 elsewhere.
    fn select_zero(m: Self::Mask, x: Self) -> Self;
    /// `self + x` in the selected lanes, `self` elsewhere.
    fn add_masked(self, m: Self::Mask, x: Self) -> Self;
}

/// Portable lanes. (Plain loops rather than closures throughout this file's lane code, so
/// that everything inlines into the callers compiled for the instruction set.)
#[derive(Clone, Copy)]
struct Portable([f64; 8]);

/// `Portable(r)` with `r[l] = $e` for every lane `l`.
macro_rules! lanes {
    ($l:ident => $e:expr) => {{
        let mut r = [0f64; 8];
        for ($l, o) in r.iter_mut().enumerate() {
            *o = $e;
        }
        Portable(r)
    }};
}

// SAFETY: plain Rust, no CPU feature needed.
unsafe impl Lane for Portable {
    type Mask = u8;
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    fn splat(x: f64) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    fn gather9(f: &[f32; 72]) -> [Self; 9] {
        let mut out = [Portable([0.0; 8]); 9];
        for (t, o) in out.iter_mut().enumerate() {
            *o = lanes!(l => f64::from(f[9 * l + t]));
        }
        out
    }
    #[inline(always)]
    fn load(x: &[f64; 8]) -> Self {
        Portable(*x)
    }
    #[inline(always)]
    fn divisors(max_abs: &[f32; 8], nan: u8) -> Self {
        lanes!(l => divisor(max_abs[l], nan >> l & 1 != 0))
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 8] {
        self.0
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        lanes!(l => self.0[l] + o.0[l])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        lanes!(l => self.0[l] - o.0[l])
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        lanes!(l => self.0[l] * o.0[l])
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        lanes!(l => self.0[l] / o.0[l])
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        lanes!(l => self.0[l].mul_add(b.0[l], c.0[l]))
    }
    #[inline(always)]
    fn neg_mul_add(self, b: Self, c: Self) -> Self {
        lanes!(l => (-self.0[l]).mul_add(b.0[l], c.0[l]))
    }
    #[inline(always)]
    fn mask(bits: u8) -> u8 {
        bits
    }
    #[inline(always)]
    fn select_zero(m: u8, x: Self) -> Self {
        lanes!(l => if m >> l & 1 != 0 { x.0[l] } else { 0.0 })
    }
    #[inline(always)]
    fn add_masked(self, m: u8, x: Self) -> Self {
        lanes!(l => if m >> l & 1 != 0 { self.0[l] + x.0[l] } else { self.0[l] })
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX-512 and AVX2 lanes. Their methods are only called (inlined) from functions compiled
    //! with `#[target_feature]` for the instructions they use, which the dispatch reaches only
    //! after detecting them on the CPU.
    #![allow(unsafe_op_in_unsafe_fn)]

    use super::Lane;
    use std::arch::x86_64::*;

    /// Permute tables of [`Z::gather9`]: per tap, the indices into `f[0..32]`, `f[32..64]` and
    /// `f[64..72]` and the lanes taken from the second and third part.
    struct Gather {
        a: [[i32; 16]; 9],
        b: [[i32; 16]; 9],
        c: [[i32; 16]; 9],
        mb: [u16; 9],
        mc: [u16; 9],
    }

    const GATHER: Gather = {
        let mut g = Gather {
            a: [[0; 16]; 9],
            b: [[0; 16]; 9],
            c: [[0; 16]; 9],
            mb: [0; 9],
            mc: [0; 9],
        };
        let mut t = 0;
        while t < 9 {
            let mut l = 0;
            while l < 8 {
                let pos = 9 * l + t;
                if pos < 32 {
                    g.a[t][l] = pos as i32;
                } else if pos < 64 {
                    g.b[t][l] = (pos - 32) as i32;
                    g.mb[t] |= 1 << l;
                } else {
                    g.c[t][l] = (pos - 64) as i32;
                    g.mc[t] |= 1 << l;
                }
                l += 1;
            }
            t += 1;
        }
        g
    };

    /// One AVX-512 register.
    #[derive(Clone, Copy)]
    pub(super) struct Z(__m512d);

    // SAFETY (every block below): reached only from `avx512f,fma` functions (module docs).
    unsafe impl Lane for Z {
        type Mask = __mmask8;
        #[inline(always)]
        fn zero() -> Self {
            Z(unsafe { _mm512_setzero_pd() })
        }
        #[inline(always)]
        fn splat(x: f64) -> Self {
            Z(unsafe { _mm512_set1_pd(x) })
        }
        #[inline(always)]
        fn gather9(f: &[f32; 72]) -> [Self; 9] {
            // Tap t of filter l is f[9l + t]: lanes 0-3 (mostly) come from the first 32 values,
            // lanes 3-7 from the next 32, lane 7 of taps 1-8 from the last 8; two-source
            // permutes pick them, a blend and a masked permute combine them.
            // SAFETY: the loads read f[0..72]; the tables are 16 i32 each.
            unsafe {
                let p = f.as_ptr();
                let r0 = _mm512_loadu_ps(p);
                let r1 = _mm512_loadu_ps(p.add(16));
                let r2 = _mm512_loadu_ps(p.add(32));
                let r3 = _mm512_loadu_ps(p.add(48));
                let r4 = _mm512_castps256_ps512(_mm256_loadu_ps(p.add(64)));
                // a plain loop, not a closure: the intrinsics must inline into the caller
                let mut out = [Z(_mm512_setzero_pd()); 9];
                for (t, o) in out.iter_mut().enumerate() {
                    let ia = _mm512_loadu_si512(GATHER.a[t].as_ptr().cast());
                    let ib = _mm512_loadu_si512(GATHER.b[t].as_ptr().cast());
                    let ic = _mm512_loadu_si512(GATHER.c[t].as_ptr().cast());
                    let lo = _mm512_permutex2var_ps(r0, ia, r1);
                    let hi = _mm512_permutex2var_ps(r2, ib, r3);
                    let g = _mm512_mask_blend_ps(GATHER.mb[t], lo, hi);
                    let g = _mm512_mask_permutexvar_ps(g, GATHER.mc[t], ic, r4);
                    *o = Z(_mm512_cvtps_pd(_mm512_castps512_ps256(g)));
                }
                out
            }
        }
        #[inline(always)]
        fn load(x: &[f64; 8]) -> Self {
            // SAFETY: 8 readable f64 values.
            Z(unsafe { _mm512_loadu_pd(x.as_ptr()) })
        }
        #[inline(always)]
        fn divisors(max_abs: &[f32; 8], nan: u8) -> Self {
            // SAFETY: 8 readable f32 values.
            unsafe {
                let x = _mm512_cvtps_pd(_mm256_loadu_ps(max_abs.as_ptr()));
                let zero = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_pd());
                let x = _mm512_mask_mov_pd(x, zero, _mm512_set1_pd(1.0));
                Z(_mm512_mask_mov_pd(x, nan, _mm512_set1_pd(f64::NAN)))
            }
        }
        #[inline(always)]
        fn to_array(self) -> [f64; 8] {
            let mut out = [0f64; 8];
            // SAFETY: 8 writable f64 values.
            unsafe { _mm512_storeu_pd(out.as_mut_ptr(), self.0) };
            out
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Z(unsafe { _mm512_add_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Z(unsafe { _mm512_sub_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            Z(unsafe { _mm512_mul_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            Z(unsafe { _mm512_div_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Z(unsafe { _mm512_fmadd_pd(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn neg_mul_add(self, b: Self, c: Self) -> Self {
            Z(unsafe { _mm512_fnmadd_pd(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn mask(bits: u8) -> __mmask8 {
            bits
        }
        #[inline(always)]
        fn select_zero(m: __mmask8, x: Self) -> Self {
            Z(unsafe { _mm512_maskz_mov_pd(m, x.0) })
        }
        #[inline(always)]
        fn add_masked(self, m: __mmask8, x: Self) -> Self {
            Z(unsafe { _mm512_mask_add_pd(self.0, m, self.0, x.0) })
        }
    }

    /// Two AVX2 registers (lanes 0-3 and 4-7).
    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256d, __m256d);

    // SAFETY (every block below): reached only from `avx2,fma` functions (module docs).
    unsafe impl Lane for Y {
        type Mask = (__m256d, __m256d);
        #[inline(always)]
        fn zero() -> Self {
            let z = unsafe { _mm256_setzero_pd() };
            Y(z, z)
        }
        #[inline(always)]
        fn splat(x: f64) -> Self {
            let v = unsafe { _mm256_set1_pd(x) };
            Y(v, v)
        }
        #[inline(always)]
        fn gather9(f: &[f32; 72]) -> [Self; 9] {
            // transposed through memory: 72 scalar copies beat the gather instruction (by 2x on
            // AMD Zen 4)
            let mut tr = [0f32; 72];
            for l in 0..8 {
                for t in 0..9 {
                    tr[8 * t + l] = f[9 * l + t];
                }
            }
            // SAFETY: the loads read tr[8t..8t + 8] for t < 9.
            unsafe {
                let z = _mm256_setzero_pd();
                let mut out = [Y(z, z); 9];
                for (t, o) in out.iter_mut().enumerate() {
                    let g = _mm256_loadu_ps(tr.as_ptr().add(8 * t));
                    *o = Y(
                        _mm256_cvtps_pd(_mm256_castps256_ps128(g)),
                        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(g)),
                    );
                }
                out
            }
        }
        #[inline(always)]
        fn load(x: &[f64; 8]) -> Self {
            // SAFETY: 8 readable f64 values.
            unsafe {
                Y(
                    _mm256_loadu_pd(x.as_ptr()),
                    _mm256_loadu_pd(x.as_ptr().add(4)),
                )
            }
        }
        #[inline(always)]
        fn divisors(max_abs: &[f32; 8], nan: u8) -> Self {
            // SAFETY: 8 readable f32 values.
            unsafe {
                let m = Self::mask(nan);
                let (one, nan, zero) = (
                    _mm256_set1_pd(1.0),
                    _mm256_set1_pd(f64::NAN),
                    _mm256_setzero_pd(),
                );
                let lo = _mm256_cvtps_pd(_mm_loadu_ps(max_abs.as_ptr()));
                let hi = _mm256_cvtps_pd(_mm_loadu_ps(max_abs.as_ptr().add(4)));
                let lo = _mm256_blendv_pd(lo, one, _mm256_cmp_pd::<_CMP_EQ_OQ>(lo, zero));
                let hi = _mm256_blendv_pd(hi, one, _mm256_cmp_pd::<_CMP_EQ_OQ>(hi, zero));
                Y(
                    _mm256_blendv_pd(lo, nan, m.0),
                    _mm256_blendv_pd(hi, nan, m.1),
                )
            }
        }
        #[inline(always)]
        fn to_array(self) -> [f64; 8] {
            let mut out = [0f64; 8];
            // SAFETY: 8 writable f64 values.
            unsafe {
                _mm256_storeu_pd(out.as_mut_ptr(), self.0);
                _mm256_storeu_pd(out.as_mut_ptr().add(4), self.1);
            }
            out
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Y(_mm256_add_pd(self.0, o.0), _mm256_add_pd(self.1, o.1)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Y(_mm256_sub_pd(self.0, o.0), _mm256_sub_pd(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Y(_mm256_mul_pd(self.0, o.0), _mm256_mul_pd(self.1, o.1)) }
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            unsafe { Y(_mm256_div_pd(self.0, o.0), _mm256_div_pd(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe {
                Y(
                    _mm256_fmadd_pd(self.0, b.0, c.0),
                    _mm256_fmadd_pd(self.1, b.1, c.1),
                )
            }
        }
        #[inline(always)]
        fn neg_mul_add(self, b: Self, c: Self) -> Self {
            unsafe {
                Y(
                    _mm256_fnmadd_pd(self.0, b.0, c.0),
                    _mm256_fnmadd_pd(self.1, b.1, c.1),
                )
            }
        }
        #[inline(always)]
        fn mask(bits: u8) -> (__m256d, __m256d) {
            unsafe {
                let b = _mm256_set1_epi64x(i64::from(bits));
                let lo = _mm256_set_epi64x(8, 4, 2, 1);
                let hi = _mm256_set_epi64x(128, 64, 32, 16);
                (
                    _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(b, lo), lo)),
                    _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(b, hi), hi)),
                )
            }
        }
        #[inline(always)]
        fn select_zero(m: (__m256d, __m256d), x: Self) -> Self {
            unsafe { Y(_mm256_and_pd(x.0, m.0), _mm256_and_pd(x.1, m.1)) }
        }
        #[inline(always)]
        fn add_masked(self, m: (__m256d, __m256d), x: Self) -> Self {
            // the accumulators are never -0, so `acc + 0 == acc` in the other lanes
            self.add(Self::select_zero(m, x))
        }
    }
}

/// Pairs of taps `(a, b)`, `a <= b`, of the upper triangle of a 3×3 filter's 9×9 scatter in
/// row-major order.
const PAIRS: [(usize, usize); 45] = {
    let mut p = [(0usize, 0usize); 45];
    let mut i = 0;
    let mut a = 0;
    while a < 9 {
        let mut b = a;
        while b < 9 {
            p[i] = (a, b);
            i += 1;
            b += 1;
        }
        a += 1;
    }
    p
};

/// Lane accumulators of one 3×3 chunk.
struct Acc9<V> {
    /// Per selection: `Σ d_a d_b` for the pairs of [`PAIRS`].
    s: [[V; 45]; 3],
    /// Per selection: `Σ d_t`.
    t: [[V; 9]; 3],
}

/// The sums of the 3×3 filters `rows` (see the module documentation). `T0` and `T1` are the
/// numbers of tap pairs whose lane accumulators are kept in registers for selection 0 and for
/// selections 1 and 2 together.
///
/// # Safety
/// The CPU must support the instructions `V` uses (see [`Lane`]).
#[inline(always)]
unsafe fn chunk9<V: Lane, const CLEAN: bool, const T0: usize, const T1: usize>(
    lay: &Layer,
    c0: &[f64; 9],
    c1: &[f64; 9],
    rows: Range<usize>,
) -> Sums {
    let sels = if CLEAN { 3 } else { 2 };
    let mut acc = Acc9 {
        s: [[V::zero(); 45]; 3],
        t: [[V::zero(); 9]; 3],
    };
    let (mut c0v, mut c1v) = ([V::zero(); 9], [V::zero(); 9]);
    for t in 0..9 {
        c0v[t] = V::splat(c0[t]);
        c1v[t] = V::splat(c1[t]);
    }
    // padding filters equal the shift of selections 1 and 2 (an f32 value), so they add 0
    let pad = c1.map(|c| c as f32);
    let one = V::splat(1.0);
    let mut d0 = [[V::zero(); 9]; 8];
    let mut d1 = [[V::zero(); 9]; 8];
    let w = &lay.w[rows.start * 9..rows.end * 9];
    let mut b0 = rows.start;
    for block in w.chunks(BLOCK * 9) {
        let nb = block.len() / 9;
        let mut pb = [0u8; 8];
        let mut cb = [0u8; 8];
        for v in 0..BLOCK / 8 {
            let i0 = b0 + 8 * v;
            let group = (
                block.get(72 * v..).and_then(|b| b.first_chunk::<72>()),
                lay.stats
                    .max_abs
                    .get(i0..)
                    .and_then(|b| b.first_chunk::<8>()),
                lay.stats
                    .has_nan
                    .get(i0..)
                    .and_then(|b| b.first_chunk::<8>()),
                lay.paper_sparse
                    .get(i0..)
                    .and_then(|b| b.first_chunk::<8>()),
                lay.tcq_sparse.get(i0..).and_then(|b| b.first_chunk::<8>()),
            );
            let mut tmp = [0f32; 72];
            let (f, dn) = if let (Some(f), Some(ma), Some(hn), Some(ps), Some(ts)) = group {
                // 8 whole filters
                pb[v] = !bits8(ps);
                cb[v] = !bits8(ts);
                (f, V::divisors(ma, bits8(hn)))
            } else {
                // the last, partial group: padding filters beyond `nb`
                let mut den = [1f64; 8];
                for l in 0..8 {
                    let j = 8 * v + l;
                    let i = b0 + j;
                    for (t, &p) in pad.iter().enumerate() {
                        tmp[9 * l + t] = if j < nb {
                            block.get(9 * j + t).copied().unwrap_or(p)
                        } else {
                            p
                        };
                    }
                    if j < nb {
                        den[l] = divisor(lay.stats.max_abs[i], lay.stats.has_nan[i]);
                        pb[v] |= u8::from(!lay.paper_sparse[i]) << l;
                        cb[v] |= u8::from(!lay.tcq_sparse[i]) << l;
                    }
                }
                (&tmp, V::load(&den))
            };
            let x = V::gather9(f);
            for t in 0..9 {
                d1[v][t] = x[t].sub(c1v[t]);
            }
            if pb[v] != 0 {
                let r = one.div(dn);
                let pm = V::mask(pb[v]);
                for t in 0..9 {
                    let q = x[t].mul(r);
                    let e = q.neg_mul_add(dn, x[t]);
                    let y = e.mul_add(r, q);
                    d0[v][t] = V::select_zero(pm, y.sub(c0v[t]));
                }
            } else {
                d0[v] = [V::zero(); 9];
            }
        }
        let any0 = pb != [0; 8];
        if any0 {
            gram_single::<V, T0>(&mut acc.s[0], &mut acc.t[0], &d0);
        }
        let mut masks = [V::mask(0); 8];
        for (m, &bits) in masks.iter_mut().zip(&cb) {
            *m = V::mask(bits);
        }
        let [_, s1, s2] = &mut acc.s;
        let [_, t1, t2] = &mut acc.t;
        gram_dual::<V, CLEAN, T1>(s1, s2, t1, t2, &d1, &masks);
        b0 += nb;
    }
    let mut out = Sums::new(sels, 9);
    for s in 0..sels {
        for (p, &(a, b)) in PAIRS.iter().enumerate() {
            out.s[s * 81 + a * 9 + b] = lane_sum(acc.s[s][p].to_array());
        }
        for t in 0..9 {
            out.t[s * 9 + t] = lane_sum(acc.t[s][t].to_array());
        }
    }
    out
}

/// Bit `l` set iff `b[l]`.
#[inline(always)]
fn bits8(b: &[bool; 8]) -> u8 {
    // each byte is 0 or 1: the multiplication gathers byte l into bit 56 + l
    let x = u64::from_le_bytes(b.map(u8::from));
    (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// The 8 lanes added in a fixed order.
#[inline(always)]
fn lane_sum(l: [f64; 8]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Runs `$body` with `$p0` bound to each tile start `0, T, 2T, .. < 45`, written out (not a
/// loop or a closure) so that the tap pairs of each tile are constants.
macro_rules! each_tile {
    ($t:expr, $p0:ident => $body:block) => {{
        let t: usize = $t;
        if t > 0 {
            {
                let $p0 = 0;
                $body
            }
            each_tile!(@at t, 1, $p0, $body);
            each_tile!(@at t, 2, $p0, $body);
            each_tile!(@at t, 3, $p0, $body);
            each_tile!(@at t, 4, $p0, $body);
            each_tile!(@at t, 5, $p0, $body);
            each_tile!(@at t, 6, $p0, $body);
            each_tile!(@at t, 7, $p0, $body);
            each_tile!(@at t, 8, $p0, $body);
            each_tile!(@at t, 9, $p0, $body);
            each_tile!(@at t, 10, $p0, $body);
            each_tile!(@at t, 11, $p0, $body);
            each_tile!(@at t, 12, $p0, $body);
            each_tile!(@at t, 13, $p0, $body);
            each_tile!(@at t, 14, $p0, $body);
            each_tile!(@at t, 15, $p0, $body);
        }
    }};
    (@at $t:ident, $m:literal, $p0:ident, $body:block) => {
        if $m * $t < 45 {
            let $p0 = $m * $t;
            $body
        }
    };
}

/// Adds the 8 lane groups of `d` to one selection's sums (`s += d_a·d_b` fused, `t += d`).
#[inline(always)]
fn gram_single<V: Lane, const T: usize>(s: &mut [V; 45], t: &mut [V; 9], d: &[[V; 9]; 8]) {
    const { assert!(T > 0 && 45 % T == 0 && 45 / T <= 16) };
    each_tile!(T, p0 => {
        let mut a = [V::zero(); T];
        a.copy_from_slice(&s[p0..p0 + T]);
        for dv in d {
            for (i, acc) in a.iter_mut().enumerate() {
                let (x, y) = PAIRS[p0 + i];
                *acc = dv[x].mul_add(dv[y], *acc);
            }
        }
        s[p0..p0 + T].copy_from_slice(&a);
    });
    let mut a = *t;
    for dv in d {
        for (acc, &x) in a.iter_mut().zip(dv) {
            *acc = acc.add(x);
        }
    }
    *t = a;
}

/// Adds the 8 lane groups of `d` to selection 1's sums and, where `m` selects, to selection
/// 2's (when `CLEAN`): the product `d_a·d_b` is rounded once and added to both.
#[inline(always)]
fn gram_dual<V: Lane, const CLEAN: bool, const T: usize>(
    s1: &mut [V; 45],
    s2: &mut [V; 45],
    t1: &mut [V; 9],
    t2: &mut [V; 9],
    d: &[[V; 9]; 8],
    m: &[V::Mask; 8],
) {
    const { assert!(T > 0 && 45 % T == 0 && 45 / T <= 16) };
    each_tile!(T, p0 => {
        let (mut a1, mut a2) = ([V::zero(); T], [V::zero(); T]);
        a1.copy_from_slice(&s1[p0..p0 + T]);
        a2.copy_from_slice(&s2[p0..p0 + T]);
        for (dv, &mv) in d.iter().zip(m) {
            for i in 0..T {
                let (x, y) = PAIRS[p0 + i];
                let p = dv[x].mul(dv[y]);
                a1[i] = a1[i].add(p);
                if CLEAN {
                    a2[i] = a2[i].add_masked(mv, p);
                }
            }
        }
        s1[p0..p0 + T].copy_from_slice(&a1);
        if CLEAN {
            s2[p0..p0 + T].copy_from_slice(&a2);
        }
    });
    let (mut a1, mut a2) = (*t1, *t2);
    for (dv, &mv) in d.iter().zip(m) {
        for j in 0..9 {
            a1[j] = a1[j].add(dv[j]);
            if CLEAN {
                a2[j] = a2[j].add_masked(mv, dv[j]);
            }
        }
    }
    *t1 = a1;
    if CLEAN {
        *t2 = a2;
    }
}

#[cfg(test)]
mod tests {
    use super::super::norms::filter_stats;
    use super::super::sparsity::{paper_mask, tcq_mask};
    use super::super::variance_entropy::{
        moments_many, paper_entropy, scale_filter, tcq_entropy, Selections,
    };
    use super::*;

    /// The former two-pass path of the entropies (numpy's mean, then centred products).
    struct OldSelections<'a> {
        lay: &'a Layer<'a>,
    }

    impl Selections for OldSelections<'_> {
        fn count(&self) -> usize {
            if self.lay.clean {
                3
            } else {
                2
            }
        }

        fn rows(&self, rows: Range<usize>, sel: usize, out: &mut Vec<f64>) -> usize {
            let (k, lay) = (self.lay.k, self.lay);
            let mut n = 0;
            let mut buf = vec![0f64; k];
            for i in rows {
                let f = &lay.w[i * k..(i + 1) * k];
                let take = match sel {
                    0 => !lay.paper_sparse[i],
                    1 => true,
                    _ => !lay.tcq_sparse[i],
                };
                if !take {
                    continue;
                }
                if sel == 0 {
                    scale_filter(f, &mut buf);
                } else {
                    for (b, &x) in buf.iter_mut().zip(f) {
                        *b = f64::from(x);
                    }
                }
                out.extend_from_slice(&buf);
                n += 1;
            }
            n
        }
    }

    struct Owned {
        w: Vec<f32>,
        n: usize,
        k: usize,
        stats: FilterStats,
        paper: Vec<bool>,
        tcq: Vec<bool>,
    }

    impl Owned {
        fn new(w: Vec<f32>, k: usize) -> Owned {
            let n = w.len() / k;
            let stats = filter_stats(&w, n, k);
            let paper = paper_mask(&stats).1;
            let tcq = tcq_mask(&stats);
            Owned {
                w,
                n,
                k,
                stats,
                paper,
                tcq,
            }
        }

        fn layer(&self, clean: bool) -> Layer<'_> {
            Layer {
                w: &self.w,
                n: self.n,
                k: self.k,
                stats: &self.stats,
                paper_sparse: &self.paper,
                tcq_sparse: &self.tcq,
                clean,
            }
        }
    }

    struct Lcg(u64);

    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    fn random(n: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut g = Lcg(seed);
        (0..n * k)
            .map(|i| {
                // some near-zero filters (sparse for both rules) and some larger ones
                let s = match i / k % 11 {
                    3 => 1e-4,
                    7 => 3.0,
                    _ => 1.0,
                };
                (g.unit() * s) as f32
            })
            .collect()
    }

    fn rel(a: f64, b: f64) -> f64 {
        if a == b || (a.is_nan() && b.is_nan()) {
            0.0
        } else {
            (a - b).abs() / a.abs().max(b.abs())
        }
    }

    /// Largest `|a_ij - b_ij| / sqrt(a_ii a_jj)` of two scatter matrices.
    fn scatter_diff(a: &[f64], b: &[f64], k: usize) -> f64 {
        let mut worst = 0f64;
        for i in 0..k {
            for j in 0..k {
                let scale = (a[i * k + i] * a[j * k + j]).abs().sqrt().max(1e-300);
                worst = worst.max((a[i * k + j] - b[i * k + j]).abs() / scale);
            }
        }
        worst
    }

    fn check_against_old(o: &Owned, tol: f64, what: &str) {
        let clean = o.tcq.iter().any(|&s| s);
        let lay = o.layer(clean);
        let new = layer_sums(&lay);
        let old = moments_many(o.n, o.k, &OldSelections { lay: &lay });
        assert_eq!(new.len(), old.len(), "{what}");
        for (s, (nw, od)) in new.iter().zip(&old).enumerate() {
            let c = nw.centred();
            assert_eq!(c.n, od.n, "{what} sel {s}");
            if s > 0 {
                assert_eq!(c.zero_cols, od.zero_cols, "{what} sel {s}");
            }
            let d = scatter_diff(&c.scatter, &od.scatter, o.k);
            assert!(d <= tol, "{what} sel {s}: scatter differs by {d:e}");
            let (e_new, e_old) = if s == 0 {
                (paper_entropy(&c), paper_entropy(od))
            } else {
                (tcq_entropy(&c).0, tcq_entropy(od).0)
            };
            assert!(
                rel(e_new, e_old) <= tol,
                "{what} sel {s}: entropy {e_new} vs {e_old}"
            );
        }
    }

    #[test]
    fn agrees_with_the_two_pass_moments() {
        for (n, k) in [
            (5000, 9),
            (4099, 9),
            (77, 9),
            (3000, 25),
            (2000, 1),
            (600, 4),
        ] {
            let o = Owned::new(random(n, k, n as u64 + k as u64), k);
            check_against_old(&o, 1e-13, &format!("n {n} k {k}"));
        }
    }

    #[test]
    fn fast_path_agrees_with_the_generic_loop() {
        let o = Owned::new(random(5000, 9, 9), 9);
        for clean in [false, true] {
            let lay = o.layer(clean);
            // the shift of the raw selections is an f32 value (it pads the last block)
            let c0 = vec![0.01; 9];
            let c1 = vec![f64::from(-0.02f32); 9];
            let a = chunk_generic(&lay, &c0, &c1, 0..o.n);
            let (c0a, c1a) = (
                std::array::from_fn(|t| c0[t]),
                std::array::from_fn(|t| c1[t]),
            );
            let b = if clean {
                unsafe { chunk9::<Portable, true, 15, 9>(&lay, &c0a, &c1a, 0..o.n) }
            } else {
                unsafe { chunk9::<Portable, false, 15, 9>(&lay, &c0a, &c1a, 0..o.n) }
            };
            let sels = if clean { 3 } else { 2 };
            for i in 0..sels * 81 {
                let (r, c) = (i % 81 / 9, i % 9);
                if r <= c {
                    assert!(rel(a.s[i], b.s[i]) < 1e-12, "{i}: {} {}", a.s[i], b.s[i]);
                }
            }
            for i in 0..sels * 9 {
                assert!(
                    (a.t[i] - b.t[i]).abs() < 1e-11,
                    "{i}: {} {}",
                    a.t[i],
                    b.t[i]
                );
            }
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let o = Owned::new(random(3001, 9, 5), 9);
        let lay = o.layer(true);
        let c0 = [0.03; 9];
        let c1: [f64; 9] = std::array::from_fn(|t| f64::from(o.w[t]));
        let bits = |s: &Sums| {
            s.s.iter()
                .chain(&s.t)
                .map(|x| x.to_bits())
                .collect::<Vec<_>>()
        };
        let portable = bits(&unsafe { chunk9::<Portable, true, 15, 9>(&lay, &c0, &c1, 0..o.n) });
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features.
                let got = unsafe { chunk9_avx2::<true>(&lay, &c0, &c1, 0..o.n) };
                assert_eq!(bits(&got), portable, "avx2");
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features.
                let got = unsafe { chunk9_avx512::<true>(&lay, &c0, &c1, 0..o.n) };
                assert_eq!(bits(&got), portable, "avx512");
            }
        }
    }

    #[test]
    fn mask_bits_follow_the_lanes() {
        for x in 0..=255u8 {
            let b: [bool; 8] = std::array::from_fn(|l| x >> l & 1 != 0);
            assert_eq!(bits8(&b), x);
        }
    }

    #[test]
    fn fused_scaling_is_the_division() {
        let mut g = Lcg(11);
        let check = |x: f32, den: f32| {
            let d = f64::from(den);
            let got = scaled(f64::from(x), d, 1.0 / d);
            let want = f64::from(x) / d;
            assert!(got == want, "{x:e} / {den:e}: {got:e} vs {want:e}");
        };
        for _ in 0..2_000_000 {
            let den = ((g.unit() + 0.5) as f32 * 2f32.powi((g.unit() * 250.0) as i32)).abs();
            check((g.unit() * 2.0) as f32 * den, den);
            // the maximum itself and random mantissas below it
            check(den, den);
            let m = f32::from_bits(den.to_bits() ^ ((g.unit() + 0.5) * 8388607.0) as u32);
            check(m.min(den), den);
        }
        for (x, den) in [
            (1.0, 3.0),
            (f32::MIN_POSITIVE, f32::MAX),
            (1e-45, 1e-45),
            (-7e-45, 1e-44),
            (f32::MAX, f32::MAX),
            (0.1, 0.3),
        ] {
            check(x, den);
        }
    }
}
