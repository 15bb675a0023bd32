//! The worst case for the stem alone (projected gradient ascent on conv + ReLU): at least as
//! strong on the stem as the network-level PGD examples, zero at ε = 0, inside its constraints,
//! deterministic, and equal to the analytic optimum on a 1×1 stem.

use convlens::stem::{
    choose_normalization, Batch, ImageSet, LoadOptions, Normalization, PgdOptions, StemModel,
};
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

fn model(name: &str) -> StemModel {
    StemModel::load(
        &fixture(&format!("zoo/cifar10-mini/{name}.safetensors")),
        &LoadOptions::default(),
    )
    .unwrap()
}

#[test]
fn worst_case_is_at_least_the_real_attack_on_the_stem() {
    let set = ImageSet::load_npz(&fixture("stem/adv_examples.npz")).unwrap();
    let norm = choose_normalization(None, None, &set).unwrap();
    let clean = set.clean_batch();
    for name in ["resnet20_robust_s0", "resnet20_normal_s0"] {
        let m = model(name);
        let real = m
            .perturbation(&clean, &set.perturbed_batch(name).unwrap(), &norm)
            .unwrap();
        let worst = m
            .worst_case_gain(&clean, &norm, &PgdOptions::default())
            .unwrap();
        let (g, r) = (worst.gain.unwrap(), real.total.post_change.unwrap());
        eprintln!("{name}: stem gain {g:.4}, real PGD examples {r:.4}");
        assert!(g >= r, "{name}: worst case {g} < real attack {r}");
        // also for another seed
        let other = m
            .worst_case_gain(
                &clean,
                &norm,
                &PgdOptions {
                    seed: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(other.gain.unwrap() >= r);
        // δ respects the L∞ ball and the image range
        let eps = 8.0f32 / 255.0;
        for (d, x) in worst.delta.iter().zip(clean.data) {
            assert!(d.abs() <= eps + 1e-6, "{d}");
            assert!((-1e-6..=1.0 + 1e-6).contains(&(x + d)), "{x} + {d}");
        }
    }
}

#[test]
fn epsilon_zero_gives_zero() {
    let set = ImageSet::load_npz(&fixture("stem/adv_examples.npz")).unwrap();
    let norm = choose_normalization(None, None, &set).unwrap();
    let w = model("resnet20_robust_s0")
        .worst_case_gain(
            &set.clean_batch(),
            &norm,
            &PgdOptions {
                eps: 0.0,
                steps: 5,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(w.gain, Some(0.0));
    assert_eq!(w.perturbation.total.pre_change, Some(0.0));
    assert!(w.delta.iter().all(|&d| d == 0.0));
}

#[test]
fn worst_case_does_not_depend_on_the_thread_count() {
    let set = ImageSet::load_npz(&fixture("stem/adv_examples.npz")).unwrap();
    let norm = choose_normalization(None, None, &set).unwrap();
    let m = model("resnet20_normal_s0");
    let opts = PgdOptions {
        steps: 5,
        ..Default::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| m.worst_case_gain(&set.clean_batch(), &norm, &opts).unwrap())
    };
    let (a, b) = (run(1), run(3));
    assert_eq!(a, b);
    assert_eq!(a.delta, b.delta);
}

#[test]
fn one_by_one_stem_reaches_the_analytic_optimum() {
    // identity 1×1 filter, no bias: relu(x + δ) − relu(x) = δ while x + δ > 0, so on a
    // constant image x = 0.5 every pixel's best δ is ±ε and the gain is ε / x
    let m = StemModel::from_weights(
        "id",
        vec![1.0],
        vec![0.0],
        [1, 1, 1, 1],
        1,
        [1, 1],
        [0; 4],
        [1, 1],
    )
    .unwrap();
    let eps = 8.0 / 255.0;
    let opts = PgdOptions {
        eps,
        steps: 10,
        ..Default::default()
    };
    let none = Normalization::none(1);
    let gain = |x: f32| {
        let img = vec![x; 16];
        m.worst_case_gain(&Batch::new(&img, 1, 1, 4, 4).unwrap(), &none, &opts)
            .unwrap()
    };
    let w = gain(0.5);
    assert!((w.gain.unwrap() - eps / 0.5).abs() < 1e-9, "{:?}", w.gain);
    assert!(w
        .delta
        .iter()
        .all(|&d| (f64::from(d).abs() - eps).abs() < 1e-6));
    assert_eq!(w.perturbation.total.relu_removed, Some(0.0));
    // near the top of the range the box allows only 0.02 upwards: a pixel whose random start
    // points up stays at that local maximum (projected ascent is a lower bound of the worst
    // case), the others reach −ε; so the gain lies between the all-up and the all-down δ
    let w = gain(0.98);
    let g = w.gain.unwrap();
    let (up, down) = ((1.0 - 0.98f32) as f64 / 0.98, eps / 0.98);
    assert!(g > up && g <= down + 1e-9, "{g} not in ({up}, {down}]");
    for &d in &w.delta {
        let d = f64::from(d);
        assert!((d + eps).abs() < 1e-6 || (d - 0.02).abs() < 1e-6, "{d}");
    }
}
