//! The Keras fixtures of `fixtures/keras/` (written by `make_keras_fixtures.py` with h5py in
//! Keras's documented layouts): every convolution kernel in config order, as OIHW, equal to the
//! numpy transposes recorded in `expected.json`.

use convlens_core::{Checkpoint, Format};
use convlens_testdata::fixture;
use serde_json::Value;

fn check(ck: &Checkpoint) {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("keras/expected.json")).unwrap())
            .unwrap();
    let want = exp["layers"].as_array().unwrap();
    let names: Vec<&str> = ck.tensors.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<String> = want
        .iter()
        .map(|l| format!("{}.weight", l["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, want_names);
    for (t, e) in ck.tensors.iter().zip(want) {
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.tensor.shape(), shape.as_slice(), "{}", t.name);
        let v = t.tensor.to_f32();
        let (mut s, mut sq, mut ws) = (0f64, 0f64, 0f64);
        for (i, &x) in v.iter().enumerate() {
            let x = f64::from(x);
            s += x;
            sq += x * x;
            ws += x * ((i % 97) + 1) as f64;
        }
        for (got, key) in [(s, "sum"), (sq, "sum_sq"), (ws, "weighted_sum")] {
            let w = e[key].as_f64().unwrap();
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{} {key}: {got} vs {w}",
                t.name
            );
        }
    }
}

#[test]
fn keras2_model_h5() {
    let ck =
        convlens_keras::read_h5(std::fs::read(fixture("keras/keras2_model.h5")).unwrap()).unwrap();
    assert_eq!(ck.format, Format::KerasH5);
    assert_eq!(ck.order_source, "Keras model config order");
    assert!(ck
        .metadata
        .iter()
        .any(|(k, v)| k == "keras_version" && v == "2.15.0"));
    check(&ck);
}

#[test]
fn keras2_weights_only_h5() {
    let ck = convlens_keras::read_h5(std::fs::read(fixture("keras/keras2_weights.h5")).unwrap())
        .unwrap();
    assert_eq!(ck.order_source, "Keras layer_names order");
    check(&ck);
}

#[test]
fn keras3_archive() {
    let ck =
        convlens_keras::read_keras(&std::fs::read(fixture("keras/keras3_model.keras")).unwrap())
            .unwrap();
    assert_eq!(ck.format, Format::Keras);
    assert!(ck
        .metadata
        .iter()
        .any(|(k, v)| k == "keras_version" && v == "3.6.0"));
    check(&ck);
}

#[test]
fn broken_files_give_errors() {
    let good = std::fs::read(fixture("keras/keras2_model.h5")).unwrap();
    for n in [0, 8, 100, good.len() / 2] {
        assert!(
            convlens_keras::read_h5(good[..n].to_vec()).is_err(),
            "cut at {n}"
        );
    }
    // an HDF5 file that is not a Keras file
    let e = convlens_keras::read_h5(std::fs::read(fixture("filterdb/dataset.h5")).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("layer_names"), "{e}");
    let k = std::fs::read(fixture("keras/keras3_model.keras")).unwrap();
    assert!(convlens_keras::read_keras(&k[..k.len() / 2]).is_err());
    // dataset flips never panic
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % b.len();
            b[i] = (seed >> 40) as u8;
        }
        let _ = convlens_keras::read_h5(b);
    }
}

/// Fuzz finding 3 (see `crates/torch/tests/hostile.rs`): the two zip directory bombs of
/// `fixtures/hostile/fuzz/` are refused by the `.keras` reader too, each for its reason.
#[test]
fn fuzz_zip_directory_bombs_are_refused() {
    use convlens_keras::KerasError;
    let bomb = std::fs::read(fixture("hostile/fuzz/zip_end_bomb.pt")).unwrap();
    let e = convlens_keras::read_keras(&bomb).unwrap_err();
    assert!(
        matches!(&e, KerasError::Zip(m) if m.contains("where there is none")),
        "{e}"
    );
    let bomb = std::fs::read(fixture("hostile/fuzz/zip_fallback_bomb.pt")).unwrap();
    let e = convlens_keras::read_keras(&bomb).unwrap_err();
    assert!(
        matches!(&e, KerasError::Zip(m) if m.contains(convlens_core::zip_end::BUDGET_SPENT)),
        "{e}"
    );
}
