//! Kullback–Leibler divergences (`compare::divergence`): zero for identical inputs, not
//! negative beyond rounding, the symmetric one symmetric, both blind to the scale of their
//! inputs (they normalise them), infinite exactly when `p` has mass where `q` has none.

use super::config;
use convlens::compare::divergence::{kl, kl_sym, weighted_kl_sym};
use convlens::numeric::np_sum;
use proptest::collection::vec;
use proptest::prelude::*;

/// Non-negative weights (zeros included) with a positive sum.
fn weights(n: usize) -> impl Strategy<Value = Vec<f64>> {
    vec(
        prop_oneof![1 => Just(0.0), 6 => 1e-7f64..1.0, 1 => 1e-3f64..1e3],
        n,
    )
    .prop_filter("positive sum", |v| v.iter().any(|&x| x > 0.0))
}

/// Two distributions of one length: independent, or `q` within a relative `10^-d` of `p`
/// (where rounding matters most).
fn pair() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (1usize..=80).prop_flat_map(|n| {
        let near = (weights(n), vec(-1.0f64..1.0, n), 3i32..=16).prop_map(|(p, d, e)| {
            let q = p
                .iter()
                .zip(&d)
                .map(|(&x, &r)| x * (1.0 + r * 10f64.powi(-e)))
                .collect();
            (p, q)
        });
        prop_oneof![(weights(n), weights(n)), near]
    })
}

/// The rounding of `kl` of `n` terms (a few units in the last place per term).
fn slack(n: usize) -> f64 {
    4.0 * n as f64 * f64::EPSILON
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn kl_of_identical_inputs_is_zero(p in (1usize..=80).prop_flat_map(weights)) {
        prop_assert_eq!(kl(&p, &p), 0.0);
        prop_assert_eq!(kl_sym(&p, &p), 0.0);
    }

    /// Gibbs' inequality, to rounding: `KL ≥ 0` up to a few ulps per term; infinite exactly
    /// when some `p_i > 0` has `q_i = 0`.
    #[test]
    fn kl_is_not_negative((p, q) in pair()) {
        let d = kl(&p, &q);
        let infinite = p.iter().zip(&q).any(|(&a, &b)| a > 0.0 && b == 0.0);
        prop_assert_eq!(d == f64::INFINITY, infinite, "kl = {}", d);
        prop_assert!(d >= -slack(p.len()), "kl = {}", d);
        prop_assert!(kl_sym(&p, &q) >= -2.0 * slack(p.len()));
    }

    #[test]
    fn symmetric_kl_is_symmetric((p, q) in pair()) {
        prop_assert_eq!(kl_sym(&p, &q).to_bits(), kl_sym(&q, &p).to_bits());
        prop_assert_eq!(
            kl_sym(&p, &q).to_bits(),
            (kl(&p, &q) + kl(&q, &p)).to_bits()
        );
    }

    /// Both inputs are normalised first: scaling either by a power of two gives the same bits,
    /// by any positive factor the same value to rounding (infinite stays infinite).
    #[test]
    fn kl_does_not_depend_on_the_scale_of_its_inputs(
        (p, q) in pair(),
        e in -30i32..30,
        c in 1e-3f64..1e3,
    ) {
        let d = kl(&p, &q);
        let scale = |v: &[f64], c: f64| v.iter().map(|x| x * c).collect::<Vec<f64>>();
        let two = 2f64.powi(e);
        prop_assert_eq!(kl(&scale(&p, two), &q).to_bits(), d.to_bits());
        prop_assert_eq!(kl(&p, &scale(&q, two)).to_bits(), d.to_bits());
        let dc = kl(&scale(&p, c), &scale(&q, 1.0 / c));
        prop_assert!(
            dc == d || (dc - d).abs() <= 1e-12 * d.abs() + 4.0 * slack(p.len()),
            "{} vs {}", dc, d
        );
    }

    /// The weighted sum over components is the `np_sum` of the weights times the symmetric KLs.
    #[test]
    fn weighted_kl_sums_the_component_divergences(
        comps in vec(pair(), 1..6),
        w in vec(0.0f64..1.0, 6),
    ) {
        let p: Vec<Vec<f64>> = comps.iter().map(|c| c.0.clone()).collect();
        let q: Vec<Vec<f64>> = comps.iter().map(|c| c.1.clone()).collect();
        let w = &w[..comps.len()];
        let (total, per) = weighted_kl_sym(&p, &q, w);
        prop_assert_eq!(per.len(), comps.len());
        for (c, &k) in comps.iter().zip(&per) {
            prop_assert_eq!(k.to_bits(), kl_sym(&c.0, &c.1).to_bits());
        }
        let terms: Vec<f64> = per.iter().zip(w).map(|(k, w)| w * k).collect();
        prop_assert_eq!(total.to_bits(), np_sum(&terms).to_bits());
    }
}
