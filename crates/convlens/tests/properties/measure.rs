//! Per-layer metrics (`measure_layer`, `orthogonality`) on random layers: invariant to
//! permuting the output channels, the variance entropy to positive scalings of the layer and
//! of single filters (it measures l∞-scaled filters), the orthogonality to per-row scalings.
//!
//! Random layers have random shapes (kernels from 1×1 to 5×5, not only 3×3), taps that are
//! exact zeros, whole zero filters and tiny filters (1e-3 and 1e-6 of the others: sparse), and
//! a random overall magnitude (1e-3 to 1e3). Random taps below 1e-6 are set to 0, so that no
//! weight is subnormal and power-of-two scalings are exact.

use super::{close, config};
use convlens::measure::{
    basis_moments, measure_layer, orthogonality, scale_filter, sparse_mask, LayerMetrics,
    LayerShape,
};
use convlens::numeric::Moments;
use proptest::collection::vec;
use proptest::prelude::*;

/// A random OIHW layer.
#[derive(Debug, Clone)]
struct Layer {
    shape: LayerShape,
    w: Vec<f32>,
}

impl Layer {
    fn k(&self) -> usize {
        self.shape.kh * self.shape.kw
    }
    fn row_len(&self) -> usize {
        self.shape.in_per_group * self.k()
    }
}

/// What a filter is made of.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Zero,
    Tiny(f32),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        12 => Just(Kind::Plain),
        1 => Just(Kind::Zero),
        1 => Just(Kind::Tiny(1e-3)),
        1 => Just(Kind::Tiny(1e-6)),
    ]
}

fn tap() -> impl Strategy<Value = f32> {
    prop_oneof![1 => Just(0.0f32), 8 => -1.0f32..1.0]
        .prop_map(|x| if x.abs() < 1e-6 { 0.0 } else { x })
}

/// Overall magnitude of a layer: 1, or anything from 1e-3 to 1e3.
fn magnitude() -> impl Strategy<Value = f32> {
    prop_oneof![Just(1.0f32), (-3.0f32..3.0).prop_map(|e| 10f32.powf(e))]
}

/// Layers of 1 to 5 groups of 1 to 6 out-channels each (one group a fifth of the time).
fn layer() -> impl Strategy<Value = Layer> {
    (1usize..=5, 1usize..=6, 1usize..=10, 1usize..=5, 1usize..=5)
        .prop_flat_map(|(groups, per_group, i, kh, kw)| {
            let o = groups * per_group;
            let shape = LayerShape {
                out_channels: o,
                in_per_group: i,
                kh,
                kw,
                groups,
            };
            let n = o * i;
            (
                Just(shape),
                vec(tap(), n * kh * kw),
                vec(kind(), n),
                magnitude(),
            )
        })
        .prop_map(|(shape, mut w, kinds, mag)| {
            let k = shape.kh * shape.kw;
            for (f, kind) in w.chunks_exact_mut(k).zip(kinds) {
                let c = match kind {
                    Kind::Plain => 1.0,
                    Kind::Zero => 0.0,
                    Kind::Tiny(c) => c,
                };
                f.iter_mut().for_each(|x| *x *= c * mag);
            }
            Layer { shape, w }
        })
}

/// A layer with a permutation of its out-channels that keeps each group's channels together
/// (any permutation when there is one group): the group order and the order inside each group
/// are shuffled.
fn layer_and_permutation() -> impl Strategy<Value = (Layer, Vec<usize>)> {
    layer().prop_flat_map(|l| {
        let g = l.shape.groups;
        let per = l.shape.out_channels / g;
        let groups = Just((0..g).collect::<Vec<usize>>()).prop_shuffle();
        let inside = vec(Just((0..per).collect::<Vec<usize>>()).prop_shuffle(), g);
        (Just(l), groups, inside).prop_map(move |(l, groups, inside)| {
            let perm = groups
                .iter()
                .zip(&inside)
                .flat_map(|(&gi, order)| order.iter().map(move |&j| gi * per + j))
                .collect();
            (l, perm)
        })
    })
}

/// The out-channels of an OIHW weight in the order `perm`.
fn permute_out(l: &Layer, perm: &[usize]) -> Vec<f32> {
    let row = l.row_len();
    perm.iter()
        .flat_map(|&o| l.w[o * row..(o + 1) * row].iter().copied())
        .collect()
}

