//! [`Simd`] on AVX-512 (F/DQ/VL): the operations, and the sums of two cells in registers.

use super::{Avx512, Simd, MAX_LANES};
use std::arch::x86_64::*;

/// Sums of two cells in AVX-512 registers: components 0..8 in a vector, 8 alone.
#[derive(Clone, Copy)]
pub(in super::super) struct Acc512 {
    s: [__m512d; 2],
    q: [__m512d; 2],
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
