//! Real ONNX models against the reference oracle's outputs (`fixtures/expected/*.json`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{conv, fixture, max_abs, read_path, shared};
use convlens_core::{Checkpoint, ConvOp, KernelLayout};
use serde_json::Value;

/// Checks every 3x3 layer of the expected JSON and the conv counts; returns the checkpoint.
fn check_against_oracle(model: &Path, expected: &str) -> Checkpoint {
    let ck = read_path(model);
    let text = std::fs::read_to_string(fixture(&format!("expected/{expected}"))).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let m = &json["models"][0];
    let layers = m["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let c = conv(&ck, name);
        assert_eq!(c.op, ConvOp::Conv, "{name}");
        assert_eq!(c.weight_name, l["weight_name"].as_str().unwrap(), "{name}");
        let w = c.weight.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = l["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(w.shape(), shape.as_slice(), "{name}");
        assert_eq!(
            c.graph_depth,
            Some(l["graph_depth"].as_u64().unwrap() as usize),
            "{name}"
        );
        let norm = l["layer_norm"].as_f64().unwrap();
        let got = max_abs(w);
        assert!(
            (got - norm).abs() <= 1e-6 * norm.abs(),
            "{name}: max|w| {got} vs {norm}"
        );
        assert_eq!(c.layout, KernelLayout::OIHW);
    }
    // the oracle's layer list: reachable Conv nodes with a constant 4-D weight
    let g = ck.graph.as_ref().unwrap();
    let convs: Vec<_> = g
        .convs
        .iter()
        .filter(|c| c.op == ConvOp::Conv && c.graph_depth.is_some())
        .filter(|c| c.weight.as_ref().is_ok_and(|w| w.shape().len() == 4))
        .collect();
    assert_eq!(convs.len() as u64, m["n_conv_layers"].as_u64().unwrap());
    let depths: BTreeSet<usize> = convs.iter().filter_map(|c| c.graph_depth).collect();
    assert_eq!(depths.len() as u64, m["n_conv_depths"].as_u64().unwrap());
    let three: usize = convs
        .iter()
        .filter(|c| c.weight.as_ref().unwrap().shape()[2..] == [3, 3])
        .count();
    assert_eq!(three, layers.len());
    assert_eq!(ck.order_source, "graph");
    ck
}

fn meta<'a>(ck: &'a Checkpoint, key: &str) -> &'a str {
    ck.metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no metadata {key}"))
}

#[test]
fn resnet20_models_match_oracle() {
    for name in [
        "resnet20_normal_s0",
        "resnet20_normal_s1",
        "resnet20_robust_s0",
        "resnet20_robust_s1",
    ] {
        let ck = check_against_oracle(
            &fixture(&format!("zoo/cifar10-mini/{name}.onnx")),
            &format!("{name}.onnx.json"),
        );
        let g = ck.graph.as_ref().unwrap();
        assert_eq!(g.n_nodes, 52);
        assert_eq!(g.inputs, ["input"]);
        assert_eq!(g.first_ops, ["Conv"]);
        assert_eq!(g.convs.len(), 21);
        // 44 initializers, all f32 with raw data
        assert_eq!(ck.tensors.len(), 44);
        assert_eq!(meta(&ck, "producer_name"), "pytorch");
        assert_eq!(meta(&ck, "producer_version"), "2.15.0");
        assert_eq!(meta(&ck, "opset"), "ai.onnx 17");
        assert!(ck.notes.is_empty(), "{:?}", ck.notes);
    }
}

#[test]
fn raw_data_is_not_copied() {
    let bytes = std::fs::read(fixture("zoo/cifar10-mini/resnet20_normal_s0.onnx")).unwrap();
    let range = bytes.as_ptr_range();
    let ck = convlens_onnx::read(convlens_core::Blob::from_vec(bytes), None).unwrap();
    for t in &ck.tensors {
        let p = t.tensor.storage().as_slice().as_ptr_range();
        assert!(
            range.start <= p.start && p.end <= range.end,
            "{} was copied",
            t.name
        );
    }
}