/// Counts compared exactly; sums, entropies and orthogonalities to rounding (the filters and
/// rows are summed in another order).
fn assert_same_metrics(a: &LayerMetrics, b: &LayerMetrics) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.n_filters, b.n_filters);
    prop_assert_eq!(a.sparse_filters, b.sparse_filters);
    prop_assert_eq!(a.n_nonsparse, b.n_nonsparse);
    prop_assert_eq!(a.sparsity.to_bits(), b.sparsity.to_bits());
    prop_assert_eq!(a.tcq.sparsity.to_bits(), b.tcq.sparsity.to_bits());
    prop_assert_eq!(a.layer_norm.to_bits(), b.layer_norm.to_bits());
    for (name, x, y) in [
        ("l1_norm", a.l1_norm, b.l1_norm),
        ("l2_norm", a.l2_norm, b.l2_norm),
        ("mean_filter_l2", a.mean_filter_l2, b.mean_filter_l2),
    ] {
        prop_assert!(close(x, y, 1e-12, 0.0), "{}: {} vs {}", name, x, y);
    }
    for (name, x, y) in [
        ("variance_entropy", a.variance_entropy, b.variance_entropy),
        ("orthogonality", a.orthogonality, b.orthogonality),
        (
            "orthogonality_per_group",
            a.orthogonality_per_group.unwrap_or(-1.0),
            b.orthogonality_per_group.unwrap_or(-1.0),
        ),
        (
            "tcq.variance_entropy",
            a.tcq.variance_entropy,
            b.tcq.variance_entropy,
        ),
        (
            "tcq.variance_entropy_norm",
            a.tcq.variance_entropy_norm,
            b.tcq.variance_entropy_norm,
        ),
        (
            "tcq.variance_entropy_clean",
            a.tcq.variance_entropy_clean,
            b.tcq.variance_entropy_clean,
        ),
        (
            "tcq.variance_entropy_clean_norm",
            a.tcq.variance_entropy_clean_norm,
            b.tcq.variance_entropy_clean_norm,
        ),
    ] {
        prop_assert!(close(x, y, 1e-9, 1e-9), "{}: {} vs {}", name, x, y);
    }
    Ok(())
}

/// `2^e` for a small `e`: exact in f32 for the magnitudes of the random layers.
fn power_of_two() -> impl Strategy<Value = f32> {
    (-6i32..=6).prop_map(|e| 2f32.powi(e))
}

