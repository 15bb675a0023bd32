//! Statistics with known answers: permutation p-values of the shift on synthetic groups of
//! models (uniform under the null, powerful under a true shift), and the bias-reduced divergence
//! against the exact KL of two Gaussians (and two Laplace laws) sampled at the sizes of real
//! first layers.

use convlens::compare::divergence::{kl_sym, Bins, BINS};
use convlens::compare::shift::{shift_cells, Density, Rng, ShiftInputs};
use convlens::compare::stats::smoothed_probabilities;
use convlens::compare::stream::{ModelHists, CELLS};

/// Standard normal deviates (Box–Muller on SplitMix64).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn laplace(rng: &mut Rng) -> f64 {
    let u = rng.next_f64() - 0.5;
    -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
}

/// One synthetic "model": `n` one-component coefficients binned into the overall cell and the
/// `first` cell, with their sums.
fn model(samples: &[f64], bins: &Bins) -> ModelHists {
    let nb = bins.len();
    let mut h = ModelHists {
        comps: 1,
        bins: nb,
        n: [0; CELLS],
        counts: vec![0; CELLS * nb],
        fine_bins: 0,
        fine: Vec::new(),
        sum: vec![0.0; CELLS],
        sum_sq: vec![0.0; CELLS],
    };
    for &x in samples {
        for cell in [0, 1] {
            if let Some(b) = bins.index(x) {
                h.counts[cell * nb + b] += 1;
            }
            h.n[cell] += 1;
            h.sum[cell] += x;
            h.sum_sq[cell] += x * x;
        }
    }
    h
}

/// p-value of the overall cell for two groups of `per_group` models of `n` filters each, group B
/// shifted by `delta`; `paired` links model i of A with model i of B.
fn p_value(
    seed: u64,
    per_group: usize,
    n: usize,
    delta: f64,
    permutations: usize,
    paired: bool,
) -> f64 {
    let mut rng = Rng::new(seed);
    let bins = Bins::new(-5.0, 5.0 + delta, BINS);
    let hists: Vec<ModelHists> = (0..2 * per_group)
        .map(|m| {
            let shift = if m >= per_group { delta } else { 0.0 };
            let s: Vec<f64> = (0..n).map(|_| normal(&mut rng) + shift).collect();
            model(&s, &bins)
        })
        .collect();
    let ga: Vec<usize> = (0..per_group).collect();
    let gb: Vec<usize> = (per_group..2 * per_group).collect();
    let links: Vec<(usize, usize)> = if paired {
        (0..per_group).map(|i| (i, per_group + i)).collect()
    } else {
        Vec::new()
    };
    let cells = shift_cells(&ShiftInputs {
        hists: &hists,
        groups: [&ga, &gb],
        replicates: &[],
        weights: &[1.0],
        bins: &bins,
        fine: None,
        density: Density::Histogram,
        splits: 0,
        bootstrap: 0,
        seed,
        permutations,
        links: &links,
        exact: true,
    });
    let p = cells[0].permutation.as_ref().expect("a permutation test");
    // the test's observed statistic is the reported KL
    assert!(p.permutations > 0);
    p.p_value
}

