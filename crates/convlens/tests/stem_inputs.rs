//! Unusable images, options and weights: each is refused with a message that says what is
//! wrong, never a panic.

use convlens::stem::{
    analyse, AnalysisOptions, Batch, ImageSet, LoadOptions, Normalization, PgdOptions, StemError,
    StemModel,
};
use convlens_core::Blob;
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

fn npz(members: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, shape, data) in members {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
            dims.join(", ")
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in *data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn images(members: &[(&str, &[usize], &[f32])]) -> Result<ImageSet, StemError> {
    ImageSet::from_npz(Blob::from_vec(npz(members)), "test.npz")
}

#[test]
fn npz_without_clean_images() {
    let e = images(&[("y", &[2], &[0.0, 1.0])]).unwrap_err();
    assert!(e.to_string().contains("no array `x`"), "{e}");
}

#[test]
fn images_outside_the_unit_range() {
    let e = images(&[("x", &[1, 1, 2, 2], &[0.0, 0.5, 1.0, 3.0])]).unwrap_err();
    assert!(e.to_string().contains("must be in [0, 1]"), "{e}");
    let e = images(&[("x", &[1, 1, 1, 2], &[0.0, f32::NAN])]).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
}

#[test]
fn npz_that_is_not_an_archive() {
    let e =
        ImageSet::from_npz(Blob::from_vec(b"PK\x03\x04 broken".to_vec()), "bad.npz").unwrap_err();
    assert!(e.to_string().contains("not a readable .npz"), "{e}");
}

#[test]
fn perturbed_arrays_of_another_shape_are_not_perturbations() {
    let set = images(&[
        ("x", &[1, 1, 1, 2], &[0.0, 0.5]),
        ("adv", &[1, 1, 1, 2], &[0.1, 0.4]),
        ("labels", &[2], &[1.0, 2.0]),
    ])
    .unwrap();
    assert_eq!(set.keys(), ["adv"]);
}

#[test]
fn channel_count_mismatch() {
    let m = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    let grey = vec![0.5f32; 32 * 32];
    let e = m
        .forward(&Batch::new(&grey, 1, 1, 32, 32).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("1 channel(s) but the stem conv1 expects 3"),
        "{e}"
    );
}

#[test]
fn image_smaller_than_the_kernel() {
    let m = StemModel::from_weights(
        "k5",
        vec![1.0; 25],
        vec![0.0],
        [1, 1, 5, 5],
        1,
        [1, 1],
        [0; 4],
        [1, 1],
    )
    .unwrap();
    let e = m
        .forward(&Batch::new(&[0.0; 9], 1, 1, 3, 3).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("smaller than the 5x5 kernel"), "{e}");
}

#[test]
fn batch_sizes_that_overflow_or_disagree() {
    let e = Batch::new(&[0.0; 4], usize::MAX, 2, 2, 2).unwrap_err();
    assert!(
        e.to_string().contains("too many") || e.to_string().contains("caps"),
        "{e}"
    );
    let e = Batch::new(&[0.0; 4], 1, 1, 2, 3).unwrap_err();
    assert!(e.to_string().contains("needs 6 values, got 4"), "{e}");
    assert!(Batch::new(&[], 0, 1, 1, 1).is_err());
}

#[test]
fn bad_normalisation() {
    assert!(Normalization::new(vec![0.5], vec![0.0], "t").is_err());
    assert!(Normalization::new(vec![0.5, 0.5], vec![1.0], "t").is_err());
    assert!(Normalization::new(vec![f64::NAN], vec![1.0], "t").is_err());
    // three values for one channel
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
    let set = ImageSet::from_arrays(vec![0.5; 4], [1, 1, 2, 2], vec![], "t").unwrap();
    let norm = Normalization::new(vec![0.1, 0.2, 0.3], vec![1.0; 3], "t").unwrap();
    let e = analyse(&m, &set, None, &norm, None, &AnalysisOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("3 values but the images have 1"),
        "{e}"
    );
}

#[test]
fn bad_search_options() {
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
    let img = [0.5f32; 4];
    let b = Batch::new(&img, 1, 1, 2, 2).unwrap();
    for pgd in [
        PgdOptions {
            eps: -1.0,
            ..Default::default()
        },
        PgdOptions {
            eps: f64::NAN,
            ..Default::default()
        },
        PgdOptions {
            steps: usize::MAX,
            ..Default::default()
        },
        PgdOptions {
            step_size: Some(f64::INFINITY),
            ..Default::default()
        },
    ] {
        let e = m
            .worst_case_gain(&b, &Normalization::none(1), &pgd)
            .unwrap_err();
        assert!(matches!(e, StemError::Options(_)), "{e}");
    }
}

#[test]
fn inconsistent_hand_built_stem() {
    for (w, b, shape, groups) in [
        (vec![1.0; 3], vec![0.0], [1, 1, 2, 2], 1), // too few weights
        (vec![1.0; 4], vec![0.0; 2], [1, 1, 2, 2], 1), // bias length
        (vec![1.0; 8], vec![0.0; 2], [2, 1, 2, 2], 3), // groups do not divide
        (vec![f64::NAN; 4], vec![0.0], [1, 1, 2, 2], 1), // NaN
        (vec![], vec![], [0, 1, 1, 1], 1),          // empty
    ] {
        let e = StemModel::from_weights("x", w, b, shape, groups, [1, 1], [0; 4], [1, 1]);
        assert!(matches!(e, Err(StemError::Options(_))));
    }
    // a stride of zero from the options
    let e = StemModel::load(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"),
        &LoadOptions {
            stride: Some(0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("stride 0"), "{e}");
}

#[test]
fn non_finite_weights_are_refused() {
    let dir = std::env::temp_dir().join(format!("convlens-stem-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("nan.safetensors");
    let data: Vec<u8> = [1.0f32, f32::NAN, 0.0, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1, 2, 2], &data)
            .unwrap();
    std::fs::write(
        &p,
        safetensors::serialize(vec![("c.weight", view)], None).unwrap(),
    )
    .unwrap();
    let e = StemModel::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
}

#[test]
fn garbage_model_file() {
    let dir = std::env::temp_dir().join(format!("convlens-stem-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.onnx");
    std::fs::write(&p, [0x3a, 0x7f, 0x0a]).unwrap();
    let e = StemModel::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, StemError::Read(_)), "{e}");
    assert!(e.to_string().contains("x.onnx"), "{e}");
}

#[test]
fn analysis_without_perturbed_images() {
    // a dead filter (weight −1 on images ≥ 0, no bias) and an identity filter
    let m = StemModel::from_weights(
        "two",
        vec![1.0, -1.0],
        vec![0.0, 0.0],
        [2, 1, 1, 1],
        1,
        [1, 1],
        [0; 4],
        [1, 1],
    )
    .unwrap();
    let set = ImageSet::from_arrays(vec![0.5; 4], [1, 1, 2, 2], vec![], "t").unwrap();
    let none = Normalization::none(1);
    let mut opts = AnalysisOptions {
        pgd: None,
        ..Default::default()
    };
    let r = analyse(&m, &set, None, &none, None, &opts).unwrap();
    assert_eq!(r.figure.perturbation, "none (clean image twice)");
    assert_eq!(r.summary.post_change, None);
    assert_eq!(r.summary.stem_gain, None);
    assert_eq!(r.summary.dead_filters, 1);
    // the worst case alone: the figure shows it, the identity filter passes all of it
    // (8 steps of ε/4 reach ±ε from any start)
    opts.pgd = Some(PgdOptions {
        steps: 8,
        ..Default::default()
    });
    let r = analyse(&m, &set, None, &none, None, &opts).unwrap();
    assert!(
        r.figure.perturbation.starts_with("worst-case"),
        "{}",
        r.figure.perturbation
    );
    assert!((r.summary.stem_gain.unwrap() - 8.0 / 255.0 / 0.5).abs() < 1e-9);
    assert_eq!(r.summary.dead_filters, 1);
    assert_eq!(r.filters[1].worst.unwrap().post_change, None);
}
