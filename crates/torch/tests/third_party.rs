//! Real third-party checkpoints: facenet-pytorch MTCNN (legacy, Windows, column-major strides)
//! and LPIPS AlexNet heads (Python 2 pickles).

mod common;
use common::*;
use convlens_core::Format;

/// The oracle's layers (3x3 only) of a facenet model: (weight_name, shape, layer_norm).
fn oracle_layers(net: &str) -> (usize, Vec<(String, Vec<usize>, f64)>) {
    let p = fixture(&format!("expected/thirdparty_{net}.pt.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let model = &v["models"][0];
    let n = model["n_conv_layers"].as_u64().unwrap() as usize;
    let layers = model["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["weight_name"].as_str().unwrap().to_string(),
                l["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
                l["layer_norm"].as_f64().unwrap(),
            )
        })
        .collect();
    (n, layers)
}

#[test]
fn facenet_models_match_the_oracle() {
    for net in ["pnet", "rnet", "onet"] {
        let ck = read_fixture(&format!("third_party/facenet-pytorch/{net}.pt"));
        assert_eq!(ck.format, Format::TorchLegacy);
        let (n_conv, expected) = oracle_layers(net);
        let convs = four_d(&ck);
        assert_eq!(convs.len(), n_conv, "{net}: number of 4-D float tensors");
        let ours: Vec<(String, Vec<usize>, f64)> = convs
            .iter()
            .filter(|t| t.tensor.shape()[2..] == [3, 3])
            .map(|t| (t.name.clone(), t.tensor.shape().to_vec(), max_abs(t)))
            .collect();
        assert_eq!(ours, expected, "{net}");
        // saved column-major: the strides are the real ones, not C order
        let w = &convs[0].tensor;
        assert!(!w.is_c_contiguous(), "{net}");
    }
}

#[test]
fn facenet_column_major_values_are_in_c_order() {
    // values from an independent reading of the file (numpy as_strided over the raw storage)
    let ck = read_fixture("third_party/facenet-pytorch/pnet.pt");
    let w = ck.tensor("conv1.weight").unwrap();
    assert_eq!(w.shape(), &[10, 3, 3, 3]);
    assert_eq!(w.strides(), &[1, 10, 30, 90]);
    let v = w.to_f64();
    assert_eq!(
        &v[..4],
        &[
            -0.08164715766906738,
            0.8359154462814331,
            1.246496558189392,
            -0.015041245147585869
        ]
    );
    let sum: f64 = w.to_f64().iter().sum();
    assert!((sum - 2.3487670375034213).abs() < 1e-9, "{sum}");

    let ck = read_fixture("third_party/facenet-pytorch/onet.pt");
    let w = ck.tensor("conv4.weight").unwrap();
    assert_eq!(w.shape(), &[128, 64, 2, 2]);
    assert_eq!(
        &w.to_f64()[..4],
        &[
            0.03660539910197258,
            0.0521293468773365,
            0.027993330731987953,
            0.018618373200297356
        ]
    );
    let sum: f64 = w.to_f64().iter().sum();
    assert!((sum + 56.90709998856505).abs() < 1e-9, "{sum}");
}

/// (name, channels, max|w|, sum)
type LpipsLayer = (&'static str, usize, f64, f64);

#[test]
fn lpips_python2_pickles_read() {
    // (name, shape, max|w|, sum) from an independent reading of the files
    let cases: [(&str, [LpipsLayer; 5]); 2] = [
        (
            "alex_v0.0.pth",
            [
                (
                    "lin0.model.1.weight",
                    64,
                    0.5330044627189636,
                    2.565887227056315,
                ),
                (
                    "lin1.model.1.weight",
                    192,
                    0.6856163144111633,
                    10.257388192570623,
                ),
                (
                    "lin2.model.1.weight",
                    384,
                    0.6902170181274414,
                    22.434313934931453,
                ),
                (
                    "lin3.model.1.weight",
                    256,
                    0.42576783895492554,
                    16.313912790926324,
                ),
                (
                    "lin4.model.1.weight",
                    256,
                    0.28247055411338806,
                    13.934519138982978,
                ),
            ],
        ),
        (
            "alex_v0.1.pth",
            [
                (
                    "lin0.model.1.weight",
                    64,
                    0.4921388626098633,
                    2.3495323137195783,
                ),
                (
                    "lin1.model.1.weight",
                    192,
                    1.0471550226211548,
                    16.1430274810632,
                ),
                (
                    "lin2.model.1.weight",
                    384,
                    1.3235669136047363,
                    39.26843924544403,
                ),
                (
                    "lin3.model.1.weight",
                    256,
                    0.7477360963821411,
                    27.197178440931964,
                ),
                (
                    "lin4.model.1.weight",
                    256,
                    0.41306957602500916,
                    20.317177099761324,
                ),
            ],
        ),
    ];
    for (file, expected) in cases {
        let ck = read_fixture(&format!("third_party/lpips/{file}"));
        assert_eq!(ck.format, Format::TorchLegacy);
        assert_eq!(ck.tensors.len(), 5, "{file}");
        for (t, (name, c, max, sum)) in ck.tensors.iter().zip(expected) {
            assert_eq!(t.name, name, "{file}");
            assert_eq!(t.tensor.shape(), &[1, c, 1, 1], "{file} {name}");
            assert_eq!(max_abs(t), max, "{file} {name}");
            let s: f64 = t.tensor.to_f64().iter().sum();
            assert!((s - sum).abs() < 1e-9, "{file} {name}: {s}");
        }
        // 1x1 heads only: no 3x3 filter for the analysis
        assert!(four_d(&ck).iter().all(|t| t.tensor.shape()[2..] == [1, 1]));
    }
}

#[test]
fn sniff_accepts_every_real_torch_file_and_rejects_others() {
    for rel in [
        "zoo/cifar10-mini/resnet20_robust_s0.pt",
        "zoo/cifar10-mini/resnet20_normal_s0.ckpt",
        "zoo/cifar10-mini/resnet20_robust_s0.legacy.pt",
        "zoo/cifar10-mini/resnet20_robust_s0.torchscript.pt",
        "third_party/facenet-pytorch/pnet.pt",
        "third_party/lpips/alex_v0.0.pth",
    ] {
        let b = std::fs::read(fixture(rel)).unwrap();
        assert!(convlens_torch::sniff(&b), "{rel}");
        assert!(convlens_torch::sniff(&b[..256]), "{rel}: first 256 bytes");
    }
    for rel in [
        "zoo/cifar10-mini/mobilenetv2_x0_5_normal_s0.npz",
        "zoo/cifar10-mini/resnet20_robust_s0.safetensors",
        "zoo/cifar10-mini/resnet20_robust_s0.onnx",
    ] {
        let b = std::fs::read(fixture(rel)).unwrap();
        assert!(!convlens_torch::sniff(&b), "{rel}");
    }
}