/// Kolmogorov–Smirnov distance of a sample from U(0, 1).
fn ks_uniform(mut p: Vec<f64>) -> f64 {
    p.sort_by(f64::total_cmp);
    let n = p.len() as f64;
    p.iter()
        .enumerate()
        .map(|(i, &x)| ((i + 1) as f64 / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max)
}

#[test]
fn permutation_p_values_are_uniform_under_the_null() {
    // 6 vs 6 models of 48 filters (a resnet20 stem), 199 random relabellings, 300 seeds
    let p: Vec<f64> = (0..300)
        .map(|s| p_value(1000 + s, 6, 48, 0.0, 199, false))
        .collect();
    let d = ks_uniform(p.clone());
    // KS critical value at the 1 % level: 1.63 / sqrt(300) = 0.094 (plus the 1/200 grid)
    assert!(d < 0.10, "KS distance {d}");
    let rej = p.iter().filter(|&&x| x <= 0.05).count() as f64 / p.len() as f64;
    assert!((0.01..=0.10).contains(&rej), "type-I error at 5 %: {rej}");
    eprintln!("null (random relabellings): KS {d:.3}, rejection rate at 0.05: {rej:.3}");
}

#[test]
fn paired_exact_test_keeps_its_level() {
    // 6 pairs: 2^6 = 64 labellings, enumerated exactly; the symmetric KL makes p >= 2/64
    let p: Vec<f64> = (0..300)
        .map(|s| p_value(5000 + s, 6, 48, 0.0, 1000, true))
        .collect();
    assert!(p.iter().all(|&x| x >= 2.0 / 64.0 - 1e-12));
    let rej = p.iter().filter(|&&x| x <= 0.05).count() as f64 / p.len() as f64;
    // P(p <= 0.05) = P(p = 2/64) = 1/32 for a valid exact test
    assert!(rej <= 0.06, "type-I error at 5 %: {rej}");
    let d = ks_uniform(p);
    assert!(d < 0.12, "KS distance {d}");
}

#[test]
fn permutation_test_has_power_under_a_true_shift() {
    // group B's coefficients shifted by delta sd, 6 vs 6 models of 48 filters (a stem's size)
    let power = |delta: f64| {
        let p: Vec<f64> = (0..100)
            .map(|s| p_value(9000 + s, 6, 48, delta, 199, false))
            .collect();
        p.iter().filter(|&&x| x <= 0.05).count() as f64 / p.len() as f64
    };
    let (p_half, p_one) = (power(0.5), power(1.0));
    eprintln!("power at 5 %: 0.5 sd shift {p_half:.2}, 1 sd shift {p_one:.2}");
    assert!(p_half >= 0.5, "power at 0.5 sd: {p_half}");
    assert!(p_one >= 0.95, "power at 1 sd: {p_one}");
    // exact test with 6 vs 6 models: C(12, 6) = 924 labellings, all enumerated; a clear shift
    // is at the smallest possible p (the labelling and its mirror image)
    let p = p_value(42, 6, 48, 1.0, 1000, false);
    assert!(p <= 2.0 / 924.0 + 1e-12, "exact p {p}");
}

/// Exact symmetric KL of N(0, 1) and N(mu, s²).
fn gauss_kl_sym(mu: f64, s: f64) -> f64 {
    let kl = |m1: f64, s1: f64, m2: f64, s2: f64| {
        (s2 / s1).ln() + (s1 * s1 + (m1 - m2).powi(2)) / (2.0 * s2 * s2) - 0.5
    };
    kl(0.0, 1.0, mu, s) + kl(mu, s, 0.0, 1.0)
}

/// Exact symmetric KL of Laplace(0, 1) and Laplace(mu, 1).
fn laplace_kl_sym(mu: f64) -> f64 {
    2.0 * (mu.abs() + (-mu.abs()).exp() - 1.0)
}

/// Mean absolute errors (plug-in, smoothed) of the symmetric KL over `reps` samples of size `n`.
fn errors(n: usize, reps: u64, truth: f64, draw: &dyn Fn(&mut Rng, bool) -> f64) -> (f64, f64) {
    let (mut e_plug, mut e_smooth) = (0.0, 0.0);
    for r in 0..reps {
        let mut rng = Rng::new(77 + r);
        let a: Vec<f64> = (0..n).map(|_| draw(&mut rng, false)).collect();
        let b: Vec<f64> = (0..n).map(|_| draw(&mut rng, true)).collect();
        // one range for both samples, as the shift's global coefficient range
        let lo = a.iter().chain(&b).copied().fold(f64::INFINITY, f64::min);
        let hi = a
            .iter()
            .chain(&b)
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let bins = Bins::new(lo, hi, BINS);
        let count = |x: &[f64]| {
            let mut c = vec![0u64; BINS];
            for &v in x {
                c[bins.index(v).unwrap()] += 1;
            }
            c
        };
        let sd = |x: &[f64]| {
            let m = x.iter().sum::<f64>() / x.len() as f64;
            (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
        };
        let (ca, cb) = (count(&a), count(&b));
        let plug = kl_sym(
            &bins.probabilities(&ca).unwrap(),
            &bins.probabilities(&cb).unwrap(),
        );
        let smooth = kl_sym(
            &smoothed_probabilities(&ca, &bins, sd(&a)).unwrap(),
            &smoothed_probabilities(&cb, &bins, sd(&b)).unwrap(),
        );
        e_plug += (plug - truth).abs();
        e_smooth += (smooth - truth).abs();
    }
    (e_plug / reps as f64, e_smooth / reps as f64)
}

#[test]
fn smoothed_divergence_is_closer_to_the_true_kl_than_the_plug_in_at_small_n() {
    // first-layer sizes: 48 (16 x 3, resnet20 / wrn16_2), 96 (32 x 3), 192 (64 x 3, ResNet-18)
    for n in [48, 96, 192] {
        for (mu, s) in [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (0.0, 1.5)] {
            let truth = gauss_kl_sym(mu, s);
            let (plug, smooth) = errors(n, 60, truth, &|rng, b| {
                let x = normal(rng);
                if b {
                    mu + s * x
                } else {
                    x
                }
            });
            eprintln!("Gaussian n={n} mu={mu} s={s}: true {truth:.3}, mean |error| plug-in {plug:.3}, smoothed {smooth:.3}");
            assert!(
                smooth < plug,
                "n={n} mu={mu} s={s}: smoothed {smooth} vs plug-in {plug}"
            );
            assert!(
                smooth < 0.5 * plug,
                "n={n} mu={mu} s={s}: smoothed {smooth} vs plug-in {plug}"
            );
        }
        // heavier tails than the kernel: Laplace laws
        for mu in [0.0, 1.0] {
            let truth = laplace_kl_sym(mu);
            let (plug, smooth) = errors(n, 60, truth, &|rng, b| {
                laplace(rng) + if b { mu } else { 0.0 }
            });
            eprintln!("Laplace n={n} mu={mu}: true {truth:.3}, mean |error| plug-in {plug:.3}, smoothed {smooth:.3}");
            assert!(
                smooth < plug,
                "Laplace n={n} mu={mu}: smoothed {smooth} vs plug-in {plug}"
            );
        }
    }
}
