//! Permutation tests and Benjamini–Hochberg (`compare::stats`) on random designs: the
//! labellings a test draws keep each block's count of labels, an exact test visits every
//! distinct labelling once and its p-value is a multiple of one over their number, every
//! p-value lies in (0, 1]; q-values lie in [p, 1] and keep the order of the p-values.

use super::config;
use convlens::compare::stats::{benjamini_hochberg, permutation_test, Design};
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Labels of up to 10 units and links between them.
fn design() -> impl Strategy<Value = Design> {
    (1usize..=10).prop_flat_map(|n| {
        (vec(any::<bool>(), n), vec((0..n, 0..n), 0..n))
            .prop_map(|(labels, links)| Design::linked(labels, &links))
    })
}

/// Per block, the number of units labelled `true`.
fn block_counts(d: &Design, labels: &[bool]) -> Vec<usize> {
    d.blocks
        .iter()
        .map(|b| b.iter().filter(|&&u| labels[u]).count())
        .collect()
}

/// Every labelling of the units with the design's count of `true` labels in each block.
fn brute_force_labellings(d: &Design) -> usize {
    let n = d.labels.len();
    let want = block_counts(d, &d.labels);
    (0u32..1 << n)
        .filter(|mask| {
            let l: Vec<bool> = (0..n).map(|u| mask >> u & 1 == 1).collect();
            block_counts(d, &l) == want
        })
        .count()
}

/// A statistic of a labelling: the weighted share of `true` labels, `None` for some
/// labellings when `gaps` (left out of the null distribution).
fn statistic(weights: &[f64], gaps: bool, labels: &[bool]) -> Option<f64> {
    let s: f64 = weights
        .iter()
        .zip(labels)
        .filter(|p| *p.1)
        .map(|p| p.0)
        .sum();
    if gaps && labels.iter().filter(|&&l| l).count() % 3 == 1 && labels.first() == Some(&false) {
        return None;
    }
    Some(s)
}

