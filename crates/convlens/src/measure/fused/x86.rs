//! AVX-512 and AVX2 lanes. Their methods are only called (inlined) from functions compiled
//! with `#[target_feature]` for the instructions they use, which the dispatch reaches only
//! after detecting them on the CPU.
#![allow(unsafe_op_in_unsafe_fn)]

use super::lane::Lane;
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
