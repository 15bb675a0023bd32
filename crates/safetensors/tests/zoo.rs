//! The cifar10-mini zoo: tensor order and values against the oracle's outputs.

use std::path::PathBuf;

use convlens_core::{Blob, DType, RawTensor};
use convlens_safetensors::{read, ORDER_NATURAL};
use half::{bf16, f16};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn load(name: &str) -> (Blob, convlens_core::Checkpoint) {
    let path = fixtures().join("zoo/cifar10-mini").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blob = Blob::from_vec(bytes);
    let ckpt = read(blob.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (blob, ckpt)
}

fn max_abs(t: &RawTensor) -> f64 {
    t.to_f64().iter().fold(0.0f64, |m, &x| m.max(x.abs()))
}

/// Checks order (3x3 layers), 4-D count and `layer_norm` against `fixtures/expected/<file>.json`.
fn check_against_oracle(file: &str) {
    let (blob, ckpt) = load(file);
    let exp_path = fixtures().join("expected").join(format!("{file}.json"));
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exp_path).unwrap()).unwrap();
    let model = &exp["models"][0];
    assert!(model["depth_source"]
        .as_str()
        .unwrap()
        .starts_with("natural sort of keys"));
    assert_eq!(ckpt.order_source, ORDER_NATURAL);

    let conv: Vec<_> = ckpt
        .tensors
        .iter()
        .filter(|t| t.tensor.shape().len() == 4 && t.tensor.dtype().is_float())
        .collect();
    assert_eq!(
        conv.len() as u64,
        model["n_conv_layers"].as_u64().unwrap(),
        "{file}: number of 4-D float tensors"
    );
    let ours: Vec<&str> = conv
        .iter()
        .filter(|t| t.tensor.shape()[2..] == [3, 3])
        .map(|t| t.name.as_str())
        .collect();
    let layers = model["layers"].as_array().unwrap();
    let oracle: Vec<&str> = layers
        .iter()
        .map(|l| l["weight_name"].as_str().unwrap())
        .collect();
    assert_eq!(ours, oracle, "{file}: 3x3 layer order");

    let base = blob.as_slice().as_ptr() as usize;
    for l in layers {
        let name = l["weight_name"].as_str().unwrap();
        let t = ckpt.tensor(name).unwrap();
        let shape: Vec<usize> = l["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape(), &shape[..], "{file} {name}");
        let want = l["layer_norm"].as_f64().unwrap();
        let got = max_abs(t);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "{file} {name}: max|w| {got} vs layer_norm {want}"
        );
        // no copy: the tensor's bytes lie inside the input buffer
        let p = t.storage().as_slice().as_ptr() as usize;
        assert!(p >= base && p + t.storage().len() <= base + blob.len());
    }
}

#[test]
fn resnet20_normal_s0() {
    check_against_oracle("resnet20_normal_s0.safetensors");
}

#[test]
fn resnet20_normal_s1() {
    check_against_oracle("resnet20_normal_s1.safetensors");
}

#[test]
fn resnet20_robust_s0() {
    check_against_oracle("resnet20_robust_s0.safetensors");
}

#[test]
fn resnet20_robust_s1() {
    check_against_oracle("resnet20_robust_s1.safetensors");
}

#[test]
fn mobilenetv2_x0_5_normal_s0() {
    check_against_oracle("mobilenetv2_x0_5_normal_s0.safetensors");
}

#[test]
fn wrn16_2_robust_s0() {
    check_against_oracle("wrn16_2_robust_s0.safetensors");
}

#[test]
fn metadata_is_kept() {
    let (_, ckpt) = load("resnet20_normal_s0.safetensors");
    assert_eq!(
        ckpt.metadata,
        vec![
            ("arch".to_string(), "resnet20".to_string()),
            ("robust".to_string(), "False".to_string()),
            ("seed".to_string(), "0".to_string()),
        ]
    );
    assert_eq!(ckpt.tensors.len(), 128);
    assert!(ckpt.notes.is_empty());
    let t = ckpt.tensor("conv1.weight").unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.shape(), &[16, 3, 3, 3]);
    let n = ckpt.tensor("bn1.num_batches_tracked").unwrap();
    assert_eq!(n.dtype(), DType::I64);
    assert_eq!(n.shape(), &[] as &[usize]);
}

/// The half-precision copies hold the fp32 weights rounded to nearest, element for element.
fn check_rounded(file: &str, dtype: DType, round: fn(f32) -> f64) {
    let (_, full) = load("wrn16_2_robust_s0.safetensors");
    let (_, half) = load(file);
    let names = |c: &convlens_core::Checkpoint| -> Vec<String> {
        c.tensors.iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(&full), names(&half));
    let mut checked = 0usize;
    for t in &full.tensors {
        let h = half.tensor(&t.name).unwrap();
        assert_eq!(h.shape(), t.tensor.shape(), "{}", t.name);
        if t.tensor.dtype() != DType::F32 {
            assert_eq!(h.dtype(), t.tensor.dtype());
            assert_eq!(h.to_f64(), t.tensor.to_f64());
            continue;
        }
        assert_eq!(h.dtype(), dtype, "{}", t.name);
        let w32 = t.tensor.to_f32();
        let w16 = h.to_f64();
        for (i, (&a, &b)) in w32.iter().zip(&w16).enumerate() {
            assert_eq!(round(a), b, "{} element {i}: {a}", t.name);
        }
        checked += w32.len();
    }
    assert!(checked > 600_000, "{checked} elements compared");
}

#[test]
fn wrn16_2_fp16_is_rounded_fp32() {
    check_rounded("wrn16_2_robust_s0.fp16.safetensors", DType::F16, |x| {
        f16::from_f32(x).to_f64()
    });
}

#[test]
fn wrn16_2_bf16_is_rounded_fp32() {
    check_rounded("wrn16_2_robust_s0.bf16.safetensors", DType::BF16, |x| {
        bf16::from_f32(x).to_f64()
    });
}
