//! Real archives: the mobilenetv2 weights against their safetensors twin, and the shared
//! adversarial examples.

use std::path::PathBuf;

use convlens_core::{Blob, DType};
use convlens_numpy::{read_npz, read_npz_strings};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blob(path: &PathBuf) -> Blob {
    Blob::from_vec(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn mobilenetv2_npz_matches_safetensors() {
    let zoo = root().join("fixtures/zoo/cifar10-mini");
    let npz_blob = blob(&zoo.join("mobilenetv2_x0_5_normal_s0.npz"));
    let npz = read_npz(npz_blob.clone()).unwrap();
    let st = convlens_safetensors::read(blob(&zoo.join("mobilenetv2_x0_5_normal_s0.safetensors")))
        .unwrap();
    assert_eq!(npz.order_source, "npz archive order");
    assert_eq!(npz.tensors.len(), 105);
    assert!(npz.notes.is_empty(), "{:?}", npz.notes);
    assert_eq!(npz.tensors[0].name, "features.0.weight");
    assert_eq!(npz.tensors[104].name, "classifier.weight");

    let base = npz_blob.as_slice().as_ptr() as usize;
    for t in &npz.tensors {
        let s = st
            .tensor(&t.name)
            .unwrap_or_else(|| panic!("{} not in the safetensors file", t.name));
        assert_eq!(t.tensor.shape(), s.shape(), "{}", t.name);
        assert_eq!(t.tensor.dtype(), DType::F32);
        assert_eq!(s.dtype(), DType::F32);
        let (a, b) = (t.tensor.to_f32(), s.to_f32());
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{} differs",
            t.name
        );
        // stored members are views of the archive
        let p = t.tensor.storage().as_slice().as_ptr() as usize;
        assert!(p > base && p + t.tensor.storage().len() <= base + npz_blob.len());
    }
    let conv = |c: &convlens_core::Checkpoint| -> Vec<String> {
        c.tensors
            .iter()
            .filter(|t| t.tensor.shape().len() == 4)
            .map(|t| t.name.clone())
            .collect()
    };
    let (a, b) = (conv(&npz), conv(&st));
    assert_eq!(a.len(), 52);
    assert_eq!(a, b);
}

#[test]
fn adv_examples() {
    let path = root().join("../shared/zoo/cifar10-mini/adv_examples.npz");
    if !root().join("../shared").is_dir() {
        eprintln!("SKIPPED: ../shared not found");
        return;
    }
    let data = blob(&path);
    let c = read_npz(data.clone()).unwrap();
    assert_eq!(c.tensors.len(), 16);
    assert_eq!(c.notes.len(), 1);
    assert!(c.notes[0].contains("image_names"), "{:?}", c.notes);

    let x = c.tensor("x").unwrap();
    assert_eq!(x.shape(), &[20, 3, 32, 32]);
    let xv = x.to_f32();
    // 8-bit images scaled to [0, 1]: every value is k/255
    assert!(xv
        .iter()
        .all(|&v| (0.0..=1.0).contains(&v) && ((v * 255.0).round() / 255.0 - v).abs() < 1e-7));
    let sum: f64 = x.to_f64().iter().sum();
    assert!((sum - 27947.26340350369).abs() < 1e-6 * sum, "{sum}");
    assert_eq!(&xv[..2], &[141.0 / 255.0, 159.0 / 255.0]);

    let y = c.tensor("y").unwrap();
    assert_eq!(y.dtype(), DType::I64);
    let yv = y.to_f64();
    let want: Vec<f64> = (0..20).map(|i| (i / 2) as f64).collect();
    assert_eq!(yv, want);

    let close = |got: Vec<f32>, want: [f32; 3]| got.iter().zip(want).all(|(a, b)| *a == b);
    assert!(close(
        c.tensor("mean").unwrap().to_f32(),
        [0.4914, 0.4822, 0.4465]
    ));
    assert!(close(
        c.tensor("std").unwrap().to_f32(),
        [0.2471, 0.2435, 0.2616]
    ));

    // one PGD example set per model, within the L-inf ball of radius 8/255 and using it
    let models: Vec<_> = c
        .tensors
        .iter()
        .filter(|t| !["x", "y", "mean", "std"].contains(&t.name.as_str()))
        .collect();
    assert_eq!(models.len(), 12);
    assert_eq!(models[0].name, "mobilenetv2_x0_5_normal_s0");
    for m in models {
        assert_eq!(m.tensor.shape(), &[20, 3, 32, 32], "{}", m.name);
        let adv = m.tensor.to_f32();
        let mut dmax = 0f32;
        for (a, b) in adv.iter().zip(&xv) {
            assert!((0.0..=1.0).contains(a));
            dmax = dmax.max((a - b).abs());
        }
        assert!(dmax <= 8.0 / 255.0 + 1e-6, "{}: {dmax}", m.name);
        assert!(dmax >= 7.9 / 255.0, "{}: {dmax}", m.name);
    }

    let names = read_npz_strings(data, "image_names").unwrap();
    assert_eq!(names.len(), 20);
    assert_eq!(names[0], "test/airplane/0000.jpg");
    assert_eq!(names[3], "test/automobile/0001.jpg");
    let classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &format!("test/{}/{:04}.jpg", classes[i / 2], i % 2));
    }
}