proptest! {
    #![proptest_config(config(128))]

    /// `Design::linked` partitions the units into the connected groups of the links.
    #[test]
    fn linked_blocks_are_the_connected_groups(
        (n, links) in (1usize..=12).prop_flat_map(|n| (Just(n), vec((0..n, 0..n), 0..12)))
    ) {
        let d = Design::linked(vec![false; n], &links);
        let mut seen: Vec<usize> = d.blocks.concat();
        seen.sort();
        prop_assert_eq!(seen, (0..n).collect::<Vec<usize>>());
        let block_of = |u: usize| d.blocks.iter().position(|b| b.contains(&u));
        for &(a, b) in &links {
            prop_assert_eq!(block_of(a), block_of(b));
        }
        // each block is connected: a search from its first unit along links reaches all of it
        for b in &d.blocks {
            let mut reached = BTreeSet::from([b[0]]);
            let mut todo = vec![b[0]];
            while let Some(u) = todo.pop() {
                for &(x, y) in &links {
                    for (from, to) in [(x, y), (y, x)] {
                        if from == u && reached.insert(to) {
                            todo.push(to);
                        }
                    }
                }
            }
            prop_assert_eq!(reached, b.iter().copied().collect::<BTreeSet<usize>>());
        }
    }

    /// The number of labellings is the count of all labellings with the same count per block.
    #[test]
    fn labellings_count_the_labellings(d in design()) {
        let all = brute_force_labellings(&d);
        prop_assert_eq!(d.labellings(usize::MAX), Some(all));
        prop_assert_eq!(d.labellings(all), Some(all));
        if all > 1 {
            prop_assert_eq!(d.labellings(all - 1), None);
        }
    }

    /// An exact test evaluates the observed labelling, then every distinct labelling once; its
    /// p-value is `#{≥ observed} / labellings`, at least one over their number.
    #[test]
    fn exact_tests_enumerate_every_labelling(
        d in design(),
        weights in vec(-1.0f64..1.0, 10),
        gaps in any::<bool>(),
    ) {
        let total = brute_force_labellings(&d);
        let mut seen: Vec<Vec<bool>> = Vec::new();
        let t = permutation_test(&d, total, 7, true, |l| {
            seen.push(l.to_vec());
            statistic(&weights, gaps, l)
        });
        let observed = statistic(&weights, gaps, &d.labels);
        let Some(t) = t else {
            prop_assert!(observed.is_none() || gaps);
            return Ok(());
        };
        prop_assert!(t.exact);
        prop_assert_eq!(&seen[0], &d.labels);
        let visited = &seen[1..];
        prop_assert_eq!(visited.len(), total);
        let distinct: BTreeSet<&Vec<bool>> = visited.iter().collect();
        prop_assert_eq!(distinct.len(), total);
        let want = block_counts(&d, &d.labels);
        for l in visited {
            prop_assert_eq!(block_counts(&d, l), want.clone());
        }
        let null: Vec<f64> = visited.iter().filter_map(|l| statistic(&weights, gaps, l)).collect();
        prop_assert_eq!(t.permutations, null.len());
        prop_assert!(t.p_value > 0.0 && t.p_value <= 1.0, "p = {}", t.p_value);
        let k = t.p_value * null.len() as f64;
        prop_assert!((k - k.round()).abs() < 1e-9, "p = {} of {}", t.p_value, null.len());
        if !gaps {
            // the observed labelling is one of them
            prop_assert!(t.p_value >= 1.0 / total as f64);
        }
    }

    /// A test over random labellings shuffles labels within blocks only; its p-value is
    /// `(1 + #{≥ observed}) / (1 + permutations)`, in (0, 1].
    #[test]
    fn random_tests_shuffle_within_blocks(
        d in design(),
        weights in vec(-1.0f64..1.0, 10),
        permutations in 1usize..60,
        seed in any::<u64>(),
        exact in any::<bool>(),
    ) {
        // an exact test asked for more labellings than `permutations`: random ones too
        let exact = exact && d.labellings(permutations).is_none();
        let want = block_counts(&d, &d.labels);
        let mut seen: Vec<Vec<bool>> = Vec::new();
        let t = permutation_test(&d, permutations, seed, exact, |l| {
            seen.push(l.to_vec());
            statistic(&weights, false, l)
        })
        .unwrap();
        prop_assert!(!t.exact);
        prop_assert_eq!(t.permutations, permutations);
        prop_assert_eq!(seen.len(), permutations + 1);
        for l in &seen {
            prop_assert_eq!(block_counts(&d, l), want.clone());
        }
        prop_assert!(t.p_value > 0.0 && t.p_value <= 1.0);
        let k = t.p_value * (permutations + 1) as f64;
        prop_assert!(k >= 1.0 - 1e-9 && (k - k.round()).abs() < 1e-9, "p = {}", t.p_value);
        // same seed, same labellings
        let mut again: Vec<Vec<bool>> = Vec::new();
        permutation_test(&d, permutations, seed, exact, |l| {
            again.push(l.to_vec());
            statistic(&weights, false, l)
        });
        prop_assert_eq!(again, seen);
    }

    /// A statistic that does not depend on the labels: every labelling ties, p = 1, the null
    /// has no spread beyond the rounding of its mean, and no effect size (the mean of `n`
    /// copies of `c` may round off `c`, leaving a standard deviation of ~1e-17: before the
    /// flat-null check this gave an effect size of order 1, e.g. for three copies of
    /// 0.24603587916010677).
    #[test]
    fn a_flat_statistic_has_p_one(d in design(), exact in any::<bool>(), c in -1.0f64..1.0) {
        let t = permutation_test(&d, 50, 1, exact, |_| Some(c)).unwrap();
        prop_assert_eq!(t.p_value, 1.0);
        prop_assert!((t.null_mean - c).abs() <= 4.0 * f64::EPSILON * c.abs());
        prop_assert!(t.null_sd <= 4.0 * f64::EPSILON * c.abs(), "sd {}", t.null_sd);
        prop_assert_eq!(t.effect_size, None);
    }

    /// q-values: `None` stays `None`, `p ≤ q ≤ 1` (up to one rounding: `p·m/m` can be one ulp
    /// below `p`), the order of the p-values is kept (equal p-values get equal q-values), and
    /// permuting the family permutes the q-values bit for bit.
    #[test]
    fn benjamini_hochberg_keeps_order_and_bounds(
        p in vec(prop_oneof![1 => Just(None), 1 => Just(Some(1.0)), 6 => (0.0f64..=1.0).prop_map(Some)], 0..40),
        perm_seed in any::<u64>(),
    ) {
        let q = benjamini_hochberg(&p);
        prop_assert_eq!(q.len(), p.len());
        for (a, b) in p.iter().zip(&q) {
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!(*a * (1.0 - f64::EPSILON) <= *b && *b <= 1.0, "p {} q {}", a, b);
            }
        }
        for i in 0..p.len() {
            for j in 0..p.len() {
                if let (Some(pi), Some(pj), Some(qi), Some(qj)) = (p[i], p[j], q[i], q[j]) {
                    if pi <= pj {
                        prop_assert!(qi <= qj);
                    }
                }
            }
        }
        let mut order: Vec<usize> = (0..p.len()).collect();
        let mut rng = convlens::numeric::Rng::new(perm_seed);
        rng.shuffle(&mut order);
        let pp: Vec<Option<f64>> = order.iter().map(|&i| p[i]).collect();
        let qq = benjamini_hochberg(&pp);
        for (k, &i) in order.iter().enumerate() {
            prop_assert_eq!(qq[k].map(f64::to_bits), q[i].map(f64::to_bits));
        }
    }
}
