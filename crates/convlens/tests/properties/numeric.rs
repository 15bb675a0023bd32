//! The shared statistics (`convlens::numeric`): `Moments` merged from parts against one pass,
//! `Bins` indices against the edges and counts of a union, `np_sum` against a plain sum.
//!
//! Floating-point sums in another order are not the same bits, so merges are exact only where
//! the additions are the same: merging a part of one vector is adding it (`0 + x = x`), and
//! sums of small integers are exact in any order. Any other split agrees to the classic bound
//! of a reordered sum, `|Δ| ≤ 2(N − 1)·u·Σ|terms|` (`u = 2⁻⁵³`, `N` terms), checked here with
//! `2·N·ε` (`ε = 2u`); `merge_is_not_exact_for_every_split` shows a split where the bits differ.

use super::config;
use convlens::numeric::{np_sum, Bins, Moments};
use proptest::collection::vec;
use proptest::prelude::*;

/// Dimension and vectors of that dimension (finite values of both signs, zeros included).
fn vectors(
    value: impl Strategy<Value = f64> + Clone,
) -> impl Strategy<Value = (usize, Vec<Vec<f64>>)> {
    (1usize..=9, 1usize..=40)
        .prop_flat_map(move |(dim, n)| (Just(dim), vec(vec(value.clone(), dim), n)))
}

fn real() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![
        1 => Just(0.0),
        4 => -1.0f64..1.0,
        2 => -1e3f64..1e3,
        1 => -1e-3f64..1e-3,
    ]
}

fn small_int() -> impl Strategy<Value = f64> + Clone {
    (-1000i32..=1000).prop_map(f64::from)
}

/// Cut points splitting `n` vectors into consecutive parts (empty parts allowed).
fn cuts(n: usize) -> impl Strategy<Value = Vec<usize>> {
    vec(0..=n, 0..6).prop_map(move |mut c| {
        c.push(0);
        c.push(n);
        c.sort();
        c
    })
}

/// Vectors with a split into parts and an order in which the parts are merged.
fn split(
    value: impl Strategy<Value = f64> + Clone,
) -> impl Strategy<Value = (usize, Vec<Vec<f64>>, Vec<usize>, Vec<usize>)> {
    vectors(value).prop_flat_map(|(dim, xs)| {
        let n = xs.len();
        cuts(n).prop_flat_map(move |c| {
            let order = Just((0..c.len() - 1).collect::<Vec<usize>>()).prop_shuffle();
            (Just(dim), Just(xs.clone()), Just(c), order)
        })
    })
}

fn one_pass(dim: usize, xs: &[Vec<f64>]) -> Moments {
    let mut m = Moments::new(dim);
    for x in xs {
        m.add(x);
    }
    m
}

/// The parts `cuts` of `xs`, each accumulated on its own, merged in `order`.
fn merged(dim: usize, xs: &[Vec<f64>], cuts: &[usize], order: &[usize]) -> Moments {
    let mut m = Moments::new(dim);
    for &p in order {
        m.merge(&one_pass(dim, &xs[cuts[p]..cuts[p + 1]]));
    }
    m
}

fn bits(m: &Moments) -> (usize, u64, Vec<u64>, Vec<u64>) {
    let b = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    (m.dim, m.n, b(&m.sum), b(&m.outer))
}

/// Naive left-to-right sum.
fn fold(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |s, &x| s + x)
}

