//! The 3×3 projection onto the basis ([`Proj9`], bit-identical to `scale_filter` then
//! `Basis::transform_into`) and the bin index without a division ([`FastBins`], with the
//! [`VecBins`] form the vector kernels use).

use crate::compare::basis::Basis;
use crate::compare::divergence::Bins;

/// The basis laid out for 3×3 filters and 9 components: `ct[a][j]` = tap `a` of component `j`.
pub(super) struct Proj9 {
    pub(super) ct: [[f64; 9]; 9],
    pub(super) mp: [f64; 9],
}

impl Proj9 {
    pub(super) fn new(basis: &Basis, mp: &[f64]) -> Option<Proj9> {
        if basis.dim() != 9 || basis.components.len() != 9 || mp.len() != 9 {
            return None;
        }
        if basis.components.iter().any(|c| c.len() != 9) {
            return None;
        }
        let ct = std::array::from_fn(|a| std::array::from_fn(|j| basis.components[j][a]));
        Some(Proj9 {
            ct,
            mp: std::array::from_fn(|j| mp[j]),
        })
    }

    /// Largest |tap| of `f` and its coefficients: `scale_filter` then `Basis::transform_into`,
    /// with every sum in the same order (bit-identical).
    #[inline(always)]
    pub(super) fn coefficients(&self, f: &[f32; 9]) -> (f32, [f64; 9]) {
        let mut den = 0f32;
        let mut nan = false;
        for &v in f {
            let a = v.abs();
            nan |= a.is_nan();
            den = den.max(a);
        }
        let d = if nan {
            f64::NAN
        } else if den == 0.0 {
            1.0
        } else {
            f64::from(den)
        };
        let mut x = [0.0f64; 9];
        for i in 0..9 {
            x[i] = f64::from(f[i]) / d;
        }
        let mut s = [0.0f64; 9];
        for (xa, row) in x.iter().zip(&self.ct) {
            for (sj, cj) in s.iter_mut().zip(row) {
                *sj += xa * cj;
            }
        }
        for (sj, mj) in s.iter_mut().zip(&self.mp) {
            *sj -= mj;
        }
        // `den` ignores NaN taps like the l∞ of the sparse test
        (den, s)
    }
}

/// Largest bin count of the vectorisable bin index.
const MAX_FAST_BINS: usize = 4096;

/// `Bins::index` with the division replaced by a product: the first guess may differ by one
/// bin near an edge, and the one-step edge correction then settles on the same bin.
pub(super) struct FastBins<'a> {
    lo: f64,
    hi: f64,
    scale: f64,
    n: usize,
    /// The edges, padded (so that indexing needs no bounds check); `None` above
    /// [`MAX_FAST_BINS`] bins.
    edges: Option<Box<[f64; MAX_FAST_BINS + 1]>>,
    bins: &'a Bins,
    /// The same bins for the vector kernels, when every edge below the last one is
    /// `i as f64 * step + lo` bit for bit (as `Bins::new` makes them).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) vec: Option<VecBins>,
}

/// Bins whose edges the vector kernels compute instead of loading: `e[i] = i * step + lo`
/// for every `i < n` (checked against the real edges on construction).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct VecBins {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) scale: f64,
    pub(super) step: f64,
    /// `n − 1`.
    pub(super) last: f64,
    /// `n` (the "outside" answer).
    pub(super) n: f64,
}

