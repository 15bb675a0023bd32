//! Unit tests of the one-pass sums: against the former two-pass moments, the 3×3 kernel
//! against the generic loop and across instruction sets, the lane masks and the fused scaling.

use super::super::norms::filter_stats;
use super::super::sparsity::{paper_mask, tcq_mask};
use super::super::variance_entropy::{
    moments_many, paper_entropy, scale_filter, tcq_entropy, Selections,
};
#[cfg(target_arch = "x86_64")]
use super::dispatch::{chunk9_avx2, chunk9_avx512};
use super::dispatch::{chunk_generic, Sums};
use super::kernel9::{bits8, chunk9};
use super::lane::Portable;
use super::*;
use std::ops::Range;

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
