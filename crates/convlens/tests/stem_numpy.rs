//! Stem activations against a direct numpy computation of conv + ReLU
//! (`fixtures/stem/make_expected.py` → `fixtures/stem/expected.json`).

use convlens::stem::{
    analyse, AnalysisOptions, Batch, BnChoice, ImageSet, LoadOptions, Normalization, StemModel,
};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("stem/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn case<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The first two images of the fixture npz (clean and the robust resnet20's PGD examples).
fn images() -> (ImageSet, Vec<f32>, Vec<f32>) {
    let set = ImageSet::load_npz(&fixture("stem/adv_examples.npz")).unwrap();
    assert_eq!((set.n, set.c, set.h, set.w), (20, 3, 32, 32));
    let per = 3 * 32 * 32;
    let clean = set.clean[..2 * per].to_vec();
    let adv = set.perturbed_batch("resnet20_robust_s0").unwrap().data[..2 * per].to_vec();
    (set, clean, adv)
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a} vs numpy {b} (tolerance {tol})"
    );
}

fn check_case(model: &StemModel, c: &Value) {
    let (set, clean, adv) = images();
    let norm =
        Normalization::new(set.mean.clone().unwrap(), set.std.clone().unwrap(), "npz").unwrap();
    let run = |x: &[f32]| {
        let b = Batch::new(x, 2, 3, 32, 32).unwrap();
        let xn = norm.apply_batch(&b).unwrap();
        model
            .forward(&Batch::new(&xn, 2, 3, 32, 32).unwrap())
            .unwrap()
    };
    let a = run(&clean);
    let p = run(&adv);
    let shape: Vec<usize> = c["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(vec![a.n, a.channels, a.h, a.w], shape);
    let at = |act: &[f32], pos: &[usize]| -> f64 {
        f64::from(act[((pos[0] * a.channels + pos[1]) * a.h + pos[2]) * a.w + pos[3]])
    };
    for v in c["values"].as_array().unwrap() {
        let pos: Vec<usize> = v["pos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        close(
            at(&a.pre, &pos),
            f(&v["pre"]),
            1e-5,
            &format!("pre at {pos:?}"),
        );
        close(
            at(&a.post, &pos),
            f(&v["post"]),
            1e-5,
            &format!("post at {pos:?}"),
        );
        if let Some(x) = v.get("adv_pre") {
            close(
                at(&p.pre, &pos),
                f(x),
                1e-5,
                &format!("adversarial pre at {pos:?}"),
            );
            close(
                at(&p.post, &pos),
                f(&v["adv_post"]),
                1e-5,
                "adversarial post",
            );
        }
    }
    // sums over all 2·O·H·W values: every value within 1e-5 keeps each sum within n·1e-5
    let n = a.pre.len() as f64;
    for (act, key) in [(&a, "clean"), (&p, "adversarial")] {
        let s = &c[key];
        let sum = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
        let sq = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        close(sum(&act.pre), f(&s["pre_sum"]), n * 1e-6, "sum of pre");
        close(sum(&act.post), f(&s["post_sum"]), n * 1e-6, "sum of post");
        close(
            sq(&act.pre),
            f(&s["pre_sq"]),
            1e-6 * f(&s["pre_sq"]),
            "sum of pre²",
        );
        close(
            sq(&act.post),
            f(&s["post_sq"]),
            1e-6 * f(&s["post_sq"]),
            "sum of post²",
        );
    }
    // the same on every value, computed independently from the f32 activations: the
    // adversarial metrics
    let b1 = Batch::new(&clean, 2, 3, 32, 32).unwrap();
    let b2 = Batch::new(&adv, 2, 3, 32, 32).unwrap();
    let pert = model.perturbation(&b1, &b2, &norm).unwrap();
    let e = &c["adversarial"];
    close(
        pert.total.pre_change.unwrap(),
        f(&e["pre_change"]),
        1e-9,
        "pre change",
    );
    close(
        pert.total.post_change.unwrap(),
        f(&e["post_change"]),
        1e-9,
        "post change",
    );
    close(
        pert.total.relu_removed.unwrap(),
        f(&e["relu_removed"]),
        1e-9,
        "relu removed",
    );
    for (o, (x, y)) in pert
        .filters
        .iter()
        .zip(e["filter_relu_removed"].as_array().unwrap())
        .enumerate()
    {
        close(
            x.relu_removed.unwrap(),
            f(y),
            1e-9,
            &format!("filter {o} removed"),
        );
    }
    for (o, (x, y)) in pert
        .filters
        .iter()
        .zip(e["filter_post_change"].as_array().unwrap())
        .enumerate()
    {
        match (x.post_change, y.as_f64()) {
            (Some(a), Some(b)) => close(a, b, 1e-9, &format!("filter {o} post change")),
            (None, None) => {}
            other => panic!("filter {o} post change: {other:?}"),
        }
    }
    let shapes = model.filter_shapes(0.9);
    for (s, (cs, ms)) in shapes.iter().zip(
        c["centre_share"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["max_similarity"].as_array().unwrap()),
    ) {
        close(s.centre_share.unwrap(), f(cs), 1e-9, "centre share");
        close(s.max_similarity.unwrap(), f(ms), 1e-9, "max similarity");
    }
}

#[test]
fn safetensors_stem_with_folded_bn_matches_numpy() {
    let e = expected();
    let m = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(m.info.layer, "conv1");
    assert_eq!(m.info.batch_norm.as_deref(), Some("bn1"));
    assert!(
        m.info.batch_norm_rule.contains("by name"),
        "{}",
        m.info.batch_norm_rule
    );
    assert!(
        m.info.geometry.starts_with("assumed"),
        "{}",
        m.info.geometry
    );
    assert_eq!((m.info.stride, m.info.pads), ([1, 1], [1, 1, 1, 1]));
    check_case(&m, case(&e, "resnet20_robust_s0.safetensors"));
}

#[test]
fn onnx_stem_with_exporter_folded_bn_matches_numpy() {
    let e = expected();
    let m = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(m.info.batch_norm, None);
    assert_eq!(m.info.geometry, "graph attributes");
    assert_eq!(m.info.followed_by.as_deref(), Some("Relu"));
    assert!(m.info.notes.is_empty(), "{:?}", m.info.notes);
    check_case(&m, case(&e, "resnet20_robust_s0.onnx"));
}

#[test]
fn onnx_and_safetensors_stems_agree() {
    let opts = LoadOptions::default();
    let a = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &opts,
    )
    .unwrap();
    let b = StemModel::load(&fixture("zoo/cifar10-mini/resnet20_robust_s0.onnx"), &opts).unwrap();
    for (x, y) in a.weights().iter().zip(b.weights()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    for (x, y) in a.bias().iter().zip(b.bias()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    // without folding the weights are the raw conv1 weights
    let raw = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &LoadOptions {
            bn: BnChoice::Off,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(raw.info.batch_norm, None);
    assert!(raw.bias().iter().all(|&b| b == 0.0));
}

#[test]
fn synthetic_5x5_stride_2_stem_matches_numpy() {
    let e = expected();
    let c = case(&e, "synthetic_5x5_s2_p2");
    let w: Vec<f64> = c["weight"].as_array().unwrap().iter().map(f).collect();
    let b: Vec<f64> = c["bias"].as_array().unwrap().iter().map(f).collect();
    let m = StemModel::from_weights("syn", w, b, [4, 3, 5, 5], 1, [2, 2], [2; 4], [1, 1]).unwrap();
    check_case(&m, c);
}

#[test]
fn analysis_reports_the_fixture_model() {
    let set = ImageSet::load_npz(&fixture("stem/adv_examples.npz")).unwrap();
    let m = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    let norm = convlens::stem::choose_normalization(None, None, &set).unwrap();
    assert!(norm.source.contains("mean, std"), "{}", norm.source);
    let r = analyse(
        &m,
        &set,
        Some("resnet20_robust_s0"),
        &norm,
        Some(true),
        &AnalysisOptions::default(),
    )
    .unwrap();
    assert_eq!(r.filters.len(), 16);
    assert_eq!(r.figure.columns.len(), 16);
    assert_eq!(r.figure.columns[0].clean.len(), 32 * 32);
    let linf = r.summary.perturbation_linf.unwrap();
    assert!((linf - 8.0 / 255.0).abs() < 1e-5, "{linf}");
    let s = &r.summary;
    for v in [s.pre_change, s.post_change, s.relu_removed, s.stem_gain] {
        let v = v.unwrap();
        assert!(v.is_finite() && v > 0.0, "{s:?}");
    }
    assert!(s.relu_removed.unwrap() < 1.0);
    // the worst case for the stem is worse for the stem than the network-level attack
    assert!(s.stem_gain.unwrap() >= s.post_change.unwrap(), "{s:?}");
    let missing = analyse(
        &m,
        &set,
        Some("nope"),
        &norm,
        None,
        &AnalysisOptions::default(),
    );
    let msg = missing.unwrap_err().to_string();
    assert!(
        msg.contains("no perturbed images \"nope\"") && msg.contains("resnet20_normal_s0"),
        "{msg}"
    );
}