impl<'a> FastBins<'a> {
    pub(super) fn new(b: &'a Bins) -> FastBins<'a> {
        let e = b.edges();
        let n = b.len();
        let (lo, hi) = (e[0], e[n]);
        let edges = (n <= MAX_FAST_BINS).then(|| {
            let mut a = Box::new([f64::INFINITY; MAX_FAST_BINS + 1]);
            a[..=n].copy_from_slice(e);
            a
        });
        let scale = n as f64 / (hi - lo);
        let step = (hi - lo) / n as f64;
        let formula = n <= MAX_FAST_BINS
            && e[..n]
                .iter()
                .enumerate()
                .all(|(i, &ei)| (i as f64 * step + lo).to_bits() == ei.to_bits());
        let vec = formula.then_some(VecBins {
            lo,
            hi,
            scale,
            step,
            last: (n - 1) as f64,
            n: n as f64,
        });
        FastBins {
            lo,
            hi,
            scale,
            n,
            edges,
            bins: b,
            vec,
        }
    }

    #[inline(always)]
    pub(super) fn index(&self, x: f64) -> Option<usize> {
        let i = self.index_or_n(x);
        (i < self.n).then_some(i)
    }

    /// The bin of `x`, or `n` when it is outside `[lo, hi]` (branch-free: vectorises).
    #[inline(always)]
    pub(super) fn index_or_n(&self, x: f64) -> usize {
        let Some(e) = self.edges.as_deref() else {
            return self.bins.index(x).unwrap_or(self.n);
        };
        let n = self.n;
        let inside = x >= self.lo && x <= self.hi;
        let f = ((x - self.lo) * self.scale).max(0.0).min((n - 1) as f64);
        // n <= MAX_FAST_BINS: the mask changes nothing and proves the index in bounds
        let i = (f as usize) & (MAX_FAST_BINS - 1);
        // one step, as `Bins::index` corrects its first guess
        let down = usize::from(x < e[i] && i > 0);
        let up = usize::from(x >= e[i + 1] && i + 1 < n);
        if inside {
            i - down + up
        } else {
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::stream::tests::values;
    use crate::measure::scale_filter;
    use crate::numeric::Moments;

    #[test]
    fn fast_bin_index_agrees_with_bins_index() {
        for (lo, hi, n) in [
            (-2.531819329136921, 2.4491343644046824, 70),
            (-0.3, 7.1, 2048),
            (1.0, 1.0, 70),
            (-1.0, 1.0, MAX_FAST_BINS + 10),
        ] {
            let bins = Bins::new(lo, hi, n);
            let fb = FastBins::new(&bins);
            let e = bins.edges();
            let mut xs: Vec<f64> = values(n as u64, 20_000)
                .into_iter()
                .map(|v| lo + (v + 1.0) * 0.5 * (hi - lo) * 1.02 - 0.01 * (hi - lo))
                .collect();
            for &edge in e {
                xs.extend([edge, edge.next_up(), edge.next_down()]);
            }
            xs.extend([
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                lo - 1.0,
                hi + 1.0,
            ]);
            for x in xs {
                assert_eq!(fb.index(x), bins.index(x), "x = {x:e}, {n} bins");
            }
        }
    }

    #[test]
    fn projection_is_bit_identical_to_scale_and_transform() {
        let v = values(7, 9 * 500);
        let mut m = Moments::new(9);
        let mut x = [0.0; 9];
        for f in v.chunks_exact(9) {
            let f32s: Vec<f32> = f.iter().map(|&a| a as f32).collect();
            scale_filter(&f32s, &mut x);
            m.add(&x);
        }
        let basis = Basis::fit(&m).unwrap();
        let mp = basis.mean_projection();
        let p = Proj9::new(&basis, &mp).unwrap();
        let mut filters: Vec<[f32; 9]> = v
            .chunks_exact(9)
            .map(|f| std::array::from_fn(|i| f[i] as f32 * 0.03))
            .collect();
        filters.push([0.0; 9]);
        filters.push([1e-30, -2e-30, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3e-30]);
        let mut nan = [0.5f32; 9];
        nan[4] = f32::NAN;
        filters.push(nan);
        let mut c = vec![0.0; 9];
        for f in &filters {
            scale_filter(f, &mut x);
            basis.transform_into(&x, &mp, &mut c);
            let (linf, got) = p.coefficients(f);
            assert_eq!(linf, f.iter().fold(0f32, |a, &t| a.max(t.abs())));
            for j in 0..9 {
                assert_eq!(got[j].to_bits(), c[j].to_bits(), "{f:?} component {j}");
            }
        }
    }
}
