//! Per-layer metrics against the reference oracle's outputs (`fixtures/expected/*.json`, written
//! by `reference.py`) on the safetensors models of the cifar10-mini zoo.

use std::path::{Path, PathBuf};

use convlens::measure::{measure_layer, LayerMetrics, LayerShape};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    manifest().join("../../fixtures")
}

fn shared() -> PathBuf {
    manifest().join("../../../shared")
}

/// 1e-6 relative, 1e-9 absolute near 0; `null` in the JSON means NaN.
fn assert_close(what: &str, got: f64, expected: &Value) {
    match expected.as_f64() {
        None => {
            assert!(expected.is_null(), "{what}: unexpected JSON {expected}");
            assert!(got.is_nan(), "{what}: expected NaN (null), got {got}");
        }
        Some(e) => {
            let tol = (1e-6 * e.abs()).max(1e-9);
            assert!(
                (got - e).abs() <= tol,
                "{what}: got {got}, expected {e} (diff {:e})",
                (got - e).abs()
            );
        }
    }
}

fn as_usize(v: &Value, what: &str) -> usize {
    let n = v
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: not an integer: {v}"));
    usize::try_from(n).expect("fits usize")
}

fn load_f32(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}: dtype");
    let w = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), w)
}

fn check_layer(model: &str, layer: &Value, st: &SafeTensors) {
    let wname = layer["weight_name"].as_str().expect("weight_name");
    let what = |m: &str| format!("{model} {wname} {m}");
    let (shape, w) = load_f32(st, wname);
    let expected_shape: Vec<usize> = layer["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| as_usize(v, "shape"))
        .collect();
    assert_eq!(shape, expected_shape, "{}", what("shape"));
    let ls = LayerShape {
        out_channels: shape[0],
        in_per_group: shape[1],
        kh: shape[2],
        kw: shape[3],
        groups: 1,
    };
    let m: LayerMetrics = measure_layer(&w, &ls);

    assert_eq!(m.n_filters, as_usize(&layer["n_filters"], "n_filters"));
    assert_eq!(
        m.sparse_filters,
        as_usize(&layer["layer_sparse_filters"], "layer_sparse_filters"),
        "{}",
        what("layer_sparse_filters")
    );
    assert_eq!(
        m.n_nonsparse,
        as_usize(&layer["n_nonsparse"], "n_nonsparse"),
        "{}",
        what("n_nonsparse")
    );
    assert_close(&what("layer_norm"), m.layer_norm, &layer["layer_norm"]);
    assert_close(
        &what("layer_sparse_share"),
        m.sparsity,
        &layer["layer_sparse_share"],
    );
    assert_close(&what("entropy"), m.variance_entropy, &layer["entropy"]);
    assert_close(&what("ortho"), m.orthogonality, &layer["ortho"]);

    let t = &layer["tcq"];
    assert_eq!(m.tcq.n, as_usize(&t["n"], "tcq.n"));
    assert_close(&what("tcq.sparsity"), m.tcq.sparsity, &t["sparsity"]);
    assert_close(
        &what("tcq.variance_entropy"),
        m.tcq.variance_entropy,
        &t["variance_entropy"],
    );
    assert_close(
        &what("tcq.variance_entropy_norm"),
        m.tcq.variance_entropy_norm,
        &t["variance_entropy_norm"],
    );
    assert_close(
        &what("tcq.variance_entropy_clean"),
        m.tcq.variance_entropy_clean,
        &t["variance_entropy_clean"],
    );
    assert_close(
        &what("tcq.variance_entropy_clean_norm"),
        m.tcq.variance_entropy_clean_norm,
        &t["variance_entropy_clean_norm"],
    );
    assert_close(
        &what("tcq.orthogonality"),
        m.tcq.orthogonality,
        &t["orthogonality"],
    );
    assert_eq!(m.orthogonality_per_group, None);
}

/// Compares every layer of `model` (a safetensors file) with `expected` (its oracle JSON);
/// returns the number of layers compared.
fn check_model(model: &Path, expected: &Path) -> usize {
    let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let st =
        SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let text =
        std::fs::read_to_string(expected).unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
    let json: Value = serde_json::from_str(&text).expect("expected JSON");
    let models = json["models"].as_array().expect("models");
    assert_eq!(
        models.len(),
        1,
        "{}: one model per file",
        expected.display()
    );
    let layers = models[0]["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    let name = model.file_name().unwrap_or_default().to_string_lossy();
    for layer in layers {
        check_layer(&name, layer, &st);
    }
    layers.len()
}

#[test]
fn repo_zoo_safetensors_match_the_oracle() {
    let zoo = fixtures().join("zoo/cifar10-mini");
    let models = [
        "resnet20_normal_s0",
        "resnet20_normal_s1",
        "resnet20_robust_s0",
        "resnet20_robust_s1",
        "mobilenetv2_x0_5_normal_s0",
        "wrn16_2_robust_s0",
    ];
    let mut layers = 0;
    for m in models {
        layers += check_model(
            &zoo.join(format!("{m}.safetensors")),
            &fixtures().join(format!("expected/{m}.safetensors.json")),
        );
    }
    eprintln!(
        "measure_oracle: {layers} layers of {} repo models match",
        models.len()
    );
    // 4 x 19 (resnet20) + 18 (mobilenetv2, depthwise) + 13 (wrn16_2)
    assert_eq!(layers, 107);
}

#[test]
fn shared_zoo_safetensors_match_the_oracle() {
    let shared = shared();
    if !shared.is_dir() {
        eprintln!("SKIPPED: ../shared not found ({})", shared.display());
        return;
    }
    let zoo = shared.join("zoo/cifar10-mini");
    let expected = shared.join("reference/expected");
    let models = [
        ("mobilenetv2_x0_5_robust_s0", 18),
        ("preactresnet18_w32_normal_s0", 17),
        ("vgg11_w16_normal_s0", 8),
        ("vgg11_w16_robust_s0", 8),
        ("wrn16_2_normal_s0", 13),
    ];
    let mut layers = 0;
    for (m, n) in models {
        let got = check_model(
            &zoo.join(format!("{m}.safetensors")),
            &expected.join(format!("{m}.safetensors.json")),
        );
        assert_eq!(got, n, "{m}: layers");
        layers += got;
    }
    eprintln!(
        "measure_oracle: {layers} layers of {} ../shared models match",
        models.len()
    );
}
