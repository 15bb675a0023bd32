//! Every file of `../shared/third_party` opens, and the TFLite hostile files give errors that
//! name the file.

mod common;

use common::*;
use convlens::extract::extract;
use convlens::read::{find_models, read};

#[test]
fn every_third_party_file_opens() {
    let Some(shared) = shared() else {
        return;
    };
    let files = find_models(&shared.join("third_party")).unwrap();
    assert!(files.len() >= 10, "{files:?}");
    for f in &files {
        let ck = read(f).unwrap_or_else(|e| panic!("{e}"));
        let ex = extract(&ck);
        assert!(
            !ex.layers.is_empty(),
            "{}: no convolution layer",
            f.display()
        );
    }
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "tflite")));
    eprintln!("opened {} third-party files", files.len());
}

#[test]
fn tflite_fixtures_open_with_every_layer() {
    for (rel, n) in [
        (
            "third_party/mediapipe/face_detection_short_range.tflite",
            37,
        ),
        (
            "third_party/mediapipe/face_detection_full_range_sparse.tflite",
            91,
        ),
        ("tflite/quantized.tflite", 5),
    ] {
        let ck = read(&fixture(rel)).unwrap_or_else(|e| panic!("{e}"));
        let ex = extract(&ck);
        assert_eq!(ex.layers.len(), n, "{rel}: {:?}", ex.skipped);
        assert!(ex.skipped.is_empty(), "{rel}: {:?}", ex.skipped);
        // OIHW: filters are the last two axes, as the database stores them
        for l in &ex.layers {
            assert_eq!(
                l.n_filters,
                l.out_channels * l.in_per_group,
                "{rel} {}",
                l.name
            );
            assert_eq!(l.weights_oihw().len(), l.n_filters * l.kh * l.kw);
        }
    }
}

#[test]
fn hostile_tflite_errors_name_the_file() {
    for name in [
        "truncated.tflite",
        "root_beyond_file.tflite",
        "vtable_loop.tflite",
        "huge_vector.tflite",
        "offset_beyond_file.tflite",
    ] {
        let p = fixture(&format!("hostile/tflite/{name}"));
        let e = read(&p).expect_err(name).to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains("invalid TFLite file"), "{e}");
    }
    // a layer that cannot be decoded is skipped with its reason, the others are analysed
    let ck = read(&fixture("hostile/tflite/huge_dense_shape.tflite")).unwrap();
    let ex = extract(&ck);
    assert_eq!(ex.layers.len(), 4);
    assert_eq!(ex.skipped.len(), 1);
    assert!(ex.skipped[0].reason.contains("limit"), "{:?}", ex.skipped);
}
