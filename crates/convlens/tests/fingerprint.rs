//! The robustness fingerprint: the shipped model is recomputed from the committed training
//! table, its validation accuracies are computed here from committed data (and, where
//! `../shared` is present, from the cifar10-mini zoo), and refusals are clear.

mod common;

use common::*;
use convlens::fingerprint::{
    cross_validate, fingerprint_file, read_training, FingerprintError, FingerprintModel,
    MIN_FILTERS,
};

fn bundled() -> FingerprintModel {
    FingerprintModel::bundled().expect("data/fingerprint.json parses")
}

#[test]
fn bundled_model_is_reproduced_from_the_committed_table() {
    let fm = bundled();
    let table = root().join(&fm.training_table);
    let rows = read_training(&table).unwrap();
    assert_eq!(
        rows.len(),
        114,
        "the published table has 114 models with a basis"
    );
    assert_eq!(rows.iter().filter(|r| r.robust).count(), 71);
    // zoos the committed model was validated on that are available here
    let mut zoos = Vec::new();
    for t in &fm.validation.transfer {
        let dir = root().join(&t.zoo);
        if dir.join("meta.csv").exists() {
            zoos.push((t.zoo.clone(), dir));
        } else {
            eprintln!(
                "SKIPPED: transfer zoo {} not found ({})",
                t.zoo,
                dir.display()
            );
        }
    }
    let again = FingerprintModel::train(&fm.training_table, &rows, &zoos).unwrap();
    assert_eq!(again.model, fm.model, "regression coefficients");
    assert_eq!(again.reference, fm.reference);
    assert_eq!(again.training_names, fm.training_names);
    assert_eq!(
        again.validation.leave_one_paper_out,
        fm.validation.leave_one_paper_out
    );
    assert_eq!(
        again.validation.leave_one_architecture_out,
        fm.validation.leave_one_architecture_out
    );
    for t in &again.validation.transfer {
        let committed = fm
            .validation
            .transfer
            .iter()
            .find(|c| c.zoo == t.zoo)
            .unwrap();
        assert_eq!(t, committed, "transfer to {}", t.zoo);
    }
    assert!(
        fm.validation
            .transfer
            .iter()
            .any(|t| t.zoo == "examples/demo-zoo"),
        "the committed model is validated on the demo zoo"
    );
}

#[test]
fn validation_accuracies_are_computed_from_the_predictions() {
    let fm = bundled();
    let rows = read_training(&root().join(&fm.training_table)).unwrap();
    for (grouping, cv) in [
        ("Paper", &fm.validation.leave_one_paper_out),
        ("Backbone", &fm.validation.leave_one_architecture_out),
    ] {
        let again = cross_validate(&rows, grouping);
        assert_eq!(&again, cv);
        let hits = cv
            .predictions
            .iter()
            .zip(&rows)
            .filter(|(p, r)| (**p > 0.5) == r.robust)
            .count();
        assert_eq!(cv.accuracy, hits as f64 / rows.len() as f64);
        assert_eq!(
            cv.reliability.iter().map(|b| b.n).sum::<usize>(),
            rows.len()
        );
        eprintln!(
            "leave-one-{grouping}-out: accuracy {:.3} ({hits}/{}), {} folds, Brier {:.3}, log loss {:.3}",
            cv.accuracy,
            rows.len(),
            cv.folds,
            cv.brier,
            cv.log_loss
        );
    }
    // distinct papers / architectures of the published table
    assert_eq!(fm.validation.leave_one_architecture_out.folds, 13);
    // the published spectra separate the groups far better than chance (71/114 = 0.62)
    assert!(fm.validation.leave_one_paper_out.accuracy > 0.9);
    // a single threshold on evr0 already separates about nine models in ten
    let mut best = 0;
    for t in &rows {
        let thr = t.evr[0];
        let hits = rows
            .iter()
            .filter(|r| (r.evr[0] <= thr) == r.robust)
            .count();
        best = best.max(hits);
    }
    eprintln!("best single evr0 threshold: {best}/114");
    assert!(best as f64 / 114.0 > 0.85);
}

#[test]
fn transfer_to_the_cifar10_mini_zoo_is_reported_as_it_is() {
    let Some(shared) = shared() else { return };
    let fm = bundled();
    let t = fm
        .validation
        .transfer
        .iter()
        .find(|t| t.zoo.ends_with("zoo/cifar10-mini"))
        .expect("the committed model is validated on cifar10-mini");
    let again =
        convlens::fingerprint::validate_zoo(&fm, &t.zoo, &shared.join("zoo/cifar10-mini")).unwrap();
    assert_eq!(&again, t);
    assert_eq!(t.n, 12);
    let hits = t
        .models
        .iter()
        .filter(|m| m.probability.is_some_and(|p| (p > 0.5) == m.robust))
        .count();
    assert_eq!(t.accuracy, Some(hits as f64 / 12.0));
    eprintln!("transfer to cifar10-mini: accuracy {:?}", t.accuracy);
}

#[test]
fn a_checkpoint_gets_a_probability_with_its_evidence() {
    let fm = bundled();
    let f = fingerprint_file(
        &fm,
        &root().join("examples/demo-zoo/resnet20_robust_s1.onnx"),
    )
    .unwrap();
    assert_eq!(f.spectrum.len(), 9);
    assert!((f.spectrum.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(f.n_filters >= MIN_FILTERS);
    let p = &f.prediction;
    assert!(p.probability_robust > 0.0 && p.probability_robust < 1.0);
    assert_eq!(p.evidence.len(), 3);
    // the logit is the intercept plus the evidence terms
    let logit = fm.model.intercept + p.evidence.iter().map(|e| e.contribution).sum::<f64>();
    assert!((logit - p.logit).abs() < 1e-12);
    for e in &p.evidence {
        assert!((0.0..=1.0).contains(&e.percentile_in_robust));
        assert_eq!(
            e.value,
            f.spectrum[e.feature[3..].parse::<usize>().unwrap()]
        );
    }
    // the same model in another format, through the database path, gives the same spectrum
    let g = fingerprint_file(
        &fm,
        &root().join("examples/demo-zoo/resnet20_normal_s1.safetensors"),
    )
    .unwrap();
    assert!(
        g.spectrum[0] > f.spectrum[0],
        "the normal twin concentrates more variance on evr0"
    );
}

#[test]
fn too_few_filters_is_a_clear_refusal() {
    let fm = bundled();
    // LPIPS AlexNet: 1x1 layers only, no 3x3 filter at all
    if let Some(p) = third_party_file("lpips/alex_v0.1.pth") {
        match fingerprint_file(&fm, &p) {
            Err(FingerprintError::TooFewFilters { got, needed, .. }) => {
                assert_eq!(got, 0);
                assert_eq!(needed, MIN_FILTERS);
            }
            r => panic!("expected a refusal, got {r:?}"),
        }
    }
    // MTCNN P-Net: a handful of 3x3 filters
    if let Some(p) = third_party_file("facenet-pytorch/pnet.pt") {
        let e = fingerprint_file(&fm, &p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("pnet.pt") && msg.contains("at least 1000"),
            "{msg}"
        );
    }
    // not a model at all
    let e = fingerprint_file(&fm, &root().join("fixtures/README.md")).unwrap_err();
    assert!(e.to_string().contains("README.md"), "{e}");
}
