//! Dynamically quantized ddddocr model (`ConvInteger`), from ../shared only.

mod common;

use common::{max_abs, read_path, shared};
use convlens_core::{ConvOp, DType};

#[test]
fn conv_integer_weights_are_dequantized() {
    let Some(p) = shared("third_party/ddddocr/common_old.onnx") else {
        return;
    };
    let ck = read_path(&p);
    let g = ck.graph.as_ref().unwrap();
    let ci: Vec<_> = g
        .convs
        .iter()
        .filter(|c| c.op == ConvOp::ConvInteger)
        .collect();
    assert_eq!(ci.len(), 21);
    for c in &ci {
        let w = c
            .weight
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(w.dtype(), DType::F32);
        assert!(c.graph_depth.is_some());
        assert_eq!(c.layout, convlens_core::KernelLayout::OIHW);
    }
    assert_eq!(g.first_ops, ["DynamicQuantizeLinear"]);
    // Conv_0_quant: w uint8 [24,1,3,3] starting 111, 157; zero point 121; scale 391_scale
    // = 0.052862305 (python onnx: (w - zp) * scale in float32 = -0.52862304, 1.9030430)
    let c0 = ci[0];
    assert_eq!(c0.name, "Conv_0_quant");
    assert_eq!(c0.weight_name, "391_quantized");
    assert_eq!(c0.strides, [2, 2]);
    assert_eq!(c0.auto_pad.as_deref(), Some("NOTSET"));
    let w = c0.weight.as_ref().unwrap();
    assert_eq!(w.shape(), [24, 1, 3, 3]);
    let v = w.to_f32();
    assert_eq!(v[0], (111.0f32 - 121.0) * 0.052_862_305);
    assert_eq!(v[0], -0.528_623_04);
    assert_eq!(v[1], 1.903_043);
    assert_eq!(max_abs(w), 7.0835490226745605);
    // Conv_49_quant (last): zero point 127, scale 0.008271054, max |w| 1.0586949586868286
    let last = ci[20];
    assert_eq!(last.name, "Conv_49_quant");
    let v = last.weight.as_ref().unwrap().to_f32();
    assert_eq!(v[0], -0.355_655_34);
    assert_eq!(max_abs(last.weight.as_ref().unwrap()), 1.0586949586868286);
}
