//! The 3×3 kernels on blocks of filters in structure-of-arrays form: one f64 lane per
//! filter (8 with AVX-512, 4 with AVX2), a scalar tail for the rest of a run. This file holds
//! the vector operations the kernels need ([`Simd`]), the tokens that prove the CPU has a
//! vector unit, the projection of a block and the safe entry points of each unit; the
//! operations of each unit, the range kernel and the histogram kernel have files of their own.

mod hist;
mod ops_avx2;
mod ops_avx512;
mod range;

use super::project::Proj9;
use hist::hist_run9_v;
use range::range_run9_v;

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

/// The entry points of one vector unit: safe, since the token proves the CPU has it.
macro_rules! kernels {
    ($m:ident, $t:ty, $feat:literal) => {
        pub(in super::super) mod $m {
            use super::super::passes::ModelHists;
            use super::super::project::{FastBins, Proj9};
            use super::{hist_run9_v, range_run9_v, $t};

            #[target_feature(enable = $feat)]
            fn range_inner(t: $t, p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
                range_run9_v(t, p, run, l9, h9)
            }

            /// `super::super::kernels::range_run9` on this vector unit.
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

            /// `super::super::kernels::hist_run9` on this vector unit.
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
