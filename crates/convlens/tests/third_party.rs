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

#[test]
fn keras_files_give_their_conv_layers_in_config_order() {
    for f in [
        "keras/keras2_model.h5",
        "keras/keras2_weights.h5",
        "keras/keras3_model.keras",
    ] {
        let ck = read(&fixture(f)).unwrap_or_else(|e| panic!("{e}"));
        let ex = extract(&ck);
        let names: Vec<&str> = ex.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv2d",
                "depthwise_conv2d",
                "separable_conv2d/depthwise",
                "separable_conv2d/pointwise",
                "conv2d_1"
            ],
            "{f}"
        );
        let shapes: Vec<[usize; 4]> = ex.layers.iter().map(|l| l.shape).collect();
        assert_eq!(
            shapes,
            [
                [8, 3, 3, 3],
                [16, 1, 3, 3],
                [16, 1, 3, 3],
                [12, 16, 1, 1],
                [4, 12, 5, 5]
            ],
            "{f}"
        );
        assert_eq!(ex.layers.iter().filter(|l| l.kh == 3).count(), 3);
        let depths: Vec<usize> = ex.layers.iter().map(|l| l.depth).collect();
        assert_eq!(depths, [0, 1, 2, 3, 4]);
    }
    let e = read(&fixture("filterdb/dataset.h5"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset.h5") && e.contains("invalid Keras .h5 file"),
        "{e}"
    );
}
