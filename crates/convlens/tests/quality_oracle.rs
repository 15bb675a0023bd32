//! Every model with an oracle output: layer list, shapes, depths and every metric agree with
//! `reference.py` (fixtures/expected) to 1e-6 relative.

mod common;

use common::*;
use convlens::depth::DepthBin;
use convlens::extract::KernelSelect;
use convlens::quality::analyse_file;
use serde_json::Value;
use std::path::PathBuf;

fn model_path(expected_name: &str, exp: &Value) -> Option<PathBuf> {
    if let Some(rest) = expected_name.strip_prefix("tflite_") {
        return Some(fixture(&format!(
            "tflite/{}",
            rest.strip_suffix(".json").unwrap()
        )));
    }
    if let Some(rest) = expected_name.strip_prefix("thirdparty_") {
        let _ = rest;
        let rel = exp["models"][0]["path"].as_str().unwrap();
        third_party_file(rel)
    } else {
        zoo_file(expected_name.strip_suffix(".json").unwrap())
    }
}

fn check_model(expected_name: &str) -> usize {
    let exp = expected(expected_name);
    let Some(path) = model_path(expected_name, &exp) else {
        return 0;
    };
    let report = analyse_file(&path, KernelSelect::DEFAULT)
        .unwrap_or_else(|e| panic!("{expected_name}: {e}"));
    let m = &exp["models"][0];
    let ctx = |s: &str| format!("{expected_name}: {s}");
    assert_eq!(
        report.n_conv_layers as u64,
        m["n_conv_layers"].as_u64().unwrap(),
        "{}",
        ctx("n_conv_layers")
    );
    assert_eq!(
        report.n_conv_depths as u64,
        m["n_conv_depths"].as_u64().unwrap(),
        "{}",
        ctx("n_conv_depths")
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(
        report.layers.len(),
        layers.len(),
        "{}",
        ctx("3x3 layer count")
    );
    for (l, e) in report.layers.iter().zip(layers) {
        let c = |s: &str| format!("{expected_name}: layer {}: {s}", l.name);
        assert_eq!(l.name, e["name"].as_str().unwrap(), "{}", c("name"));
        assert_eq!(
            l.weight_name,
            e["weight_name"].as_str().unwrap(),
            "{}",
            c("weight")
        );
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(l.shape.to_vec(), shape, "{}", c("shape"));
        assert_eq!(
            l.depth as u64,
            e["graph_depth"].as_u64().unwrap(),
            "{}",
            c("depth")
        );
        assert_eq!(
            l.conv_depth.map(|d| d as u64),
            e["conv_depth"].as_u64(),
            "{}",
            c("conv_depth")
        );
        // the oracle reports NaN for a single conv depth; convlens defines 0 there
        match e["conv_depth_norm"].as_f64() {
            Some(v) => assert_close(
                &c("conv_depth_norm"),
                l.conv_depth_norm.unwrap(),
                &Value::from(v),
            ),
            None => assert_eq!(l.conv_depth_norm, Some(0.0)),
        }
        assert_eq!(
            l.filters as u64,
            e["n_filters"].as_u64().unwrap(),
            "{}",
            c("filters")
        );
        assert_eq!(l.out_channels as u64, e["out_channels"].as_u64().unwrap());
        assert_eq!(l.in_channels as u64, e["in_channels"].as_u64().unwrap());
        assert_close(&c("layer_norm"), l.layer_norm, &e["layer_norm"]);
        assert_eq!(
            l.sparse_filters as u64,
            e["layer_sparse_filters"].as_u64().unwrap(),
            "{}",
            c("sparse filters")
        );
        assert_close(&c("sparsity"), l.sparsity, &e["layer_sparse_share"]);
        assert_eq!(
            l.nonsparse_filters as u64,
            e["n_nonsparse"].as_u64().unwrap()
        );
        assert_close(&c("entropy"), l.variance_entropy, &e["entropy"]);
        assert_close(&c("ortho"), l.orthogonality, &e["ortho"]);
        let t = &e["tcq"];
        assert_eq!(l.tcq.n as u64, t["n"].as_u64().unwrap());
        assert_close(&c("tcq sparsity"), l.tcq.sparsity, &t["sparsity"]);
        assert_close(&c("tcq ve"), l.tcq.variance_entropy, &t["variance_entropy"]);
        assert_close(
            &c("tcq ve norm"),
            l.tcq.variance_entropy_norm,
            &t["variance_entropy_norm"],
        );
        assert_close(
            &c("tcq vc"),
            l.tcq.variance_entropy_clean,
            &t["variance_entropy_clean"],
        );
        assert_close(
            &c("tcq vc norm"),
            l.tcq.variance_entropy_clean_norm,
            &t["variance_entropy_clean_norm"],
        );
        assert_close(&c("tcq ortho"), l.tcq.orthogonality, &t["orthogonality"]);
        let bin = e["depth_bin"].as_str().and_then(DepthBin::from_label);
        assert_eq!(l.depth_group, bin, "{}", c("depth group"));
    }
    // per-model aggregates by depth group
    let bins = m["depth_bins"].as_object().unwrap();
    assert_eq!(
        report.depth_groups.len(),
        bins.len(),
        "{}",
        ctx("depth groups")
    );
    for g in &report.depth_groups {
        let e = &bins[&g.group.label()];
        let c = |s: &str| format!("{expected_name}: group {}: {s}", g.group.label());
        assert_close(&c("sparsity"), g.agg.sparsity, &e["sparsity"]);
        assert_close(
            &c("entropy"),
            g.agg.variance_entropy.unwrap_or(f64::NAN),
            &e["entropy"],
        );
        assert_close(&c("ortho"), g.agg.orthogonality, &e["ortho"]);
    }
    layers.len()
}

fn check_all(filter: impl Fn(&str) -> bool) {
    let dir = fixture("expected");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("zoo_") && filter(n))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut n = 0;
    for name in &names {
        n += check_model(name);
    }
    eprintln!("compared {n} layers of {} models", names.len());
}

#[test]
fn onnx_models_match_the_oracle() {
    check_all(|n| n.ends_with(".onnx.json"));
}

#[test]
fn safetensors_models_match_the_oracle() {
    check_all(|n| n.ends_with(".safetensors.json"));
}

/// The TFLite files against the direct numpy decoding of `fixtures/tflite/tflite_reference.py`
/// fed to the oracle's metrics (the mediapipe face detectors and the quantized test model).
#[test]
fn tflite_models_match_the_oracle() {
    check_all(|n| n.ends_with(".tflite.json"));
}

#[test]
fn torch_models_match_the_oracle() {
    check_all(|n| n.ends_with(".pt.json"));
}
