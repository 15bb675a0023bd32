//! [`Simd`] on AVX2: the operations, and the sums of two cells in registers.

use super::{Avx2, Simd, MAX_LANES};
use std::arch::x86_64::*;

/// Sums of two cells in AVX2 registers: components 0..4 and 4..8 in vectors, 8 alone.
#[derive(Clone, Copy)]
pub(in super::super) struct Acc256 {
    s: [[__m256d; 2]; 2],
    q: [[__m256d; 2]; 2],
    s8: [f64; 2],
    q8: [f64; 2],
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
