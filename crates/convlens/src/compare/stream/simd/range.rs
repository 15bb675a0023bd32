//! The range kernel on blocks of filters: per-component min and max of the coefficients.

use super::super::kernels::range_run9;
use super::super::project::Proj9;
use super::{coefficients, Simd, MAX_LANES};

/// Range pass (see `super::super::kernels::range_run9`) on blocks, the tail scalar.
#[inline(always)]
pub(super) fn range_run9_v<S: Simd>(
    s: S,
    p: &Proj9,
    run: &[f32],
    l9: &mut [f64; 9],
    h9: &mut [f64; 9],
) {
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
