//! Real TFLite files (the mediapipe face detectors: fp16 weights behind DEQUANTIZE, sparse
//! weights behind DENSIFY) and the quantized test model (int8 per-channel and per-tensor,
//! uint8, block-sparse, fp32): every convolution agrees with the direct numpy decoding of
//! `fixtures/tflite/tflite_reference.py` (`fixtures/expected/*.tflite.json`, `conv_layers`).

use convlens_core::{Blob, Checkpoint, ConvOp, Format};
use convlens_testdata::fixture;
use serde_json::Value;

fn load(rel: &str) -> Checkpoint {
    let p = fixture(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    convlens_tflite::read(Blob::from_vec(bytes)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn expected(name: &str) -> Value {
    let p = fixture(&format!("expected/{name}"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn close(what: &str, got: f64, want: f64) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want}"
    );
}

/// Compares every convolution with the reference decoding; returns the number compared.
fn check(rel: &str, expected_name: &str) -> usize {
    let ck = load(rel);
    assert_eq!(ck.format, Format::TfLite);
    let exp = expected(expected_name);
    let want = exp["models"][0]["conv_layers"].as_array().unwrap();
    let g = ck.graph.as_ref().expect("graph");
    let mut convs: Vec<_> = g.convs.iter().collect();
    convs.sort_by_key(|c| (c.graph_depth, c.node_index));
    assert_eq!(convs.len(), want.len(), "{rel}: number of convolutions");
    for (c, e) in convs.iter().zip(want) {
        let what = |s: &str| format!("{rel} {}: {s}", c.name);
        assert_eq!(c.name, e["name"].as_str().unwrap(), "{}", what("name"));
        assert_eq!(
            c.weight_name,
            e["weight_name"].as_str().unwrap(),
            "{}",
            what("weight")
        );
        assert_eq!(c.op.name(), e["op"].as_str().unwrap(), "{}", what("op"));
        assert_eq!(
            c.graph_depth.map(|d| d as u64),
            e["graph_depth"].as_u64(),
            "{}",
            what("depth")
        );
        let w = c
            .weight
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", what("weight")));
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(w.shape(), shape.as_slice(), "{}", what("OIHW shape"));
        let v = w.to_f32();
        let (mut s, mut sq, mut ws, mut mx, mut zeros) = (0f64, 0f64, 0f64, 0f64, 0u64);
        for (i, &x) in v.iter().enumerate() {
            let x = f64::from(x);
            s += x;
            sq += x * x;
            ws += x * ((i % 97) + 1) as f64;
            mx = mx.max(x.abs());
            zeros += u64::from(x == 0.0);
        }
        close(&what("sum"), s, e["sum"].as_f64().unwrap());
        close(&what("sum of squares"), sq, e["sum_sq"].as_f64().unwrap());
        close(
            &what("position-weighted sum"),
            ws,
            e["weighted_sum"].as_f64().unwrap(),
        );
        assert_eq!(mx, e["max_abs"].as_f64().unwrap(), "{}", what("max |w|"));
        assert_eq!(zeros, e["zeros"].as_u64().unwrap(), "{}", what("zeros"));
        let via: Vec<&str> = e["via"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if via.contains(&"DENSIFY") {
            assert!(
                c.notes.iter().any(|n| n.contains("DENSIFY")),
                "{}",
                what("densify note")
            );
        }
        if c.op == ConvOp::DepthwiseConv2d {
            assert_eq!(c.groups, w.shape()[0], "{}", what("depthwise groups"));
        }
    }
    want.len()
}

#[test]
fn short_range_face_detector_matches_numpy() {
    let n = check(
        "third_party/mediapipe/face_detection_short_range.tflite",
        "thirdparty_face_detection_short_range.tflite.json",
    );
    assert_eq!(n, 37);
}

#[test]
fn sparse_full_range_face_detector_matches_numpy() {
    let n = check(
        "third_party/mediapipe/face_detection_full_range_sparse.tflite",
        "thirdparty_face_detection_full_range_sparse.tflite.json",
    );
    assert_eq!(n, 91);
    let ck = load("third_party/mediapipe/face_detection_full_range_sparse.tflite");
    let g = ck.graph.unwrap();
    let densified = g
        .convs
        .iter()
        .filter(|c| c.notes.iter().any(|n| n.contains("DENSIFY")))
        .count();
    assert_eq!(densified, 46, "every DENSIFY feeds one convolution");
    assert!(g.convs.iter().all(|c| c.weight.is_ok()));
}

#[test]
fn quantized_model_matches_numpy() {
    let n = check("tflite/quantized.tflite", "tflite_quantized.tflite.json");
    assert_eq!(n, 5);
    let ck = load("tflite/quantized.tflite");
    let g = ck.graph.unwrap();
    let by = |name: &str| g.convs.iter().find(|c| c.name == name).unwrap();
    // the hand-checkable geometry of the writer script
    let a = by("conv_a");
    assert_eq!(a.op, ConvOp::Conv2d);
    assert_eq!((a.groups, a.strides.clone()), (1, vec![1, 1]));
    assert_eq!(a.auto_pad.as_deref(), Some("SAME_UPPER"));
    assert!(a
        .notes
        .iter()
        .any(|n| n.contains("per channel (6 scales along dimension 0)")));
    assert!(a.notes.iter().any(|n| n.contains("fused activation RELU")));
    let dw = by("dw");
    assert_eq!(dw.op, ConvOp::DepthwiseConv2d);
    assert_eq!((dw.groups, dw.strides.clone()), (6, vec![2, 2]));
    assert_eq!(dw.auto_pad.as_deref(), Some("VALID"));
    assert!(dw
        .notes
        .iter()
        .any(|n| n.contains("i8 weights dequantized per tensor")));
    assert_eq!(dw.graph_depth, Some(1));
    let c = by("conv_c");
    assert_eq!(c.bias.as_ref().map(|b| b.shape().to_vec()), Some(vec![6]));
    assert!(by("conv_e").notes.iter().any(|n| n.contains("u8 weights")));
    // first weight of conv_a: q[0,0,0,0] * scale[0], read back in OIHW order
    let w = a.weight.as_ref().unwrap();
    assert_eq!(w.shape(), &[6, 4, 3, 3]);
    assert!(!ck.tensors.is_empty());
    assert_eq!(
        ck.metadata
            .iter()
            .find(|m| m.0 == "subgraph")
            .map(|m| m.1.as_str()),
        Some("main")
    );
}

#[test]
fn sniff_recognises_tflite_only() {
    let b = std::fs::read(fixture("tflite/quantized.tflite")).unwrap();
    assert!(convlens_tflite::sniff(&b));
    assert!(!convlens_tflite::sniff(b"PK\x03\x04xxxxxxxx"));
    assert!(!convlens_tflite::sniff(b"\x00\x00\x00\x00TFL"));
}
