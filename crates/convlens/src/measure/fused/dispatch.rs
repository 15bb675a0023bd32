//! Partial sums over ranges of filters, summed in a fixed order; the instruction set the
//! kernels run on and the entry points compiled for it; the scalar loop for any kernel size.

use rayon::prelude::*;
use std::ops::Range;

use super::kernel9::chunk9;
use super::lane::Portable;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{divisor, scaled, Layer};

/// Partial sums of some filters: per selection, `Σd` (`t`, `k` values each) and the upper
/// triangle of `Σddᵀ` (`s`, `k × k` row-major each; the lower triangle is unused).
pub(super) struct Sums {
    pub(super) s: Vec<f64>,
    pub(super) t: Vec<f64>,
}

impl Sums {
    pub(super) fn new(sels: usize, k: usize) -> Sums {
        Sums {
            s: vec![0.0; sels * k * k],
            t: vec![0.0; sels * k],
        }
    }

    pub(super) fn add(&mut self, o: &Sums) {
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
pub(super) fn run_chunks<F>(
    n: usize,
    rows: usize,
    group: usize,
    sels: usize,
    k: usize,
    chunk: F,
) -> Sums
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
pub(super) enum Level {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    pub(super) fn detect() -> Level {
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

    pub(super) fn chunk9(
        self,
        lay: &Layer,
        c0: &[f64; 9],
        c1: &[f64; 9],
        rows: Range<usize>,
    ) -> Sums {
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

    pub(super) fn chunk_generic(
        self,
        lay: &Layer,
        c0: &[f64],
        c1: &[f64],
        rows: Range<usize>,
    ) -> Sums {
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
pub(super) unsafe fn chunk9_avx512<const CLEAN: bool>(
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
pub(super) unsafe fn chunk9_avx2<const CLEAN: bool>(
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
pub(super) unsafe fn chunk_generic_avx512(
    lay: &Layer,
    c0: &[f64],
    c1: &[f64],
    rows: Range<usize>,
) -> Sums {
    chunk_generic(lay, c0, c1, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn chunk_generic_avx2(
    lay: &Layer,
    c0: &[f64],
    c1: &[f64],
    rows: Range<usize>,
) -> Sums {
    chunk_generic(lay, c0, c1, rows)
}

/// Sums of the filters `rows`, any `k`: one filter at a time. Selection 0 adds `d·d` with fused
/// multiply-adds; selections 1 and 2 add the same rounded product `d·d`.
#[inline(always)]
pub(super) fn chunk_generic(lay: &Layer, c0: &[f64], c1: &[f64], rows: Range<usize>) -> Sums {
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
