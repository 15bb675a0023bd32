//! The vector kernel of 3×3 filters: 8 filters per lane group, blocks of 64 filters, the
//! accumulated products of the 45 tap pairs kept in registers tile by tile.

use std::ops::Range;

use super::dispatch::Sums;
use super::lane::Lane;
use super::{divisor, Layer, BLOCK};

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
pub(super) unsafe fn chunk9<V: Lane, const CLEAN: bool, const T0: usize, const T1: usize>(
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
pub(super) fn bits8(b: &[bool; 8]) -> u8 {
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