#[test]
fn mobilenetv2_matches_oracle_with_depthwise_groups() {
    let ck = check_against_oracle(
        &fixture("zoo/cifar10-mini/mobilenetv2_x0_5_normal_s0.onnx"),
        "mobilenetv2_x0_5_normal_s0.onnx.json",
    );
    let g = ck.graph.as_ref().unwrap();
    let depthwise: Vec<_> = g.convs.iter().filter(|c| c.groups > 1).collect();
    assert_eq!(depthwise.len(), 17);
    for c in depthwise {
        let w = c.weight.as_ref().unwrap();
        assert_eq!(w.shape()[1], 1, "{}", c.name);
        assert_eq!(w.shape()[0], c.groups, "{}", c.name);
    }
    // 106 initializers + 70 scalar Constant nodes, in that order
    assert_eq!(ck.tensors.len(), 176);
    assert!(ck.tensors[105].tensor.shape().len() <= 4);
    assert!(ck.tensors[106..]
        .iter()
        .all(|t| t.tensor.shape().is_empty()));
}

#[test]
fn external_data_vgg_matches_oracle() {
    let ck = check_against_oracle(
        &fixture("zoo/cifar10-mini/external/vgg11_w16_normal_s0.onnx"),
        "vgg11_w16_normal_s0.onnx.json",
    );
    assert_eq!(ck.tensors.len(), 18);
}

#[test]
fn rapidocr_det_constant_weights_and_conv_transpose() {
    let ck = check_against_oracle(
        &fixture("third_party/rapidocr/ch_PP-OCRv4_det_infer.onnx"),
        "thirdparty_ch_PP-OCRv4_det_infer.onnx.json",
    );
    let g = ck.graph.as_ref().unwrap();
    assert_eq!(g.n_nodes, 672);
    assert_eq!(ck.tensors.len(), 342); // no initializers: all from Constant nodes
    let ct: Vec<_> = g
        .convs
        .iter()
        .filter(|c| c.op == ConvOp::ConvTranspose)
        .collect();
    assert_eq!(ct.len(), 2);
    for c in &ct {
        assert_eq!(c.layout, KernelLayout::IOHW);
        assert_eq!(c.strides, [2, 2]);
    }
    let t0 = conv(&ck, "p2o.ConvTranspose.0");
    assert_eq!(t0.weight.as_ref().unwrap().shape(), [24, 24, 2, 2]);
    assert_eq!(t0.graph_depth, Some(269));
    let t2 = conv(&ck, "p2o.ConvTranspose.2");
    assert_eq!(t2.weight.as_ref().unwrap().shape(), [24, 1, 2, 2]);
    assert_eq!(t2.graph_depth, Some(273));
    // IOHW [24, 1, 2, 2] is an OIHW [1, 24, 2, 2] kernel
    assert_eq!(t2.layout.oihw_shape(&[24, 1, 2, 2]), [1, 24, 2, 2]);
    assert!((max_abs(t2.weight.as_ref().unwrap()) - 2.751002550).abs() < 1e-8);
    assert_eq!(g.convs.iter().filter(|c| c.groups > 1).count(), 14);
    assert_eq!(meta(&ck, "opset"), "ai.onnx 12");
}

