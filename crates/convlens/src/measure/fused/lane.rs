//! The `Lane` abstraction (eight `f64` lanes, one per filter) of the 3×3 kernel and its
//! portable implementation.

use super::divisor;
#[cfg(doc)]
use super::kernel9::chunk9;

/// Eight `f64` lanes (one per filter) with the operations of the 3×3 kernel; every
/// implementation computes each lane exactly as the portable one.
///
/// # Safety
/// An implementation may use instructions the CPU lacks (`x86::Z`: AVX-512F and FMA;
/// `x86::Y`: AVX2 and FMA). Its methods may only run where those are available: only through
/// [`chunk9`], whose callers guarantee it.
pub(super) unsafe trait Lane: Copy {
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

/// Portable lanes. (Plain loops rather than closures throughout the lane code, here and in
/// `x86.rs`, so that everything inlines into the callers compiled for the instruction set.)
#[derive(Clone, Copy)]
pub(super) struct Portable([f64; 8]);

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