proptest! {
    #![proptest_config(config(128))]

    /// A first part accumulated in one pass, then every further vector merged as a part of its
    /// own: the same additions as one pass, the same bits.
    #[test]
    fn merging_one_vector_parts_is_adding_them((dim, xs) in vectors(real()), first in 0usize..40) {
        let first = first.min(xs.len());
        let mut m = one_pass(dim, &xs[..first]);
        for x in &xs[first..] {
            m.merge(&one_pass(dim, std::slice::from_ref(x)));
        }
        prop_assert_eq!(bits(&m), bits(&one_pass(dim, &xs)));
    }

    /// Small integers sum exactly in any order: any split, merged in any order, is one pass.
    #[test]
    fn integer_moments_merge_exactly_in_any_split_and_order(
        (dim, xs, cuts, order) in split(small_int())
    ) {
        prop_assert_eq!(bits(&merged(dim, &xs, &cuts, &order)), bits(&one_pass(dim, &xs)));
    }

    /// Any split of any values, merged in any order: the count exactly, every sum to the bound
    /// of a reordered sum of the same terms.
    #[test]
    fn moments_merge_to_the_reordering_bound((dim, xs, cuts, order) in split(real())) {
        let m = merged(dim, &xs, &cuts, &order);
        let one = one_pass(dim, &xs);
        prop_assert_eq!(m.n, one.n);
        prop_assert_eq!(m.n, xs.len() as u64);
        let n = xs.len() as f64;
        for i in 0..dim {
            let abs: f64 = xs.iter().map(|x| x[i].abs()).sum();
            let bound = 2.0 * n * f64::EPSILON * abs;
            prop_assert!((m.sum[i] - one.sum[i]).abs() <= bound, "sum[{}]", i);
            for j in 0..dim {
                let abs: f64 = xs.iter().map(|x| (x[i] * x[j]).abs()).sum();
                let bound = 2.0 * n * f64::EPSILON * abs;
                let (a, b) = (m.outer[i * dim + j], one.outer[i * dim + j]);
                prop_assert!((a - b).abs() <= bound, "outer[{}][{}]: {} vs {}", i, j, a, b);
            }
        }
    }

    /// `Bins::index` follows the edges: `None` exactly outside `[edges[0], edges[n]]`, else
    /// the `i` with `edges[i] ≤ x < edges[i + 1]` (the last bin closed); hence monotone in `x`.
    /// Edges rise strictly from `lo` to `hi`. Ranges of width 0 (widened to ±0.5) included.
    #[test]
    fn bin_index_agrees_with_the_edges_and_is_monotone(
        lo in -100.0f64..100.0,
        width in prop_oneof![1 => Just(0.0), 9 => 1e-3f64..200.0],
        n in 1usize..=300,
        mut xs in vec(-0.2f64..1.2, 0..200),
    ) {
        let b = Bins::new(lo, lo + width, n);
        let e = b.edges();
        prop_assert_eq!(b.len(), n);
        prop_assert_eq!(e.len(), n + 1);
        let (first, last) = (e[0], e[n]);
        prop_assert!(e.windows(2).all(|w| w[0] < w[1]), "edges {:?}", e);
        if width > 0.0 {
            prop_assert_eq!((first, last), (lo, lo + width));
        }
        let span = last - first;
        for x in xs.iter_mut() {
            *x = first + *x * span;
        }
        for &edge in e {
            xs.extend([edge, edge.next_up(), edge.next_down()]);
        }
        xs.sort_by(f64::total_cmp);
        let mut prev = 0;
        for &x in &xs {
            match b.index(x) {
                None => prop_assert!(x < first || x > last, "{} in range, no bin", x),
                Some(i) => {
                    prop_assert!(i < n);
                    prop_assert!(e[i] <= x, "{} below its bin {} [{}, {})", x, i, e[i], e[i + 1]);
                    prop_assert!(
                        x < e[i + 1] || (i == n - 1 && x <= last),
                        "{} above its bin {} [{}, {})", x, i, e[i], e[i + 1]
                    );
                    prop_assert!(i >= prev, "not monotone at {}", x);
                    prev = i;
                }
            }
        }
    }

    /// Counts of a sample split in any parts add up to the counts of the whole; the
    /// probabilities of any counts are positive and sum to 1 (`None` when nothing is counted).
    #[test]
    fn bin_counts_of_a_union_are_the_sums_of_the_counts(
        n in 1usize..=80,
        xs in vec(prop_oneof![9 => -1.0f64..1.0, 1 => -3.0f64..3.0], 0..300),
        cuts in vec(0.0f64..1.0, 0..5),
    ) {
        let b = Bins::new(-1.0, 1.0, n);
        let count = |v: &[f64]| {
            let mut c = vec![0u64; n];
            for &x in v {
                if let Some(i) = b.index(x) {
                    c[i] += 1;
                }
            }
            c
        };
        let mut at: Vec<usize> = cuts.iter().map(|f| (f * xs.len() as f64) as usize).collect();
        at.extend([0, xs.len()]);
        at.sort();
        let mut sum = vec![0u64; n];
        for w in at.windows(2) {
            for (s, c) in sum.iter_mut().zip(count(&xs[w[0]..w[1]])) {
                *s += c;
            }
        }
        let whole = count(&xs);
        prop_assert_eq!(&sum, &whole);
        let inside = xs.iter().filter(|x| (-1.0..=1.0).contains(*x)).count() as u64;
        prop_assert_eq!(whole.iter().sum::<u64>(), inside);
        match b.probabilities(&whole) {
            None => prop_assert_eq!(inside, 0),
            Some(p) => {
                prop_assert!(p.iter().all(|&v| v > 0.0));
                prop_assert!((np_sum(&p) - 1.0).abs() <= 1e-12);
            }
        }
    }

    /// `np_sum` of fewer than 8 values is the plain left-to-right sum.
    #[test]
    fn np_sum_of_short_arrays_is_the_plain_sum(a in vec(real(), 0..8)) {
        prop_assert_eq!(np_sum(&a).to_bits(), fold(&a).to_bits());
    }

    /// Any length (blocks of 8 accumulators, pairwise halves above 128): sums of integers are
    /// exact; any values agree with the plain sum to the bound of a reordered sum; scaling by a
    /// power of two commutes with the sum bit for bit, negating up to the sign of a zero sum.
    #[test]
    fn np_sum_is_a_reordered_sum(
        ints in vec(-1_000_000i64..1_000_000, 0..600),
        a in vec(real(), 0..600),
        e in -20i32..20,
    ) {
        let f: Vec<f64> = ints.iter().map(|&i| i as f64).collect();
        prop_assert_eq!(np_sum(&f), ints.iter().sum::<i64>() as f64);
        let s = np_sum(&a);
        let abs: f64 = a.iter().map(|x| x.abs()).sum();
        prop_assert!((s - fold(&a)).abs() <= 2.0 * a.len() as f64 * f64::EPSILON * abs);
        let neg: Vec<f64> = a.iter().map(|x| -x).collect();
        prop_assert_eq!(np_sum(&neg), -s);
        let c = 2f64.powi(e);
        let scaled: Vec<f64> = a.iter().map(|x| x * c).collect();
        prop_assert_eq!(np_sum(&scaled).to_bits(), (s * c).to_bits());
    }
}

/// Why merges of general parts are compared to a bound: `(1e16 + 1) + 1` rounds twice to
/// `1e16`, `1e16 + (1 + 1)` is `1e16 + 2`.
#[test]
fn merge_is_not_exact_for_every_split() {
    let xs = [vec![1e16], vec![1.0], vec![1.0]];
    let one = one_pass(1, &xs);
    let parts = merged(1, &xs, &[0, 1, 3], &[0, 1]);
    assert_eq!(one.sum[0], 1e16);
    assert_eq!(parts.sum[0], 1e16 + 2.0);
}