#[test]
fn rapidocr_cls_typed_constants_and_stride_2_1() {
    let ck = check_against_oracle(
        &fixture("third_party/rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        "thirdparty_ch_ppocr_mobile_v2.0_cls_infer.onnx.json",
    );
    let g = ck.graph.as_ref().unwrap();
    let s21: Vec<&str> = g
        .convs
        .iter()
        .filter(|c| c.strides == [2, 1])
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(s21, ["Conv@2", "Conv@7", "Conv@13", "Conv@38"]);
    let c = conv(&ck, "Conv@2");
    assert_eq!(c.groups, 8);
    assert_eq!(c.weight.as_ref().unwrap().shape(), [8, 1, 3, 3]);
    assert_eq!(c.pads, [1, 1, 1, 1]);
    assert_eq!(c.dilations, [1, 1]);
    // typed float_data and int64_data constants, values from the python onnx package
    let scale = ck.tensor("conv12_depthwise_bn_scale").unwrap();
    assert_eq!(scale.shape(), [200]);
    assert_eq!(
        scale.to_f32()[..4],
        [1.060_918_9, 0.999_178_47, 1.546_288_6, 1.100_579_9]
    );
    let shape = ck.tensor("Constant@4").unwrap();
    assert_eq!(shape.dtype(), convlens_core::DType::I64);
    assert_eq!(shape.to_f64(), [1.0, 2.0, 1.0, 1.0]);
    assert_eq!(meta(&ck, "producer_name"), "PaddlePaddle");
}

#[test]
fn shared_only_zoo_models_match_oracle() {
    let Some(dir) = shared("zoo/cifar10-mini") else {
        return;
    };
    for name in [
        "preactresnet18_w32_normal_s0",
        "preactresnet18_w32_robust_s0",
        "wrn16_2_normal_s0",
        "wrn16_2_robust_s0",
        "vgg11_w16_robust_s0",
        "mobilenetv2_x0_5_robust_s0",
    ] {
        check_against_oracle(
            &dir.join(format!("{name}.onnx")),
            &format!("{name}.onnx.json"),
        );
    }
}

#[test]
fn external_vgg_equals_embedded_vgg() {
    let Some(embedded) = shared("zoo/cifar10-mini/vgg11_w16_normal_s0.onnx") else {
        return;
    };
    let a = read_path(&fixture(
        "zoo/cifar10-mini/external/vgg11_w16_normal_s0.onnx",
    ));
    let b = read_path(&embedded);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.tensor.shape(), y.tensor.shape());
        assert_eq!(
            x.tensor.storage().as_slice(),
            y.tensor.storage().as_slice(),
            "{}",
            x.name
        );
    }
    let (ga, gb) = (a.graph.unwrap(), b.graph.unwrap());
    for (x, y) in ga.convs.iter().zip(&gb.convs) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.graph_depth, y.graph_depth);
        assert_eq!(
            x.weight.as_ref().unwrap().to_f32(),
            y.weight.as_ref().unwrap().to_f32()
        );
    }
}

#[test]
fn external_data_is_refused_without_a_folder() {
    let p = fixture("zoo/cifar10-mini/external/vgg11_w16_normal_s0.onnx");
    let bytes = std::fs::read(p).unwrap();
    let e = convlens_onnx::read(convlens_core::Blob::from_vec(bytes), None).unwrap_err();
    assert!(
        matches!(e, convlens_onnx::OnnxError::ExternalData { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("refused"), "{e}");
}

#[test]
fn sniff_recognises_onnx_files_only() {
    for f in [
        "zoo/cifar10-mini/resnet20_normal_s0.onnx",
        "zoo/cifar10-mini/external/vgg11_w16_normal_s0.onnx",
        "third_party/rapidocr/ch_PP-OCRv4_det_infer.onnx",
        "third_party/rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ] {
        assert!(
            convlens_onnx::sniff(&std::fs::read(fixture(f)).unwrap()),
            "{f}"
        );
    }
    for f in [
        "zoo/cifar10-mini/resnet20_normal_s0.safetensors",
        "zoo/cifar10-mini/resnet20_normal_s0.pt",
        "zoo/cifar10-mini/resnet20_robust_s0.legacy.pt",
        "zoo/cifar10-mini/mobilenetv2_x0_5_normal_s0.npz",
        "zoo/cifar10-mini/external/vgg11_w16_normal_s0.onnx.data",
        "zoo/cifar10-mini/meta.csv",
        "third_party/facenet-pytorch/pnet.pt",
    ] {
        assert!(
            !convlens_onnx::sniff(&std::fs::read(fixture(f)).unwrap()),
            "{f}"
        );
    }
}
