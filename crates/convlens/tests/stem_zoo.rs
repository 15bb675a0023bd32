//! The stem analysis on the shared 12-model CIFAR-10 zoo with its real PGD examples
//! (`../shared/zoo/cifar10-mini`; skipped when `../shared` is missing).

use convlens::stem::{
    analyse_zoo, zoo_summary, AnalysisOptions, ImageSet, LoadOptions, StemModel, StemReport,
    ZooEntry,
};
use std::path::PathBuf;

fn zoo() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/zoo/cifar10-mini");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared not found");
        None
    }
}

/// The robust ↔ normal twins of the zoo (`pairings.csv`).
const PAIRS: [(&str, &str); 6] = [
    ("mobilenetv2_x0_5_robust_s0", "mobilenetv2_x0_5_normal_s0"),
    (
        "preactresnet18_w32_robust_s0",
        "preactresnet18_w32_normal_s0",
    ),
    ("resnet20_robust_s0", "resnet20_normal_s0"),
    ("resnet20_robust_s1", "resnet20_normal_s1"),
    ("vgg11_w16_robust_s0", "vgg11_w16_normal_s0"),
    ("wrn16_2_robust_s0", "wrn16_2_normal_s0"),
];

fn names() -> Vec<&'static str> {
    PAIRS.iter().flat_map(|(r, n)| [*r, *n]).collect()
}

/// The file without a graph of each model: its fp32 safetensors, else its pickled module.
fn graphless(zoo: &std::path::Path, name: &str) -> PathBuf {
    let st = zoo.join(format!("{name}.safetensors"));
    if st.exists() {
        st
    } else {
        zoo.join(format!("{name}.module.pt"))
    }
}

fn run(zoo: &std::path::Path) -> Vec<StemReport> {
    let images = ImageSet::load_npz(&zoo.join("adv_examples.npz")).unwrap();
    let entries: Vec<ZooEntry> = names()
        .iter()
        .map(|n| ZooEntry {
            name: n.to_string(),
            path: zoo.join(format!("{n}.onnx")),
            robust: Some(n.contains("_robust_")),
            norm: None,
            entry: None,
        })
        .collect();
    analyse_zoo(&entries, &images, &AnalysisOptions::default())
        .into_iter()
        .zip(&entries)
        .map(|(r, e)| r.unwrap_or_else(|err| panic!("{}: {err}", e.name)))
        .collect()
}

#[test]
fn all_twelve_models_give_a_stem_row_and_robust_stems_differ() {
    let Some(zoo) = zoo() else { return };
    let reports = run(&zoo);
    assert_eq!(reports.len(), 12);
    for r in &reports {
        let s = &r.summary;
        eprintln!(
            "{:30} filters {} centre {:.3} max-cos {:.3} dups {} pre {:.4} post {:.4} removed {:.3} gain {:.4} worst-removed {:.3} | {:?} {:?}",
            s.model,
            s.filters,
            s.centre_share.unwrap(),
            s.mean_max_similarity.unwrap(),
            s.filters_with_duplicate,
            s.pre_change.unwrap(),
            s.post_change.unwrap(),
            s.relu_removed.unwrap(),
            s.stem_gain.unwrap(),
            s.worst_relu_removed.unwrap(),
            r.stem.followed_by,
            r.stem.batch_norm,
        );
        assert_eq!(r.filters.len(), s.filters);
        assert_eq!(r.stem.geometry, "graph attributes");
        assert_eq!((r.stem.kh, r.stem.kw, r.stem.stride), (3, 3, [1, 1]));
        assert_eq!(r.n_images, 20);
        assert!((s.perturbation_linf.unwrap() - 8.0 / 255.0).abs() < 1e-5);
        // the stem alone attacked directly changes more than the network-level attack does
        assert!(s.stem_gain.unwrap() >= s.post_change.unwrap(), "{s:?}");
    }
    let by = |n: &str| &reports.iter().find(|r| r.model == n).unwrap().summary;
    // preact: the BatchNorm of the first block reads the stem (and is folded); mobilenet: ReLU6
    let pre = reports
        .iter()
        .find(|r| r.model == "preactresnet18_w32_normal_s0")
        .unwrap();
    assert!(pre.stem.batch_norm.is_some(), "{:?}", pre.stem);
    assert_eq!(pre.stem.followed_by.as_deref(), Some("Relu"));
    let mob = reports
        .iter()
        .find(|r| r.model == "mobilenetv2_x0_5_robust_s0")
        .unwrap();
    assert_eq!(mob.stem.followed_by.as_deref(), Some("Clip"));
    // measured on this zoo: every robust stem has a lower worst-case gain than its normal twin
    for (r, n) in PAIRS {
        assert!(
            by(r).stem_gain.unwrap() < by(n).stem_gain.unwrap(),
            "{r} vs {n}"
        );
        assert!(
            by(r).post_change.unwrap() < by(n).post_change.unwrap(),
            "{r} vs {n}"
        );
    }
    // on average the robust stems' ReLU removes a larger share and their filters sit more in
    // the centre tap
    let z = zoo_summary(&reports);
    eprintln!("{}", serde_json::to_string_pretty(&z).unwrap());
    assert_eq!((z.robust.models, z.normal.models, z.unknown), (6, 6, 0));
    assert!(z.robust.relu_removed.unwrap() > z.normal.relu_removed.unwrap());
    assert!(z.robust.centre_share.unwrap() > z.normal.centre_share.unwrap());
    assert!(z.robust.stem_gain.unwrap() < z.normal.stem_gain.unwrap());
}

#[test]
fn graphless_files_fold_the_same_batch_norm_as_the_onnx_exports() {
    let Some(zoo) = zoo() else { return };
    let opts = LoadOptions::default();
    for n in names() {
        let g = StemModel::load(&zoo.join(format!("{n}.onnx")), &opts).unwrap();
        let path = graphless(&zoo, n);
        let f = StemModel::load(&path, &opts).unwrap();
        assert!(f.info.batch_norm.is_some(), "{n}: {:?}", f.info);
        let scale = g.weights().iter().fold(0.0f64, |m, w| m.max(w.abs()));
        for (a, b) in f.weights().iter().zip(g.weights()) {
            assert!((a - b).abs() <= 1e-5 * scale, "{n}: weight {a} vs {b}");
        }
        for (a, b) in f.bias().iter().zip(g.bias()) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{n}: bias {a} vs {b}"
            );
        }
        eprintln!(
            "{}: {:?} — {}",
            path.display(),
            f.info.batch_norm,
            f.info.batch_norm_rule
        );
    }
}