proptest! {
    #![proptest_config(config(64))]

    /// Every metric is a function of the set of out-channels: permuting them (the groups'
    /// channels kept together, for the per-group orthogonality) changes nothing but the order
    /// of the sums.
    #[test]
    fn metrics_are_invariant_to_permuting_out_channels((l, perm) in layer_and_permutation()) {
        let base = measure_layer(&l.w, &l.shape);
        let m = measure_layer(&permute_out(&l, &perm), &l.shape);
        assert_same_metrics(&m, &base)?;
    }

    /// Scaling the whole layer by `c > 0` leaves the sparse filters (relative to the layer's
    /// largest weight) and the l∞-scaled filters as they are: with a power of two `c` every
    /// scaled filter is the same bits, so the paper entropy and the orthogonality are the same
    /// bits; with any `c` (rounding of the products in f32) they agree to rounding.
    #[test]
    fn entropy_and_orthogonality_are_invariant_to_scaling_the_layer(
        l in layer(),
        two in power_of_two(),
        c in (-3.0f64..3.0).prop_map(|e| 10f64.powf(e) as f32),
    ) {
        let base = measure_layer(&l.w, &l.shape);
        let w2: Vec<f32> = l.w.iter().map(|x| x * two).collect();
        let m = measure_layer(&w2, &l.shape);
        prop_assert_eq!(m.sparse_filters, base.sparse_filters);
        prop_assert_eq!(m.tcq.sparsity.to_bits(), base.tcq.sparsity.to_bits());
        prop_assert_eq!(m.layer_norm.to_bits(), (base.layer_norm * f64::from(two)).to_bits());
        prop_assert_eq!(m.variance_entropy.to_bits(), base.variance_entropy.to_bits());
        prop_assert_eq!(m.orthogonality.to_bits(), base.orthogonality.to_bits());
        // the torchconvquality entropies of the raw filters: eigenvalues scaled by 4^e
        prop_assert!(close(m.tcq.variance_entropy, base.tcq.variance_entropy, 1e-9, 1e-9));
        let wc: Vec<f32> = l.w.iter().map(|x| x * c).collect();
        let m = measure_layer(&wc, &l.shape);
        prop_assert_eq!(m.sparse_filters, base.sparse_filters);
        prop_assert!(
            close(m.variance_entropy, base.variance_entropy, 0.0, 1e-5),
            "entropy {} vs {}", m.variance_entropy, base.variance_entropy
        );
        prop_assert!(
            close(m.orthogonality, base.orthogonality, 0.0, 1e-6),
            "orthogonality {} vs {}", m.orthogonality, base.orthogonality
        );
    }

    /// Scaling single filters by `c > 0` changes neither their l∞-scaled taps nor, when it
    /// keeps every filter on its side of the sparsity limit and below the layer's largest
    /// weight, the set of filters the entropy measures. The scaled filters are those whose
    /// largest tap lies in `[L/40, L/2.5]` (`L` the layer's largest weight), by factors in
    /// `[1/2, 2]`: they stay in `[L/80, 0.8·L]`. Power-of-two factors give the same bits, any
    /// factor the same entropy to rounding.
    #[test]
    fn paper_entropy_is_invariant_to_scaling_single_filters(
        (l, twos, cs) in layer().prop_flat_map(|l| {
            let n = l.shape.out_channels * l.shape.in_per_group;
            (
                Just(l),
                vec((-1i32..=1).prop_map(|e| 2f32.powi(e)), n),
                vec(0.5f32..2.0, n),
            )
        })
    ) {
        let k = l.k();
        let base = measure_layer(&l.w, &l.shape);
        let big = base.layer_norm as f32;
        let scaled = |factors: &[f32]| -> Vec<f32> {
            let mut w = l.w.clone();
            for (f, &c) in w.chunks_exact_mut(k).zip(factors) {
                let m = f.iter().fold(0f32, |a, x| a.max(x.abs()));
                if m >= big / 40.0 && m <= big / 2.5 {
                    f.iter_mut().for_each(|x| *x *= c);
                }
            }
            w
        };
        let m = measure_layer(&scaled(&twos), &l.shape);
        prop_assert_eq!(m.layer_norm.to_bits(), base.layer_norm.to_bits());
        prop_assert_eq!(m.sparse_filters, base.sparse_filters);
        prop_assert_eq!(m.tcq.sparsity.to_bits(), base.tcq.sparsity.to_bits());
        prop_assert_eq!(m.variance_entropy.to_bits(), base.variance_entropy.to_bits());
        let m = measure_layer(&scaled(&cs), &l.shape);
        prop_assert_eq!(m.sparse_filters, base.sparse_filters);
        prop_assert!(
            close(m.variance_entropy, base.variance_entropy, 0.0, 1e-5),
            "entropy {} vs {}", m.variance_entropy, base.variance_entropy
        );
    }

    /// The orthogonality compares L2-normalised rows by absolute cosines: scaling a row by
    /// `c ≠ 0` changes nothing. Powers of two and sign flips give the same bits, any positive
    /// factor (1e-3 to 1e3) the same value to the rounding of the f32 products.
    #[test]
    fn orthogonality_is_invariant_to_per_row_scaling(
        (l, twos, signs, cs) in layer().prop_flat_map(|l| {
            let o = l.shape.out_channels;
            (
                Just(l),
                vec(power_of_two(), o),
                vec(prop_oneof![Just(1.0f32), Just(-1.0f32)], o),
                vec((-3.0f64..3.0).prop_map(|e| 10f64.powf(e) as f32), o),
            )
        })
    ) {
        let (o, len) = (l.shape.out_channels, l.row_len());
        let base = orthogonality(&l.w, o, len);
        let per_row = |factors: &[f32]| -> Vec<f32> {
            let mut w = l.w.clone();
            for (r, &c) in w.chunks_exact_mut(len).zip(factors) {
                r.iter_mut().for_each(|x| *x *= c);
            }
            w
        };
        let exact: Vec<f32> = twos.iter().zip(&signs).map(|(t, s)| t * s).collect();
        prop_assert_eq!(orthogonality(&per_row(&exact), o, len).to_bits(), base.to_bits());
        let any = orthogonality(&per_row(&cs), o, len);
        prop_assert!(close(any, base, 0.0, 1e-6), "{} vs {}", any, base);
    }

    /// The basis statistics of the fused pass (shifted sums, vector kernel for 3×3) are the
    /// sums of adding the l∞-scaled non-sparse filters one by one, to a rounding far below
    /// `1e-12·sqrt(Σx_a²·Σx_b²)`; `basis_moments` alone gives the bits of `measure_layer`.
    #[test]
    fn basis_moments_are_the_sums_of_the_scaled_nonsparse_filters(l in layer()) {
        let k = l.k();
        let m = measure_layer(&l.w, &l.shape).basis_moments.unwrap();
        let alone = basis_moments(&l.w, k).unwrap();
        prop_assert_eq!(&alone, &m);
        prop_assert!(alone.sum.iter().chain(&alone.outer).zip(m.sum.iter().chain(&m.outer))
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let (_, sparse) = sparse_mask(&l.w, k);
        let mut direct = Moments::new(k);
        let mut x = vec![0.0; k];
        for (f, &s) in l.w.chunks_exact(k).zip(&sparse) {
            if !s {
                scale_filter(f, &mut x);
                direct.add(&x);
            }
        }
        prop_assert_eq!(m.n, direct.n);
        let n = direct.n as f64;
        let diag = |i: usize| direct.outer[i * k + i];
        for i in 0..k {
            let tol = 1e-12 * (n * diag(i)).sqrt() + 1e-300;
            prop_assert!((m.sum[i] - direct.sum[i]).abs() <= tol, "sum[{}]", i);
            for j in 0..k {
                let tol = 1e-12 * (diag(i) * diag(j)).sqrt() + 1e-300;
                let (a, b) = (m.outer[i * k + j], direct.outer[i * k + j]);
                prop_assert!((a - b).abs() <= tol, "outer[{}][{}]: {} vs {}", i, j, a, b);
            }
        }
    }
}
